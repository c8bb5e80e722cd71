//! HTTP/2 (prior knowledge) serving for the internal port: plaintext, or over mTLS with the
//! caller's verified identity put in each request's extensions.

use std::time::Duration;

use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::accept;
use crate::identity::transport::TlsConn;

/// Serves `router` on `listener` until `stop` fires, then lets in-flight calls finish for at
/// most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    grace: Duration,
) {
    let builder = builder();
    let graceful = GracefulShutdown::new();
    accept::until_stopped(listener, &stop, |stream| {
        spawn_connection(&builder, &graceful, stream, router.clone());
    })
    .await;
    accept::drain(graceful, grace, "gRPC calls").await;
}

/// Serves `router` on connections whose mTLS handshake succeeded; each request carries the
/// caller's [`PeerIdentity`](crate::identity::transport::PeerIdentity) in its extensions.
pub async fn serve_tls(
    mut incoming: impl futures_util::Stream<Item = std::io::Result<TlsConn>> + Unpin,
    router: axum::Router,
    stop: CancellationToken,
    grace: Duration,
) {
    let builder = builder();
    let graceful = GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(err)) => {
                    tracing::warn!(%err, "accept failed");
                    continue;
                }
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let peer = conn.connect_info();
        let router = router.clone().layer(axum::Extension(peer));
        spawn_connection(&builder, &graceful, conn, router);
    }
    accept::drain(graceful, grace, "gRPC calls").await;
}

fn builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // hyper's fixed 1 MiB windows, not the adaptive ones that start at 64 KiB: with many calls
    // queued on one connection a small window makes the client dribble tiny DATA frames, which
    // h2 counts as abuse and answers with GOAWAY (ENHANCE_YOUR_CALM) for every call on it.
    builder
        .timer(TokioTimer::new())
        // As tonic's server: gRPC clients multiplex every call on one connection.
        .max_concurrent_streams(None);
    builder
}

fn spawn_connection<IO>(
    builder: &hyper::server::conn::http2::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    io: IO,
    router: axum::Router,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = TowerToHyperService::new(router);
    let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%err, "gRPC connection ended with an error");
        }
    });
}
