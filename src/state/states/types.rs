//! Requests and answers of the building block, shaped like the Dapr API (app keys, option
//! strings as received) rather than like a store call. [`super::StoreRef`] turns them into
//! store requests.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::state::query::QueryItem;
use crate::state::Value;

/// `concurrency` / `consistency` as the app sent them; empty means the store default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateOptions {
    pub concurrency: String,
    pub consistency: String,
}

/// One item of a save (or the request of a transaction operation).
#[derive(Debug, Clone)]
pub struct SaveState {
    /// The app's key, without prefix.
    pub key: String,
    pub value: Value,
    /// `None` or empty: no etag check.
    pub etag: Option<String>,
    pub metadata: HashMap<String, String>,
    pub options: StateOptions,
}

#[derive(Debug, Clone, Default)]
pub struct GetState {
    pub key: String,
    pub consistency: String,
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteState {
    pub key: String,
    pub etag: Option<String>,
    pub options: StateOptions,
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct BulkGet {
    pub keys: Vec<String>,
    /// How many reads run at once; zero or less means all at once.
    pub parallelism: i64,
    pub metadata: HashMap<String, String>,
}

/// One operation of a transaction: `upsert` or `delete` (anything else is refused). A delete
/// uses the request's key, etag, options and metadata and ignores its value.
#[derive(Debug, Clone)]
pub struct TransactionOperation {
    pub operation: String,
    pub request: SaveState,
}

/// A value read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The stored bytes, verbatim.
    pub value: Bytes,
    pub etag: Option<String>,
    /// Response metadata, e.g. `ttlExpireTime` (RFC 3339, UTC) for items with a TTL.
    pub metadata: BTreeMap<String, String>,
}

/// One key of a bulk read, in request order. A missing key has neither value nor error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkEntry {
    pub key: String,
    pub value: Option<Bytes>,
    pub etag: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The store's error for this key alone.
    pub error: Option<String>,
}

/// A query's page: keys are the app's keys (prefix stripped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOutcome {
    pub results: Vec<QueryItem>,
    pub token: Option<String>,
}
