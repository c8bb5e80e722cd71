//! mTLS towards peer sidecars for proxied calls: a hyper client per callee identity, each dialing
//! with the workload certificate and refusing a peer that does not prove that identity (the same
//! rule as sidecar-to-sidecar invocation).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::limit::LimitedBody;
use crate::identity::transport::TlsConnect;
use crate::identity::Identity;

/// The callee a connection must prove to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId {
    pub namespace: String,
    pub app_id: String,
}

/// One pooled client per callee identity: a pooled connection is only ever reused for calls to
/// the identity it verified.
pub(super) struct TlsClients {
    identity: Arc<Identity>,
    clients: RwLock<HashMap<PeerId, Client<TlsConnector, LimitedBody>>>,
}

impl TlsClients {
    pub(super) fn new(identity: Arc<Identity>) -> Self {
        Self {
            identity,
            clients: RwLock::default(),
        }
    }

    pub(super) fn client(&self, peer: &PeerId) -> Client<TlsConnector, LimitedBody> {
        if let Some(client) = self
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
        {
            return client.clone();
        }
        let mut clients = self.clients.write().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(peer.clone())
            .or_insert_with(|| {
                let config = self.identity.peer_config(&peer.namespace, &peer.app_id);
                let connector = TlsConnector(TlsConnect::new(
                    config,
                    Some(self.identity.metrics().clone()),
                ));
                super::forward::client_builder().build(connector)
            })
            .clone()
    }
}

/// [`TlsConnect`] as a hyper-util connector.
#[derive(Clone)]
pub(super) struct TlsConnector(TlsConnect);

impl Service<Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(TlsIo) })
    }
}

/// A TLS connection to a peer sidecar; ALPN chose HTTP/2.
pub(super) struct TlsIo(TokioIo<tokio_rustls::client::TlsStream<TcpStream>>);

impl Connection for TlsIo {
    fn connected(&self) -> Connected {
        Connected::new().negotiated_h2()
    }
}

impl hyper::rt::Read for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}
