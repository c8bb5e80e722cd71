//! TLS over TCP for tonic: a connector for channels (peers, the CA) and the accept side of the
//! internal port, which hands tonic streams that carry the peer's verified SPIFFE ID.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use super::spiffe::{self, SpiffeId};
use crate::telemetry::metrics::SecurityMetrics;

/// A handshake that has not finished by then is dropped, so a silent client cannot hold a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `host:port` of the URI and runs the TLS handshake with `config`. The server name is
/// only sent as SNI: the verifier checks the SPIFFE ID, not a DNS name.
#[derive(Clone)]
pub struct TlsConnect {
    connector: TlsConnector,
    metrics: Option<Arc<SecurityMetrics>>,
}

impl TlsConnect {
    pub fn new(config: Arc<ClientConfig>, metrics: Option<Arc<SecurityMetrics>>) -> Self {
        Self {
            connector: TlsConnector::from(config),
            metrics,
        }
    }
}

type Connected = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<http::Uri> for TlsConnect {
    type Response = Connected;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in URI"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            match connector.connect(name, tcp).await {
                Ok(tls) => Ok(TokioIo::new(tls)),
                Err(err) => {
                    if let Some(metrics) = &metrics {
                        metrics.handshake_failed("client", super::tls::failure_reason(&err));
                    }
                    Err(err)
                }
            }
        })
    }
}

/// What tonic puts in each request's extensions for a TLS connection: the caller's verified
/// identity.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub remote: std::net::SocketAddr,
    /// `None` only if the verified certificate had no parsable ID (the verifier refuses those).
    pub id: Option<Arc<SpiffeId>>,
}

/// An accepted, handshaken connection.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts on `listener` and yields connections whose handshake succeeded. Handshakes run in
/// their own tasks so a slow client never blocks the accept loop; failures are counted by
/// reason and never reach the server.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    metrics: Arc<SecurityMetrics>,
    stop: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(%err, "accepting on the internal port failed");
                        continue;
                    }
                },
            };
            // Without it every response waits on Nagle + delayed ACK (~1 ms per hop).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let stream = match handshake.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        let reason = super::tls::failure_reason(&err);
                        tracing::debug!(%remote, %err, reason, "mTLS handshake refused");
                        metrics.handshake_failed("server", reason);
                        return;
                    }
                    Err(_) => {
                        metrics.handshake_failed("server", "timeout");
                        return;
                    }
                };
                let id = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|leaf| spiffe::id_of(leaf))
                    .map(Arc::new);
                let conn = TlsConn {
                    stream,
                    peer: PeerIdentity { remote, id },
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
