//! A short-lived cache in front of a resolver, so that the invoke hot path does not query the
//! backend (a SQLite file shared by every sidecar) for every request.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::{AppTarget, PeerAddress, ResolveError, Resolver};

/// Past this many entries, expired ones are swept on insert. Only successful answers are
/// stored, so the map is bounded by the number of live apps; the sweep only keeps it from
/// holding answers for apps that went away.
const SWEEP_AT: usize = 1024;

/// Caches answers of an inner resolver briefly; [`Cached::forget`] drops an answer that failed.
///
/// Only successes are cached: a miss or an error is asked again next time, so a peer that just
/// started is found at once. The TTL is short because the cached instance may die; the caller
/// calls `forget` when connecting fails, which makes the next request pick a fresh instance.
pub struct Cached<R> {
    inner: R,
    ttl: Duration,
    // A std RwLock: it is never held across an await, and readers (the hot path) do not block
    // each other.
    entries: RwLock<HashMap<AppTarget, Entry>>,
}

struct Entry {
    address: PeerAddress,
    expires: Instant,
}

impl<R: Resolver> Cached<R> {
    /// How long an answer is reused by [`Cached::new`].
    pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

    pub fn new(inner: R) -> Self {
        Self::with_ttl(inner, Self::DEFAULT_TTL)
    }

    /// Like [`Cached::new`] with another TTL (`Duration::ZERO` turns caching off).
    pub fn with_ttl(inner: R, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The wrapped resolver (e.g. to deregister a `SqliteResolver` on shutdown).
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Drops the cached answer for `target` (called when connecting to it failed).
    pub fn forget(&self, target: &AppTarget) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
    }

    fn lookup(&self, target: &AppTarget) -> Option<PeerAddress> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(target)?;
        (entry.expires > Instant::now()).then(|| entry.address.clone())
    }

    fn store(&self, target: &AppTarget, address: PeerAddress) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, e| e.expires > now);
        }
        entries.insert(
            target.clone(),
            Entry {
                address,
                expires: now + self.ttl,
            },
        );
    }
}

impl<R: Resolver> Resolver for Cached<R> {
    fn resolve<'a>(
        &'a self,
        target: &'a AppTarget,
    ) -> BoxFuture<'a, Result<PeerAddress, ResolveError>> {
        Box::pin(async move {
            if let Some(address) = self.lookup(target) {
                return Ok(address);
            }
            let address = self.inner.resolve(target).await?;
            self.store(target, address.clone());
            Ok(address)
        })
    }
}
