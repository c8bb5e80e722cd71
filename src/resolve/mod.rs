//! Name resolution: which address serves an app id. Standalone uses a SQLite file shared with
//! daprd's `nameresolution.sqlite`; later resolvers (control plane, Kubernetes DNS) plug in here.

use std::sync::Arc;

use futures_util::future::BoxFuture;

mod cache;
pub mod sqlite;

pub use cache::Cached;

/// An app to resolve: `appid` or `appid.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppTarget {
    pub app_id: String,
    pub namespace: String,
}

/// `host:port` of a peer sidecar's internal (sidecar-to-sidecar) server.
pub type PeerAddress = Arc<str>;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no instance of app {0} is registered")]
    NotFound(String),
    #[error("name resolution failed: {0}")]
    Backend(String),
}

/// Resolves an app id to one of its instances.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(&'a self, target: &'a AppTarget) -> BoxFuture<'a, Result<PeerAddress, ResolveError>>;
}
