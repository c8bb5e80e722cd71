//! Dapr resources (Component, Subscription, Configuration) as typed, validated Rust, and the live snapshot the
//! request path reads.

use std::sync::Arc;

use arc_swap::ArcSwap;

pub mod access_control;
mod component;
pub mod component_types;
mod component_yaml;
mod configuration;
pub mod duration;
mod error;
mod expand;
mod loader;
pub mod open;
pub mod subscription;
mod yaml;

#[cfg(test)]
mod tests;

pub use component::{Component, ComponentSource};
pub use component_types::ComponentType;
pub use configuration::{Configuration, NameResolutionSpec};
pub use error::ConfigError;
pub use loader::{load, LoadOptions, TemplateContext};
pub use subscription::{BulkSubscribe, Subscription};

/// Everything loaded from `--resources-path` and `--config`. `components` holds only the
/// components in scope for this app (see [`load`]).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub components: Vec<Component>,
    /// Declarative `Subscription`s in scope for this app (none without a resources path).
    pub subscriptions: Vec<Subscription>,
    pub configuration: Configuration,
}

/// One immutable configuration snapshot. A request loads it once at the edge, so it never sees
/// two versions.
#[derive(Debug, Default)]
pub struct LiveConfig {
    pub resources: Resources,
}

/// The swappable handle to the current [`LiveConfig`].
pub type Live = Arc<ArcSwap<LiveConfig>>;

/// Wraps a first snapshot in a [`Live`] handle.
pub fn live(resources: Resources) -> Live {
    Arc::new(ArcSwap::from_pointee(LiveConfig { resources }))
}
