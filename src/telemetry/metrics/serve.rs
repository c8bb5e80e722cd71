//! The metrics exporter (`--metrics-port`, 9090). Like daprd's, it answers every path and method
//! with the exposition, so `/`, `/metrics` and whatever a scrape config names all work.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The Prometheus text format 0.0.4, which is what daprd's exporter sends. prometheus-client
/// writes OpenMetrics text, but our counters deliberately lack OpenMetrics' mandatory `_total`
/// suffix (daprd's names), which is valid only in the Prometheus format. Everything else we emit
/// (`# HELP`/`# TYPE`, label syntax, histogram series) reads the same in both; we omit the
/// OpenMetrics-only `# EOF` line.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long in-flight scrapes may take to finish once shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after an accept error such as running out of file descriptors, so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the exposition of `registry` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight scrapes finish (bounded) and returns. Errors only if the listener
/// itself is unusable; per-connection failures are logged and skipped.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let registry = Arc::clone(&registry);
                    let service = service_fn(move |_request| {
                        std::future::ready(Ok::<_, Infallible>(exposition(&registry)))
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "metrics connection ended with an error");
                        }
                    });
                }
                Err(error) if listener_unusable(&error) => return Err(error),
                Err(error) if connection_level(&error) => {
                    tracing::debug!(%error, "metrics accept failed for one connection");
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }

    // Free the port now; draining may take a while.
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("metrics scrapes still running after the drain timeout; dropping them");
    }
    Ok(())
}

/// The response to any scrape.
fn exposition(registry: &Registry) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(16 * 1024);
    let (status, content_type, body) =
        match prometheus_client::encoding::text::encode_registry(&mut body, registry) {
            Ok(()) => (StatusCode::OK, CONTENT_TYPE, body),
            // Writing into a String cannot fail; a metric that refuses to encode (a counter past
            // i64::MAX) can, and a scrape error is better than a truncated exposition.
            Err(std::fmt::Error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "error encoding metrics\n".to_owned(),
            ),
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// The socket is closed or was never listening: retrying cannot help.
fn listener_unusable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// The failure concerned only the connection being accepted.
fn connection_level(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
