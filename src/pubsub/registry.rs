//! The pub/sub components of this sidecar, by name: the one place publishing and subscribing
//! look a component up. Publishing itself is in `publish.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::factory::{self, OpenError};
use super::scopes::TopicScopes;
use super::PubSub;
use crate::config::Component;
use crate::telemetry::metrics::ComponentMetrics;

/// daprd's default `initTimeout` for a component.
const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One loaded pub/sub component: its broker, its resource, and its topic scoping.
pub struct PubSubComponent {
    pub name: String,
    pub broker: Arc<dyn PubSub>,
    pub component: Component,
    pub scopes: TopicScopes,
    /// The name as a metrics label, shared so recording does not copy it.
    pub(crate) label: Arc<str>,
}

impl PubSubComponent {
    pub fn new(component: Component, broker: Arc<dyn PubSub>) -> Self {
        Self {
            name: component.name.clone(),
            scopes: TopicScopes::from_metadata(&component.metadata),
            label: Arc::from(component.name.as_str()),
            broker,
            component,
        }
    }
}

/// Who this sidecar is, for envelopes and metrics.
#[derive(Debug, Clone)]
pub struct PubSubsContext {
    pub app_id: String,
    pub metrics: Arc<ComponentMetrics>,
}

/// A pub/sub component that failed to open (and does not set `ignoreErrors`).
pub type InitError = crate::config::open::InitError<OpenError>;

/// Every pub/sub component of this sidecar.
#[derive(Default)]
pub struct PubSubs {
    components: HashMap<String, Arc<PubSubComponent>>,
    /// The CloudEvent `source` of published messages, and the app scoping is checked for.
    pub(crate) app_id: String,
    pub(crate) metrics: Option<Arc<ComponentMetrics>>,
}

impl std::fmt::Debug for PubSubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.components.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("PubSubs")
            .field("components", &names)
            .field("app_id", &self.app_id)
            .finish()
    }
}

impl PubSubs {
    /// A registry of brokers opened elsewhere, without metrics. Publishing from it stamps
    /// an empty `source` and checks scoping for an empty app id until [`Self::for_app`] is used.
    pub fn new(components: impl IntoIterator<Item = PubSubComponent>) -> Self {
        Self {
            components: components
                .into_iter()
                .map(|c| (c.name.clone(), Arc::new(c)))
                .collect(),
            app_id: String::new(),
            metrics: None,
        }
    }

    /// The same registry, publishing as `app_id`.
    pub fn for_app(mut self, app_id: &str) -> Self {
        self.app_id = app_id.to_owned();
        self
    }

    /// Opens every `pubsub.*` component of `components`, each within its `initTimeout`
    /// (5 s by default). A broker that fails fails the whole call, naming the component, unless
    /// the component sets `ignoreErrors: true`: then it is logged and left out, as in daprd.
    pub async fn open(components: &[Component], ctx: PubSubsContext) -> Result<Self, InitError> {
        let app_id = ctx.app_id.as_str();
        let opened =
            crate::config::open::open_each(components, "pubsub", "pubsub", |c| async move {
                let timeout = c.init_timeout.unwrap_or(DEFAULT_INIT_TIMEOUT);
                let broker = tokio::time::timeout(timeout, factory::open(c, app_id))
                    .await
                    .map_err(|_| OpenError::Timeout(timeout))??;
                Ok::<_, OpenError>(Arc::new(PubSubComponent::new(c.clone(), broker)))
            })
            .await?;
        Ok(Self {
            components: opened,
            app_id: ctx.app_id,
            metrics: Some(ctx.metrics),
        })
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

    /// The `capabilities` daprd reports in metadata for the component `name`, if it is open.
    pub fn capabilities(&self, name: &str) -> Option<Vec<&'static str>> {
        let features = self.components.get(name)?.broker.features();
        Some(features.iter().map(|f| f.as_str()).collect())
    }

    /// Closes every broker (each stops its subscriptions and connections).
    pub async fn close(&self) {
        futures_util::future::join_all(self.components.values().map(|c| c.broker.close())).await;
    }
}
