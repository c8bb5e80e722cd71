//! The pub/sub components of this sidecar, by name: the one place publishing and subscribing
//! look a component up.

use std::collections::HashMap;
use std::sync::Arc;

use super::scopes::TopicScopes;
use super::PubSub;
use crate::config::Component;

/// One loaded pub/sub component: its broker, its resource, and its topic scoping.
pub struct PubSubComponent {
    pub name: String,
    pub broker: Arc<dyn PubSub>,
    pub component: Component,
    pub scopes: TopicScopes,
}

impl PubSubComponent {
    pub fn new(component: Component, broker: Arc<dyn PubSub>) -> Self {
        Self {
            name: component.name.clone(),
            scopes: TopicScopes::from_metadata(&component.metadata),
            broker,
            component,
        }
    }
}

/// Every pub/sub component of this sidecar.
#[derive(Default)]
pub struct PubSubs {
    components: HashMap<String, Arc<PubSubComponent>>,
}

impl PubSubs {
    pub fn new(components: impl IntoIterator<Item = PubSubComponent>) -> Self {
        Self {
            components: components
                .into_iter()
                .map(|c| (c.name.clone(), Arc::new(c)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<PubSubComponent>> {
        self.components.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<PubSubComponent>> {
        self.components.values()
    }
}
