//! The HTTP server behind the API: HTTP/1.1 and h2c on one port, and the edge every request
//! crosses before routing (path cleaning, token, body limit, metrics), written once here.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use super::error::{invalid_api_token, ApiError};
use super::ApiState;
use crate::http_path;
use crate::sidecar::accept;

/// Paths that answer without the API token, as in daprd: probes carry no secrets.
const TOKEN_EXEMPT: [&str; 2] = ["/v1.0/healthz", "/v1.0/healthz/outbound"];

/// Serving settings for one HTTP listener.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Largest header block (`--read-buffer-size`); hyper needs at least 8 KiB of buffer.
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub grace: Duration,
}

/// The router wrapped with the edge: what one request goes through, outermost first.
#[derive(Clone)]
pub struct Edge {
    state: Arc<ApiState>,
    router: Router,
}

impl Edge {
    pub fn new(state: Arc<ApiState>, router: Router) -> Self {
        let mut router = router.layer(DefaultBodyLimit::disable());
        if let Some(cors) = cors_layer(&state.allowed_origins) {
            router = router.layer(cors);
        }
        Self { state, router }
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response {
        let started = Instant::now();
        let method = req.method().clone();
        let (mut parts, body) = req.into_parts();
        clean_uri(&mut parts.uri);
        let path = parts.uri.path().to_owned();
        let request_bytes = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| http_body::Body::is_end_stream(&body).then_some(0));

        let res = match self.admit(&mut parts) {
            Err(Rejection::Token) => invalid_api_token(),
            Err(Rejection::TooLarge) => {
                ApiError::body_too_large(self.state.max_body).into_response()
            }
            Ok(()) => {
                let limit = usize::try_from(self.state.max_body).unwrap_or(usize::MAX);
                let body = Body::new(http_body_util::Limited::new(body, limit));
                let req = Request::from_parts(parts, body);
                match self.router.clone().oneshot(req).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            }
        };
        self.state
            .metrics
            .http_server(&method, &path, res.status().as_u16(), started.elapsed());
        // Sizes are known only when declared; a streamed body is not counted rather than
        // buffered to measure it.
        let response_bytes = http_body::Body::size_hint(res.body()).exact();
        self.state
            .metrics
            .http_server_body_sizes(request_bytes, response_bytes);
        res
    }

    /// Checks that need no body: API token and declared body size.
    fn admit(&self, parts: &mut http::request::Parts) -> Result<(), Rejection> {
        if let Some(token) = &self.state.api_token {
            if !TOKEN_EXEMPT.contains(&parts.uri.path()) {
                let given = parts
                    .headers
                    .get("dapr-api-token")
                    .map(HeaderValue::as_bytes);
                if !given.is_some_and(|g| constant_time_eq(g, token.as_bytes())) {
                    return Err(Rejection::Token);
                }
                // The token is for the sidecar; it must not reach the callee app.
                parts.headers.remove("dapr-api-token");
            }
        }
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.state.max_body) {
            return Err(Rejection::TooLarge);
        }
        Ok(())
    }
}

/// Why a request was turned away before routing.
enum Rejection {
    Token,
    TooLarge,
}

/// Serves `edge` on `listener` until `stop` fires, then lets in-flight requests finish for at
/// most the grace period.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    settings: ServeSettings,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(settings.max_header_bytes.max(8192))
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    accept::until_stopped(listener, &stop, |stream| {
        let edge = edge.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let edge = edge.clone();
            async move { Ok::<_, Infallible>(edge.handle(req).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    })
    .await;
    accept::drain(graceful, settings.grace, "requests").await;
}

/// daprd cleans the path before routing (`//` collapsed, trailing slash dropped).
fn clean_uri(uri: &mut Uri) {
    let path = uri.path();
    let cleaned = http_path::clean(path);
    let cleaned = if cleaned.len() > 1 {
        cleaned.trim_end_matches('/').to_owned()
    } else {
        cleaned
    };
    if cleaned == path {
        return;
    }
    let rebuilt = match uri.query() {
        Some(q) => format!("{cleaned}?{q}"),
        None => cleaned,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = rebuilt.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(new) = Uri::from_parts(parts) {
            *uri = new;
        }
    }
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any),
    )
}

/// Compares secrets without leaking, through timing, how long a matching prefix was.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_cleaning_keeps_query() {
        let mut uri: Uri = "/v1.0//invoke/b/method/x/?q=1".parse().unwrap();
        clean_uri(&mut uri);
        assert_eq!(uri, "/v1.0/invoke/b/method/x?q=1");
        let mut root: Uri = "/".parse().unwrap();
        clean_uri(&mut root);
        assert_eq!(root, "/");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
