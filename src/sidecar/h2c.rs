//! Plaintext HTTP/2 (prior knowledge) serving for the gRPC listeners: the internal port and,
//! for now, the proxy on the gRPC API port.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `stop` fires, then lets in-flight calls finish for at
/// most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // hyper's fixed 1 MiB windows, not the adaptive ones that start at 64 KiB: with many calls
    // queued on one connection a small window makes the client dribble tiny DATA frames, which
    // h2 counts as abuse and answers with GOAWAY (ENHANCE_YOUR_CALM) for every call on it.
    builder
        .timer(TokioTimer::new())
        // As tonic's server: gRPC clients multiplex every call on one connection.
        .max_concurrent_streams(None);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // Without it every response waits on Nagle + delayed ACK (~1 ms per hop).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "gRPC connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight gRPC calls did not finish within the grace period"
        );
    }
}
