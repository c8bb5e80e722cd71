//! One HTTP/2 connection per peer sidecar, shared by every call to it (gRPC multiplexes), and
//! what we learned about the peer: whether it speaks the streaming RPC.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::identity::transport::TlsConnect;
use crate::identity::Identity;

use crate::proto::internals::service_invocation_client::ServiceInvocationClient;
use crate::resolve::PeerAddress;

/// Does the peer serve `CallLocalStream`? daprd before 1.11 does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    Unknown = 0,
    Yes = 1,
    No = 2,
}

/// A peer's client and what we know of it. Cloning is cheap (the channel is shared).
#[derive(Clone)]
pub struct Peer {
    pub client: ServiceInvocationClient<Channel>,
    streaming: Arc<AtomicU8>,
}

impl Peer {
    pub fn streaming(&self) -> Streaming {
        match self.streaming.load(Ordering::Relaxed) {
            1 => Streaming::Yes,
            2 => Streaming::No,
            _ => Streaming::Unknown,
        }
    }

    pub fn set_streaming(&self, value: Streaming) {
        self.streaming.store(value as u8, Ordering::Relaxed);
    }
}

/// The peer clients, keyed by address. Reads take a shared lock only long enough to clone.
pub struct Peers {
    map: RwLock<HashMap<PeerAddress, Peer>>,
    max_message: usize,
    /// With mTLS, connections are TLS and the peer must prove the target's SPIFFE ID.
    identity: Option<Arc<Identity>>,
}

impl Peers {
    pub fn new(max_message: usize) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max_message,
            identity: None,
        }
    }

    pub fn set_identity(&mut self, identity: Arc<Identity>) {
        self.identity = Some(identity);
    }

    /// The client for `addr`, which must be the sidecar of `app_id` in `namespace`. A pooled
    /// connection made for another app at a reused address fails its handshake; the caller then
    /// forgets it and dials afresh.
    pub fn get(
        &self,
        addr: &PeerAddress,
        namespace: &str,
        app_id: &str,
    ) -> Result<Peer, tonic::transport::Error> {
        if let Some(peer) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(addr) {
            return Ok(peer.clone());
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(peer) = map.get(addr) {
            return Ok(peer.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let channel = match &self.identity {
            Some(identity) => {
                let config = identity.peer_config(namespace, app_id);
                endpoint.connect_with_connector_lazy(TlsConnect::new(
                    config,
                    Some(identity.metrics().clone()),
                ))
            }
            None => endpoint.connect_lazy(),
        };
        let client = ServiceInvocationClient::new(channel)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        let peer = Peer {
            client,
            streaming: Arc::new(AtomicU8::new(Streaming::Unknown as u8)),
        };
        map.insert(addr.clone(), peer.clone());
        Ok(peer)
    }

    /// Drops a peer whose connection failed; the next call dials afresh.
    pub fn forget(&self, addr: &PeerAddress) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
    }
}
