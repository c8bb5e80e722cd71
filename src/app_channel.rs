//! The client to the local app: HTTP/1.1 or h2c to `--app-channel-address:--app-port`, bounded by
//! `--app-max-concurrency`, with daprd's readiness wait and health probing.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, Uri};
use http_body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::invoke::Call;
use crate::telemetry::metrics::SidecarMetrics;

/// Characters that cannot stand raw in a URI path. `%` is left alone: a method that arrived
/// percent-encoded is passed on as it came.
const PATH_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'#')
    .add(b'?');

#[derive(Debug, thiserror::Error)]
pub enum AppChannelError {
    #[error("app channel is not initialized")]
    NotInitialized,
    #[error("app is not in a healthy state")]
    Unhealthy,
    #[error("invalid request to the app: {0}")]
    InvalidRequest(String),
    #[error("error invoking app channel: {0}")]
    Send(String),
    /// The caller's body broke the `--max-body-size` limit while it streamed to the app.
    #[error("request body exceeds the size limit")]
    BodyTooLarge,
}

/// How the sidecar reaches its app.
#[derive(Debug, Clone)]
pub struct AppChannelSettings {
    pub address: String,
    pub port: u16,
    /// Speak HTTP/2 without TLS (`--app-protocol h2c`).
    pub h2c: bool,
    pub max_concurrency: Option<usize>,
    pub app_api_token: Option<String>,
    pub health: Option<HealthProbeSettings>,
}

/// `--enable-app-health-check` and friends.
#[derive(Debug, Clone)]
pub struct HealthProbeSettings {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub threshold: u32,
}

/// Whether the app answers its health probe. Starts healthy: probing only runs when enabled,
/// and daprd calls the app before the first probe result.
#[derive(Debug)]
pub struct AppHealth {
    /// Read on every call to the app, so kept apart from the watch's lock.
    healthy: AtomicBool,
    failures: AtomicU32,
    /// For those who act on a change (subscriptions pause while the app is unhealthy).
    changes: watch::Sender<bool>,
}

impl Default for AppHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            changes: watch::Sender::new(true),
        }
    }
}

impl AppHealth {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Follows the health state: the receiver sees the current value and every flip.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    fn report(&self, ok: bool, threshold: u32) {
        if ok {
            self.failures.store(0, Ordering::Release);
            if !self.healthy.swap(true, Ordering::AcqRel) {
                tracing::info!("app entered healthy status");
                self.changes.send_replace(true);
            }
        } else {
            let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
            if failures >= threshold && self.healthy.swap(false, Ordering::AcqRel) {
                tracing::warn!(failures, "app entered unhealthy status");
                self.changes.send_replace(false);
            }
        }
    }
}

/// The channel to the app. Cheap to share behind an `Arc`.
pub struct AppChannel {
    client: Client<HttpConnector, Body>,
    settings: AppChannelSettings,
    authority: String,
    app_token: Option<HeaderValue>,
    limit: Option<Arc<Semaphore>>,
    health: Arc<AppHealth>,
    metrics: Arc<SidecarMetrics>,
}

impl AppChannel {
    pub fn new(settings: AppChannelSettings, metrics: Arc<SidecarMetrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90));
        if settings.h2c {
            builder.http2_only(true);
        }
        let client = builder.build(connector);
        let authority = format!("{}:{}", settings.address, settings.port);
        Self {
            client,
            app_token: settings
                .app_api_token
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok()),
            limit: settings
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n))),
            health: Arc::new(AppHealth::default()),
            authority,
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> &AppChannelSettings {
        &self.settings
    }

    pub fn health(&self) -> &Arc<AppHealth> {
        &self.health
    }

    /// Sends a call to the app and returns its response, body streaming. The concurrency permit
    /// is held until the response body ends, so a slow download counts against the limit.
    pub async fn call(&self, call: Call) -> Result<Response<Body>, AppChannelError> {
        if self.settings.health.is_some() && !self.health.is_healthy() {
            return Err(AppChannelError::Unhealthy);
        }
        let permit = match &self.limit {
            Some(sem) => Some(
                sem.clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| AppChannelError::NotInitialized)?,
            ),
            None => None,
        };
        let path = utf8_percent_encode(&call.method, PATH_UNSAFE);
        let uri = if call.query.is_empty() {
            format!("http://{}/{}", self.authority, path)
        } else {
            format!("http://{}/{}?{}", self.authority, path, call.query)
        };
        let uri: Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| AppChannelError::InvalidRequest(e.to_string()))?;
        let mut req = Request::builder()
            .method(call.verb.clone())
            .uri(uri)
            .body(call.body)
            .map_err(|e| AppChannelError::InvalidRequest(e.to_string()))?;
        *req.headers_mut() = call.headers;
        if let Some(token) = &self.app_token {
            req.headers_mut().insert("dapr-api-token", token.clone());
        }
        let started = Instant::now();
        let result = self.client.request(req).await;
        let status = result.as_ref().map_or(500, |r| r.status().as_u16());
        self.metrics.http_client(
            &call.verb,
            &format!("/{}", call.method),
            status,
            started.elapsed(),
        );
        let res = result.map_err(|e| {
            if caused_by_length_limit(&e) {
                AppChannelError::BodyTooLarge
            } else {
                AppChannelError::Send(error_chain(&e))
            }
        })?;
        Ok(res.map(|body| {
            Body::new(PermitBody {
                inner: body,
                _permit: permit,
            })
        }))
    }

    /// Waits until the app's port accepts TCP connections (daprd polls every 100 ms with a
    /// 500 ms dial timeout), or until `cancel` fires.
    pub async fn wait_until_reachable(&self, cancel: &CancellationToken) -> bool {
        let mut logged = false;
        loop {
            let dial = tokio::net::TcpStream::connect(&self.authority);
            match tokio::time::timeout(Duration::from_millis(500), dial).await {
                Ok(Ok(_)) => return true,
                _ if !logged => {
                    tracing::info!(app = %self.authority, "waiting for the app to listen");
                    logged = true;
                }
                _ => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Probes `GET <health path>` on the app at the configured interval until `cancel` fires.
    pub async fn probe_health(self: Arc<Self>, cancel: CancellationToken) {
        let Some(probe) = self.settings.health.clone() else {
            return;
        };
        let mut ticker = tokio::time::interval(probe.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let uri = format!("http://{}{}", self.authority, probe.path);
            let Ok(req) = Request::get(uri).body(Body::empty()) else {
                self.health.report(false, probe.threshold);
                continue;
            };
            let ok = matches!(
                tokio::time::timeout(probe.timeout, self.client.request(req)).await,
                Ok(Ok(res)) if res.status().is_success()
            );
            self.health.report(ok, probe.threshold);
        }
    }
}

/// The app's response body, holding the concurrency permit until it is done.
struct PermitBody {
    inner: hyper::body::Incoming,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// hyper-util hides the cause (connection refused, reset) behind "client error (Connect)";
/// the user needs the cause.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn caused_by_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_flips_after_threshold_and_back_on_success() {
        let h = AppHealth::default();
        let mut changes = h.watch();
        h.report(false, 2);
        assert!(h.is_healthy());
        assert!(!changes.has_changed().expect("sender alive"));
        h.report(false, 2);
        assert!(!h.is_healthy());
        assert!(changes.has_changed().expect("sender alive"));
        assert!(!*changes.borrow_and_update());
        h.report(true, 2);
        assert!(h.is_healthy());
        assert!(*changes.borrow_and_update());
    }
}
