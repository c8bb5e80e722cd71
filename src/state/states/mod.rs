//! [`States`]: the state stores this sidecar opened, and the one entry point the HTTP and gRPC
//! APIs call. It resolves store names the way daprd does (not configured / not found), and
//! [`StoreRef`] applies key prefixes, option parsing and value encoding before a store sees a
//! request, and records daprd's component metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Component;
use crate::telemetry::metrics::ComponentMetrics;

use super::prefix::{Identity, KeyPrefix};
use super::{factory, options, Feature, OpenContext, OpenError, StateStore, Ttl};

mod error;
mod store;
mod types;

#[cfg(test)]
mod tests;

pub use error::StatesError;
pub use store::StoreRef;
pub use types::{
    BulkEntry, BulkGet, DeleteState, GetState, QueryOutcome, SaveState, StateEntry, StateOptions,
    TransactionOperation,
};

/// daprd's default `initTimeout` for a component.
const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Component types whose `ttlInSeconds` metadata is a store-wide default TTL in daprd.
const TYPES_WITH_DEFAULT_TTL: &[&str] = &["state.redis"];

/// Who this sidecar is, for key prefixes and metrics.
#[derive(Debug, Clone)]
pub struct StatesContext {
    pub app_id: String,
    /// The `NAMESPACE` environment variable, for the `namespace` key prefix. daprd reads the
    /// variable itself there, so unset means "fall back to the app id", not `default`.
    pub namespace: Option<String>,
    pub metrics: Arc<ComponentMetrics>,
}

/// A state component that failed to open (and does not set `ignoreErrors`).
pub type InitError = crate::config::open::InitError<OpenError>;

/// The opened state stores, by component name.
pub struct States {
    stores: HashMap<String, Entry>,
    app_id: String,
    metrics: Arc<ComponentMetrics>,
}

struct Entry {
    /// The component name as the metrics label.
    label: Arc<str>,
    store: Arc<dyn StateStore>,
    prefix: KeyPrefix,
    /// `ttlInSeconds` from the component, for stores where daprd honours it.
    default_ttl: Option<Ttl>,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.stores.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("States")
            .field("stores", &names)
            .field("app_id", &self.app_id)
            .finish()
    }
}

impl States {
    /// Opens every `state.*` component of `components`. A store that fails to open fails the
    /// whole call, naming the component, unless the component sets `ignoreErrors: true`: then
    /// it is logged and left out, as daprd does.
    pub async fn open(components: &[Component], ctx: StatesContext) -> Result<Self, InitError> {
        let stores = crate::config::open::open_each(components, "state", "state store", |c| {
            open_entry(c, &ctx)
        })
        .await?;
        Ok(Self {
            stores,
            app_id: ctx.app_id,
            metrics: ctx.metrics,
        })
    }

    /// The store named `name`, or daprd's lookup error: not configured when no state store is
    /// loaded at all, not found otherwise.
    pub fn store<'a>(&'a self, name: &'a str) -> Result<StoreRef<'a>, StatesError> {
        if self.stores.is_empty() {
            return Err(StatesError::NotConfigured {
                store: name.to_owned(),
                app_id: self.app_id.clone(),
            });
        }
        let entry = self.stores.get(name).ok_or_else(|| StatesError::NotFound {
            store: name.to_owned(),
            app_id: self.app_id.clone(),
        })?;
        Ok(StoreRef::new(self, name, entry))
    }

    /// What the store named `name` can do, if it is open.
    pub fn features(&self, name: &str) -> Option<&'static [Feature]> {
        self.stores.get(name).map(|e| e.store.features())
    }

    /// The `capabilities` daprd reports in metadata: the feature strings, plus `ACTOR` when the
    /// store has both ETAG and TRANSACTIONAL.
    pub fn capabilities(&self, name: &str) -> Option<Vec<&'static str>> {
        let features = self.features(name)?;
        let mut caps: Vec<&'static str> = features.iter().map(|f| f.as_str()).collect();
        if features.contains(&Feature::Etag) && features.contains(&Feature::Transactional) {
            caps.push("ACTOR");
        }
        Some(caps)
    }

    /// Closes every store (connections, background tasks).
    pub async fn close(&self) {
        futures_util::future::join_all(self.stores.values().map(|e| e.store.close())).await;
    }
}

async fn open_entry(component: &Component, ctx: &StatesContext) -> Result<Entry, OpenError> {
    let who = Identity {
        app_id: &ctx.app_id,
        namespace: ctx.namespace.as_deref(),
    };
    let prefix = KeyPrefix::from_metadata(&component.metadata, &component.name, who)
        .map_err(OpenError::Metadata)?;
    let default_ttl = if TYPES_WITH_DEFAULT_TTL.contains(&component.type_name.as_str()) {
        options::ttl(component.metadata.get(options::TTL_KEY).map(String::as_str))
            .map_err(|e| OpenError::Metadata(e.to_string()))?
    } else {
        None
    };
    let timeout = component.init_timeout.unwrap_or(DEFAULT_INIT_TIMEOUT);
    let open_ctx = OpenContext {
        app_id: ctx.app_id.clone(),
    };
    let store = tokio::time::timeout(timeout, factory::open(component, &open_ctx))
        .await
        .map_err(|_| OpenError::Timeout(timeout))??;
    Ok(Entry {
        label: Arc::from(component.name.as_str()),
        store,
        prefix,
        default_ttl,
    })
}
