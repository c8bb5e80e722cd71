//! Name resolution: which address serves an app id. Standalone uses a SQLite file shared with
//! daprd's `nameresolution.sqlite`; later resolvers (control plane, Kubernetes DNS) plug in here.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

mod cache;
mod duration;
pub mod sqlite;
#[cfg(test)]
mod tests;

pub use cache::Cached;
pub use duration::parse_go_duration;

/// An app to resolve: `appid` or `appid.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppTarget {
    pub app_id: String,
    /// Empty when the caller did not name one.
    pub namespace: String,
}

impl fmt::Display for AppTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.app_id)
        } else {
            write!(f, "{}.{}", self.app_id, self.namespace)
        }
    }
}

/// `host:port` of a peer sidecar's internal (sidecar-to-sidecar) server.
pub type PeerAddress = Arc<str>;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "no instance of app {0} is registered (is its sidecar running, and does it use the same \
         name-resolution database?)"
    )]
    NotFound(String),
    #[error("name resolution failed: {0}")]
    Backend(String),
    /// The name-resolution settings (Configuration `spec.nameResolution`) are unusable.
    #[error("invalid nameResolution configuration: {0}")]
    Config(String),
}

/// Resolves an app id to one of its instances.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        target: &'a AppTarget,
    ) -> BoxFuture<'a, Result<PeerAddress, ResolveError>>;
}
