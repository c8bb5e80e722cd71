//! `state.in-memory`: the embedded default store. Every check-and-set holds one lock from the
//! etag check to the write, so concurrent writers with the same etag get exactly one winner,
//! and a transaction validates all its operations before applying any.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::query::{Query, QueryResponse};
use super::{
    Concurrency, DeleteRequest, Feature, GetRequest, Item, Operation, SetRequest, StateError,
    StateStore, Ttl,
};

mod eval;

pub use eval::{evaluate, Candidate};

/// How often expired items are purged (daprd's in-memory store sweeps every second). Expired
/// items are invisible to reads before that, whatever the sweep interval.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(1);

const FEATURES: &[Feature] = &[
    Feature::Etag,
    Feature::Transactional,
    Feature::Ttl,
    Feature::Query,
    Feature::DeleteWithPrefix,
];

/// An in-process state store. Cheap to share behind an `Arc`; the purge task stops when the
/// store is closed or dropped.
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    items: Mutex<HashMap<String, Entry>>,
    stop: CancellationToken,
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    etag: String,
    expires: Option<SystemTime>,
}

impl Entry {
    fn is_live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store that purges expired items every [`DEFAULT_PURGE_INTERVAL`].
    pub fn new() -> Self {
        Self::with_purge_interval(DEFAULT_PURGE_INTERVAL)
    }

    /// A store with its own purge interval. Outside a Tokio runtime no purge task runs and
    /// expired items are dropped lazily, when a read or write meets them.
    pub fn with_purge_interval(interval: Duration) -> Self {
        let shared = Arc::new(Shared {
            items: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(purge_loop(
                Arc::downgrade(&shared),
                shared.stop.clone(),
                interval,
            ));
        }
        Self { shared }
    }

    /// How many items the store holds, counting expired items not purged yet. For tests and
    /// diagnostics; reads never return expired items.
    pub fn stored_len(&self) -> usize {
        self.shared.lock().len()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    /// The lock is never held across an await or a panic-prone call, so a poisoned lock only
    /// means another thread panicked elsewhere; the map itself is still consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn purge(&self, now: SystemTime) {
        self.lock().retain(|_, e| e.is_live(now));
    }
}

async fn purge_loop(shared: Weak<Shared>, stop: CancellationToken, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match shared.upgrade() {
            Some(shared) => {
                shared.purge(SystemTime::now());
            }
            None => return,
        }
    }
}

/// daprd's etag rules: an etag must match a live item; without one, `first-write` refuses to
/// overwrite a live item and `last-write` always wins. An empty etag counts as none.
fn check_etag(
    items: &HashMap<String, Entry>,
    key: &str,
    etag: Option<&str>,
    concurrency: Concurrency,
    now: SystemTime,
) -> Result<(), StateError> {
    let current = items.get(key).filter(|e| e.is_live(now));
    match (etag.filter(|e| !e.is_empty()), current) {
        (Some(_), None) => Err(StateError::EtagMismatch(format!(
            "state not exist or expired for key={key}"
        ))),
        (Some(expected), Some(entry)) if entry.etag != expected => {
            Err(StateError::EtagMismatch(format!(
                "state etag not match for key={key}: current={}, expect={expected}",
                entry.etag
            )))
        }
        (None, Some(_)) if concurrency == Concurrency::FirstWrite => Err(StateError::EtagMismatch(
            "item already exists and no etag was passed".to_owned(),
        )),
        _ => Ok(()),
    }
}

fn new_entry(value: Bytes, ttl: Option<Ttl>, now: SystemTime) -> Entry {
    Entry {
        value,
        etag: uuid::Uuid::new_v4().to_string(),
        expires: match ttl {
            Some(Ttl::Expire(after)) => Some(now + after),
            Some(Ttl::Never) | None => None,
        },
    }
}

impl StateStore for MemoryStore {
    fn type_name(&self) -> &'static str {
        "state.in-memory"
    }

    fn features(&self) -> &'static [Feature] {
        FEATURES
    }

    fn get(&self, req: GetRequest) -> BoxFuture<'_, Result<Option<Item>, StateError>> {
        let now = SystemTime::now();
        let mut items = self.shared.lock();
        let item = match items.get(&req.key) {
            Some(entry) if entry.is_live(now) => Some(Item {
                value: entry.value.clone(),
                etag: Some(entry.etag.clone()),
                expires: entry.expires,
            }),
            Some(_) => {
                items.remove(&req.key);
                None
            }
            None => None,
        };
        drop(items);
        Box::pin(async move { Ok(item) })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        let now = SystemTime::now();
        let mut items = self.shared.lock();
        let result =
            check_etag(&items, &req.key, req.etag.as_deref(), req.concurrency, now).map(|()| {
                items.insert(req.key, new_entry(req.value, req.ttl, now));
            });
        drop(items);
        Box::pin(async move { result })
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        let now = SystemTime::now();
        let mut items = self.shared.lock();
        let result =
            check_etag(&items, &req.key, req.etag.as_deref(), req.concurrency, now).map(|()| {
                items.remove(&req.key);
            });
        drop(items);
        Box::pin(async move { result })
    }

    fn transact(
        &self,
        ops: Vec<Operation>,
        _metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        let now = SystemTime::now();
        let mut items = self.shared.lock();
        // Every etag is checked against the state before the transaction, under the same lock
        // as the writes: either all operations apply or none does.
        let checked = ops.iter().try_for_each(|op| match op {
            Operation::Upsert(r) => {
                check_etag(&items, &r.key, r.etag.as_deref(), r.concurrency, now)
            }
            Operation::Delete(r) => {
                check_etag(&items, &r.key, r.etag.as_deref(), r.concurrency, now)
            }
        });
        if checked.is_ok() {
            for op in ops {
                match op {
                    Operation::Upsert(r) => {
                        items.insert(r.key, new_entry(r.value, r.ttl, now));
                    }
                    Operation::Delete(r) => {
                        items.remove(&r.key);
                    }
                }
            }
        }
        drop(items);
        Box::pin(async move { checked })
    }

    fn query(
        &self,
        query: Query,
        _metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<QueryResponse, StateError>> {
        let now = SystemTime::now();
        // Copy out cheap handles under the lock; parsing and sorting happen without it.
        let candidates: Vec<Candidate> = self
            .shared
            .lock()
            .iter()
            .filter(|(_, e)| e.is_live(now))
            .map(|(k, e)| Candidate {
                key: k.clone(),
                value: e.value.clone(),
                etag: e.etag.clone(),
            })
            .collect();
        Box::pin(async move { evaluate(&query, candidates) })
    }

    fn delete_with_prefix(&self, prefix: String) -> BoxFuture<'_, Result<u64, StateError>> {
        let mut items = self.shared.lock();
        let before = items.len();
        items.retain(|k, _| !k.starts_with(&prefix));
        let removed = (before - items.len()) as u64;
        drop(items);
        Box::pin(async move { Ok(removed) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.shared.stop.cancel();
        Box::pin(async {})
    }
}
