//! What the building block answers when a call fails, in daprd's words. The messages are
//! daprd's (`pkg/messages`, `pkg/api/errors/state.go`); the APIs map each variant to their
//! status codes and error details.

use crate::state::{StateError, StateStore};

/// A call on a store, as daprd's `dapr_component_state_*` metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricOp {
    Get,
    Set,
    Delete,
    BulkGet,
    Transaction,
    Query,
}

impl MetricOp {
    /// The `operation` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::Delete => "delete",
            Self::BulkGet => "bulk_get",
            Self::Transaction => "transaction",
            Self::Query => "query",
        }
    }
}

/// A failed state call.
#[derive(Debug, thiserror::Error)]
pub enum StatesError {
    /// No state store is loaded at all.
    #[error("state store {store} is not configured")]
    NotConfigured { store: String, app_id: String },
    /// Stores exist, but none by this name (or it is scoped away from this app).
    #[error("state store {store} is not found")]
    NotFound { store: String, app_id: String },
    /// The key contains `||`.
    #[error("input key/keyPrefix '{key}' can't contain '||'")]
    IllegalKey { store: String, key: String },
    /// A save without a key.
    #[error("\"key\" is a required field")]
    EmptyKey,
    #[error("state store {store} doesn't support transactions")]
    TransactionsNotSupported { store: String },
    #[error("state store does not support querying")]
    QueryNotSupported { store: String },
    #[error(
        "the transaction contains {count} operations, which is more than what the state store supports: {max}"
    )]
    TooManyOperations {
        store: String,
        count: usize,
        max: usize,
    },
    #[error("operation type {0} not supported")]
    UnsupportedOperation(String),
    #[error("fail to get {key} from state store {store}: {source}")]
    Get {
        store: String,
        key: String,
        source: StateError,
    },
    #[error("failed saving state in state store {store}: {source}")]
    Save { store: String, source: StateError },
    #[error("failed deleting state with key {key}: {source}")]
    Delete {
        store: String,
        key: String,
        source: StateError,
    },
    #[error("error while executing state transaction: {source}")]
    Transaction { store: String, source: StateError },
    #[error("state store {store} query failed: {detail}")]
    QueryFailed { store: String, detail: String },
}

impl StatesError {
    /// The store's own error behind a failed operation, when there is one (the APIs pick the
    /// status from its kind: etag mismatch, invalid etag, other).
    pub fn store_error(&self) -> Option<&StateError> {
        match self {
            Self::Get { source, .. }
            | Self::Save { source, .. }
            | Self::Delete { source, .. }
            | Self::Transaction { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Says whether a store advertises a feature, so checks read as sentences.
pub(crate) fn has(store: &dyn StateStore, feature: crate::state::Feature) -> bool {
    store.features().contains(&feature)
}
