//! The gRPC API server: `Dapr`, reflection (v1 and v1alpha) and a fallback for every other
//! service (the gRPC proxy, by `dapr-app-id`), behind one edge that checks the API token, counts
//! bytes and records daprd's `dapr_grpc_io_server_*` metrics, served h2c with a graceful stop.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use super::super::ApiState;
use super::DaprApi;
use crate::proto::runtime::dapr_server::DaprServer;
use crate::sidecar::accept;
use crate::telemetry::metrics::GrpcServerMetrics;

const DAPR_SERVICE: &str = "dapr.proto.runtime.v1.Dapr";
const TOKEN_HEADER: &str = "dapr-api-token";

/// The `Dapr` methods this sidecar serves; every other method of the service is answered
/// UNIMPLEMENTED naming its feature.
const SERVED: [&str; 15] = [
    "InvokeService",
    "GetState",
    "GetBulkState",
    "SaveState",
    "QueryStateAlpha1",
    "DeleteState",
    "DeleteBulkState",
    "ExecuteStateTransaction",
    "PublishEvent",
    "BulkPublishEventAlpha1",
    "BulkPublishEvent",
    "SubscribeTopicEventsAlpha1",
    "GetMetadata",
    "SetMetadata",
    "Shutdown",
];

/// Serving settings for the gRPC listener.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// How long in-flight calls (including open subscription streams) may take to finish once
    /// shutdown starts.
    pub grace: Duration,
}

/// The routes of the gRPC port. `fallback` serves every service other than `Dapr` and
/// reflection; [`unknown_service`] is the one to use when nothing else is plugged in.
pub fn router<F>(api: Arc<ApiState>, fallback: F) -> Result<Router, tonic_reflection::server::Error>
where
    F: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    F::Response: IntoResponse,
    F::Future: Send + 'static,
{
    let max_message = usize::try_from(api.max_body).unwrap_or(usize::MAX);
    let dapr = DaprServer::new(DaprApi::new(api))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .with_service_name(DAPR_SERVICE)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let routes = Routes::new(reflection().build_v1()?).add_service(reflection().build_v1alpha()?);
    Ok(routes
        .into_axum_router()
        .route(
            &format!("/{DAPR_SERVICE}/{{method}}"),
            any(move |Path(method): Path<String>, req: Request| {
                let dapr = dapr.clone();
                async move {
                    if SERVED.contains(&method.as_str()) {
                        match dapr.oneshot(req).await {
                            Ok(res) => res.into_response(),
                            Err(never) => match never {},
                        }
                    } else {
                        not_served(&method)
                    }
                }
            }),
        )
        .fallback_service(fallback))
}

/// The answer for a service nobody serves here, until the gRPC proxy takes these calls.
pub async fn unknown_service(req: Request) -> Result<Response, Infallible> {
    let service = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    Ok(status_response(Status::unimplemented(format!(
        "unknown service {service}"
    ))))
}

/// UNIMPLEMENTED naming the Dapr feature the method belongs to.
fn not_served(method: &str) -> Response {
    let feature = feature_of(method);
    status_response(Status::unimplemented(format!(
        "{feature} not supported by this sidecar: /{DAPR_SERVICE}/{method}"
    )))
}

fn feature_of(method: &str) -> &'static str {
    const FEATURES: [(&[&str], &str); 10] = [
        (&["Actor"], "actors are"),
        (&["Binding"], "bindings are"),
        (&["Secret"], "secrets are"),
        (&["Configuration"], "configuration stores are"),
        (&["Lock", "Unlock"], "distributed locks are"),
        (&["Crypt", "Subtle"], "cryptography is"),
        (&["Workflow"], "workflows are"),
        (&["Job"], "jobs are"),
        (&["Converse"], "conversation is"),
        (
            &["Vector", "Collection", "Index", "Document", "Search"],
            "vector search is",
        ),
    ];
    FEATURES
        .iter()
        .find(|(words, _)| words.iter().any(|w| method.contains(w)))
        .map_or("this API is", |(_, feature)| feature)
}

fn status_response(status: Status) -> Response {
    status.into_http::<Body>()
}

/// What one call goes through before routing: the API token, then metrics around the call.
#[derive(Clone)]
struct Edge {
    router: Router,
    token: Option<Arc<str>>,
    metrics: GrpcServerMetrics,
}

