//! Builds a broker from its component. The one place that knows which type name means which
//! broker; [`super::PubSubs::open`] calls it for every pub/sub component at startup.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Component;

use super::memory::{MemoryBus, MemoryPubSub};
use super::{jetstream, redis, PubSub, PubSubError};

/// Why a broker could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("component type {0} is not a pubsub this build can open")]
    UnsupportedType(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The broker's own failure (cannot connect, bad metadata, ...).
    #[error(transparent)]
    Broker(#[from] PubSubError),
}

/// Opens the broker `component` describes for `app_id` (the default `consumerID`).
/// `type_name` is already canonical, which config checked at load time.
pub async fn open(component: &Component, app_id: &str) -> Result<Arc<dyn PubSub>, OpenError> {
    let broker: Arc<dyn PubSub> = match component.type_name.as_str() {
        // Each sidecar gets a bus of its own: in-memory messages never leave the process.
        "pubsub.in-memory" => Arc::new(MemoryPubSub::with_bus(
            MemoryBus::new(),
            consumer_id(component, app_id),
        )),
        "pubsub.redis" => Arc::new(redis::open(component, app_id).await?),
        "pubsub.jetstream" => Arc::new(jetstream::open(component, app_id).await?),
        other => return Err(OpenError::UnsupportedType(other.to_owned())),
    };
    Ok(broker)
}

/// `consumerID` from metadata (any case, as daprd's metadata decoding), else the app id.
fn consumer_id(component: &Component, app_id: &str) -> String {
    component
        .metadata
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("consumerID") && !v.is_empty())
        .map_or_else(|| app_id.to_owned(), |(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::component_types::SUPPORTED;

    /// A type listed as supported must have an arm here, or startup would fail for a component
    /// that config accepted.
    #[tokio::test]
    async fn every_supported_pubsub_type_opens() {
        for t in SUPPORTED.iter().filter(|t| t.category == "pubsub") {
            let mut component = Component::embedded("p", t.type_name);
            // Brokers that need a server get an address nothing listens on, so they fail fast.
            component
                .metadata
                .insert("redisHost".into(), "127.0.0.1:1".into());
            component
                .metadata
                .insert("natsURL".into(), "nats://127.0.0.1:1".into());
            let opened = tokio::time::timeout(Duration::from_secs(10), open(&component, "a")).await;
            if let Ok(Err(OpenError::UnsupportedType(name))) = opened {
                panic!("{name} is supported by config but has no factory arm");
            }
        }
    }

    #[tokio::test]
    async fn other_types_are_refused() {
        let component = Component::embedded("p", "pubsub.nonesuch");
        assert!(matches!(
            open(&component, "a").await,
            Err(OpenError::UnsupportedType(_))
        ));
    }

    #[test]
    fn consumer_id_defaults_to_the_app_id() {
        let mut component = Component::embedded("p", "pubsub.in-memory");
        assert_eq!(consumer_id(&component, "app"), "app");
        component
            .metadata
            .insert("consumerid".into(), "group".into());
        assert_eq!(consumer_id(&component, "app"), "group");
    }
}
