//! The state building block. [`StateStore`] is what a store implements (memory, Redis,
//! PostgreSQL); [`States`] is the one entry point both APIs call: it finds the store, applies
//! the key prefix and checks the request before the store sees it. [`open`] builds a store from
//! its component.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;

mod error;
mod factory;
pub mod memory;
mod options;
pub mod postgres;
mod prefix;
pub mod query;
pub mod redis;
mod states;
mod value;

pub use error::StateError;
pub use factory::{open, OpenContext, OpenError};
pub use memory::MemoryStore;
pub use states::{
    BulkEntry, BulkGet, DeleteState, GetState, InitError, QueryOutcome, SaveState, StateEntry,
    StateOptions, States, StatesContext, StatesError, StoreRef, TransactionOperation,
};
pub use value::Value;

/// What a store can do, as daprd reports it in metadata (`capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Etag,
    Transactional,
    Ttl,
    Query,
    DeleteWithPrefix,
    KeysLike,
}

impl Feature {
    /// daprd's feature string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Etag => "ETAG",
            Self::Transactional => "TRANSACTIONAL",
            Self::Ttl => "TTL",
            Self::Query => "QUERY_API",
            Self::DeleteWithPrefix => "DELETE_WITH_PREFIX",
            Self::KeysLike => "KEYS_LIKE",
        }
    }
}

/// `first-write` refuses to overwrite without a matching etag; `last-write` (the default) wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Concurrency {
    FirstWrite,
    #[default]
    LastWrite,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    #[default]
    Eventual,
    Strong,
}

/// A stored item as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The stored bytes, verbatim.
    pub value: Bytes,
    pub etag: Option<String>,
    /// When a TTL was set: the expiry (reported as `ttlExpireTime`).
    pub expires: Option<SystemTime>,
}

/// A read. `key` is the full stored key (prefix applied).
#[derive(Debug, Clone)]
pub struct GetRequest {
    pub key: String,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

/// A write. `etag: Some` means "only if the stored etag is this" (a missing item never matches).
#[derive(Debug, Clone)]
pub struct SetRequest {
    pub key: String,
    pub value: Bytes,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    /// From `ttlInSeconds`; `None` keeps the store's default (no expiry unless the component
    /// sets one).
    pub ttl: Option<Ttl>,
    pub metadata: HashMap<String, String>,
}

/// `ttlInSeconds`: a positive duration, or an explicit "never expire" (`-1`, as daprd accepts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Expire(Duration),
    Never,
}

#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Operation {
    Upsert(SetRequest),
    Delete(DeleteRequest),
}

/// A state store. Keys arrive already prefixed; values are opaque bytes. Every method must
/// finish within the store's own timeout: a store that is down fails fast, it never hangs.
pub trait StateStore: Send + Sync + 'static {
    /// The daprd component type, e.g. `state.redis`.
    fn type_name(&self) -> &'static str;

    fn features(&self) -> &'static [Feature];

    fn get(&self, req: GetRequest) -> BoxFuture<'_, Result<Option<Item>, StateError>>;

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>>;

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>>;

    /// All operations apply, or none does (an etag failure in any of them aborts all).
    fn transact(
        &self,
        ops: Vec<Operation>,
        metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<(), StateError>>;

    /// Largest transaction the store accepts; `None` is unbounded.
    fn max_transaction_ops(&self) -> Option<usize> {
        None
    }

    /// The query API (`QUERY_API` feature). Keys in results are full stored keys.
    fn query(
        &self,
        query: query::Query,
        metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<query::QueryResponse, StateError>> {
        let _ = (query, metadata);
        Box::pin(async { Err(StateError::NotSupported("query")) })
    }

    /// Deletes every item whose key starts with `prefix` and returns how many went
    /// (`DELETE_WITH_PREFIX`; actors and workflows use it to drop an instance's state).
    fn delete_with_prefix(&self, prefix: String) -> BoxFuture<'_, Result<u64, StateError>> {
        let _ = prefix;
        Box::pin(async { Err(StateError::NotSupported("delete with prefix")) })
    }

    /// Releases connections and background tasks.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