impl Edge {
    async fn handle(self, req: http::Request<Incoming>) -> Response {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let method: Arc<str> = Arc::from(parts.uri.path().trim_start_matches('/'));
        let received = Arc::new(AtomicU64::new(0));
        let mut res = match self.admit(&mut parts.headers) {
            Err(status) => status_response(status),
            Ok(()) => {
                let body = Body::new(Counted {
                    inner: body,
                    count: received.clone(),
                });
                match self
                    .router
                    .oneshot(http::Request::from_parts(parts, body))
                    .await
                {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            }
        };
        as_daprd_size_error(res.headers_mut());
        let code = grpc_status(res.headers());
        let (parts, body) = res.into_parts();
        let body = Metered {
            inner: body,
            recorder: Some(Recorder {
                metrics: self.metrics,
                method,
                started,
                received,
                sent: 0,
                code,
            }),
        };
        Response::from_parts(parts, Body::new(body))
    }

    /// daprd's interceptor: the token must match, and it does not travel further.
    fn admit(&self, headers: &mut HeaderMap) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let Some(given) = headers.remove(TOKEN_HEADER) else {
            return Err(Status::unauthenticated(
                "missing api token in request metadata",
            ));
        };
        if constant_time_eq(given.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "authentication error: api token mismatch",
            ))
        }
    }
}

/// Serves the gRPC API on `listener` until `stop` fires, then lets in-flight calls finish for
/// at most the grace period.
pub async fn serve(
    listener: TcpListener,
    api: Arc<ApiState>,
    router: Router,
    metrics: GrpcServerMetrics,
    settings: GrpcSettings,
    stop: CancellationToken,
) {
    let edge = Edge {
        router,
        token: api.api_token.as_deref().map(Arc::from),
        metrics,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    accept::until_stopped(listener, &stop, |stream| {
        let edge = edge.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let edge = edge.clone();
            async move { Ok::<_, Infallible>(edge.handle(req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "gRPC connection ended with an error");
            }
        });
    })
    .await;
    accept::drain(graceful, settings.grace, "gRPC calls").await;
}

/// The gRPC code in `headers` (a trailers-only answer, or the trailers themselves).
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// tonic refuses an oversized message with OUT_OF_RANGE; daprd (grpc-go) says
/// RESOURCE_EXHAUSTED, which is what clients written against daprd check.
fn as_daprd_size_error(headers: &mut HeaderMap) {
    let too_large = grpc_status(headers) == Some(Code::OutOfRange as i32)
        && headers.get("grpc-message").is_some_and(|m| {
            // grpc-message is percent-encoded on the wire.
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .starts_with("Error, decoded message length too large")
        });
    if too_large {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
}

/// Compares secrets without leaking, through timing, how long a matching prefix was.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request body that counts the bytes the client sent.
struct Counted {
    inner: Incoming,
    count: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records one finished call; on drop, so a call the client abandoned is counted too.
struct Recorder {
    metrics: GrpcServerMetrics,
    method: Arc<str>,
    started: Instant,
    received: Arc<AtomicU64>,
    sent: u64,
    /// Known once the trailers (or a trailers-only answer) went out.
    code: Option<i32>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled as i32);
        self.metrics.rpc(
            &self.method,
            code,
            self.started.elapsed(),
            self.received.load(Ordering::Relaxed),
            self.sent,
        );
    }
}

/// A response body that counts bytes sent and reads the final status from the trailers.
struct Metered {
    inner: Body,
    recorder: Option<Recorder>,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map(Bytes::len);
                if let Some(trailers) = frame.trailers_mut() {
                    as_daprd_size_error(trailers);
                    let code = grpc_status(trailers);
                    if let Some(recorder) = &mut self.recorder {
                        recorder.code = code.or(recorder.code);
                    }
                } else if let (Some(len), Some(recorder)) = (len, &mut self.recorder) {
                    recorder.sent += len as u64;
                }
            }
            Poll::Ready(None) => {
                // A trailers-only answer carried its code in the headers; a body that ends
                // without trailers is a success as far as the transport knows.
                if let Some(mut recorder) = self.recorder.take() {
                    recorder.code = recorder.code.or(Some(Code::Ok as i32));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unserved_methods_name_their_feature() {
        assert_eq!(feature_of("InvokeActor"), "actors are");
        assert_eq!(feature_of("GetBulkSecret"), "secrets are");
        assert_eq!(feature_of("SubtleSignAlpha1"), "cryptography is");
        assert_eq!(feature_of("StartWorkflowBeta1"), "workflows are");
        assert_eq!(feature_of("Nothing"), "this API is");
    }

    #[test]
    fn oversized_message_is_resource_exhausted() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from(11));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("Error,%20decoded%20message%20length%20too%20large: found 9"),
        );
        as_daprd_size_error(&mut headers);
        assert_eq!(grpc_status(&headers), Some(8));
    }
}
