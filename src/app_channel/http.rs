//! The HTTP/1.1 or h2c channel to the app.

use std::pin::Pin;
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
use tokio::sync::OwnedSemaphorePermit;

use super::{AppChannelError, AppChannelSettings};
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

pub(super) struct HttpApp {
    client: Client<HttpConnector, Body>,
    authority: String,
    app_token: Option<HeaderValue>,
    metrics: Arc<SidecarMetrics>,
}

impl HttpApp {
    pub(super) fn new(
        authority: &str,
        settings: &AppChannelSettings,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90));
        if settings.h2c {
            builder.http2_only(true);
        }
        Self {
            client: builder.build(connector),
            authority: authority.to_owned(),
            app_token: settings
                .app_api_token
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok()),
            metrics,
        }
    }

    /// Sends `call`; `permit` rides along with the response body until it ends.
    pub(super) async fn call(
        &self,
        call: Call,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Response<Body>, AppChannelError> {
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

    /// One `GET <path>` health probe: healthy on a 2xx within `timeout`.
    pub(super) async fn probe(&self, path: &str, timeout: Duration) -> bool {
        let uri = format!("http://{}{}", self.authority, path);
        let Ok(req) = Request::get(uri).body(Body::empty()) else {
            return false;
        };
        matches!(
            tokio::time::timeout(timeout, self.client.request(req)).await,
            Ok(Ok(res)) if res.status().is_success()
        )
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
