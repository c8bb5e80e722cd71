//! The client to the local app at `--app-channel-address:--app-port`: HTTP/1.1 or h2c
//! ([`http`]), or gRPC `AppCallback` ([`grpc`]) as `--app-protocol` says, bounded by
//! `--app-max-concurrency`, with daprd's readiness wait and health probing.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::http::Response;
use axum::body::Body;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::invoke::Call;
use crate::telemetry::metrics::SidecarMetrics;

pub mod grpc;
mod grpc_metadata;
mod http;

pub use self::grpc::{AppGrpcStatus, GrpcApp, GrpcReply};
use self::http::HttpApp;

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
    /// Call the app's gRPC `AppCallback` services (`--app-protocol grpc`); `h2c` is then moot.
    pub grpc: Option<GrpcAppSettings>,
    pub max_concurrency: Option<usize>,
    pub app_api_token: Option<String>,
    pub health: Option<HealthProbeSettings>,
}

/// What only a gRPC app channel needs.
#[derive(Debug, Clone)]
pub struct GrpcAppSettings {
    /// Largest message sent to or read from the app (daprd: `--max-body-size`).
    pub max_message_size: usize,
}

/// `--enable-app-health-check` and friends.
#[derive(Debug, Clone)]
pub struct HealthProbeSettings {
    /// The HTTP path probed; gRPC apps are probed with `AppCallbackHealthCheck` instead.
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

/// The wire the app is reached over.
// One per sidecar, built once: boxing the larger variant would only add a pointer hop to
// every call.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Http(HttpApp),
    Grpc(GrpcApp),
}

/// The channel to the app. Cheap to share behind an `Arc`.
pub struct AppChannel {
    transport: Transport,
    settings: AppChannelSettings,
    authority: String,
    limit: Option<Arc<Semaphore>>,
    health: Arc<AppHealth>,
}

impl AppChannel {
    pub fn new(settings: AppChannelSettings, metrics: Arc<SidecarMetrics>) -> Self {
        let authority = format!("{}:{}", settings.address, settings.port);
        let transport = match &settings.grpc {
            Some(grpc) => Transport::Grpc(GrpcApp::new(
                &authority,
                grpc,
                settings.app_api_token.as_deref(),
            )),
            None => Transport::Http(HttpApp::new(&authority, &settings, metrics)),
        };
        Self {
            transport,
            limit: settings
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n))),
            health: Arc::new(AppHealth::default()),
            authority,
            settings,
        }
    }

    pub fn settings(&self) -> &AppChannelSettings {
        &self.settings
    }

    pub fn health(&self) -> &Arc<AppHealth> {
        &self.health
    }

    /// The gRPC channel, when the app speaks gRPC: callers that have a gRPC request in hand
    /// (the internal server, pub/sub) use it directly instead of going through HTTP shapes.
    pub fn grpc(&self) -> Option<&GrpcApp> {
        match &self.transport {
            Transport::Grpc(g) => Some(g),
            Transport::Http(_) => None,
        }
    }

    /// Sends a call to the app and returns its response, body streaming. The concurrency permit
    /// is held until the response body ends, so a slow download counts against the limit. A
    /// gRPC app's answer comes back as HTTP (daprd's status mapping) with the gRPC status kept
    /// as an [`AppGrpcStatus`] extension.
    pub async fn call(&self, call: Call) -> Result<Response<Body>, AppChannelError> {
        let permit = self.admit().await?;
        match &self.transport {
            Transport::Http(h) => h.call(call, permit).await,
            Transport::Grpc(g) => {
                let res = g.call(call).await;
                drop(permit);
                res
            }
        }
    }

    /// The health gate and the concurrency permit every call into the app goes through.
    pub async fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, AppChannelError> {
        if self.settings.health.is_some() && !self.health.is_healthy() {
            return Err(AppChannelError::Unhealthy);
        }
        match &self.limit {
            Some(sem) => sem
                .clone()
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| AppChannelError::NotInitialized),
            None => Ok(None),
        }
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

    /// Probes the app at the configured interval until `cancel` fires: `GET <health path>` for
    /// HTTP apps, `AppCallbackHealthCheck.HealthCheck` for gRPC apps (any error, UNIMPLEMENTED
    /// included, is a failure, as in daprd).
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
            let ok = match &self.transport {
                Transport::Http(h) => h.probe(&probe.path, probe.timeout).await,
                Transport::Grpc(g) => g.probe(probe.timeout).await,
            };
            self.health.report(ok, probe.threshold);
        }
    }
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
