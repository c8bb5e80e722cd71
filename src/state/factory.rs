//! Builds a store from its component. The one place that knows which type name means which
//! store; [`super::States`] calls it for every state component at startup.

use std::sync::Arc;

use crate::config::Component;

use super::{MemoryStore, StateError, StateStore};

/// What a store may need besides its own component.
#[derive(Debug, Clone, Default)]
pub struct OpenContext {
    /// This sidecar's app id.
    pub app_id: String,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("component type {0} is not a state store this build can open")]
    UnsupportedType(String),
    #[error("invalid metadata: {0}")]
    Metadata(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store's own failure (cannot connect, bad settings, ...).
    #[error(transparent)]
    Store(#[from] StateError),
}

/// Opens the store `component` describes. `type_name` is already canonical (lower case) and
/// in the supported-types table, which config checked at load time.
///
/// Each arm is one line. A store module's constructor is expected to look like
/// `async fn open(component: &Component) -> Result<Self, StateError>`, so `?` converts its
/// error and the `Arc` coerces to the trait object.
pub async fn open(
    component: &Component,
    ctx: &OpenContext,
) -> Result<Arc<dyn StateStore>, OpenError> {
    // No store reads the context yet; it is part of the signature so stores that need the app
    // id (e.g. for client names) do not change every caller.
    let _ = ctx;
    let store: Arc<dyn StateStore> = match component.type_name.as_str() {
        "state.in-memory" => Arc::new(MemoryStore::new()),
        "state.redis" => Arc::new(super::redis::RedisStore::open(component).await?),
        "state.postgresql" => Arc::new(super::postgres::PostgresStore::open(component).await?),
        other => return Err(OpenError::UnsupportedType(other.to_owned())),
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::component_types::SUPPORTED;

    /// A type listed as supported must have an arm here, or startup would fail for a component
    /// that config accepted.
    #[tokio::test]
    async fn every_supported_state_type_opens() {
        for t in SUPPORTED.iter().filter(|t| t.category == "state") {
            let component = Component::embedded("s", t.type_name);
            // Stores that need a server may fail to connect here; only a missing arm counts.
            if let Err(OpenError::UnsupportedType(name)) =
                open(&component, &OpenContext::default()).await
            {
                panic!("{name} is supported by config but has no factory arm");
            }
        }
    }

    #[tokio::test]
    async fn other_types_are_refused() {
        let component = Component::embedded("s", "state.nonesuch");
        assert!(matches!(
            open(&component, &OpenContext::default()).await,
            Err(OpenError::UnsupportedType(_))
        ));
    }
}
