//! The accept loop and graceful drain every TCP server of the sidecar shares; each server
//! keeps its own protocol settings and per-connection service.

use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Hands every connection accepted on `listener` to `serve` until `stop` fires, then closes
/// the listener so no new connection gets in while the existing ones drain.
pub(crate) async fn until_stopped(
    listener: TcpListener,
    stop: &CancellationToken,
    mut serve: impl FnMut(TcpStream),
) {
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
        serve(stream);
    }
    drop(listener);
}

/// Lets the connections `graceful` watches finish for at most `grace`; `what` names what was
/// cut short in the warning.
pub(crate) async fn drain(graceful: GracefulShutdown, grace: Duration, what: &str) {
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight {what} did not finish within the grace period"
        );
    }
}
