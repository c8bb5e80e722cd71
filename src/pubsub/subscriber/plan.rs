//! What to subscribe to: declarative and programmatic subscriptions merged into one plan per
//! (component, topic), with routes compiled and every scope applied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::{BulkSubscribe, Subscription};
use crate::pubsub::routing::{Routes, RuleSpec};
use crate::pubsub::{PubSubComponent, PubSubs};

/// A subscription in the form both sources share, before compiling.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// Where it came from, for logs: `Subscription <name>` or `/dapr/subscribe`.
    pub origin: String,
    pub kind: SubscriptionKind,
    pub pubsub_name: String,
    pub topic: String,
    pub rules: Vec<RuleSpec>,
    pub default_route: Option<String>,
    pub legacy_route: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub metadata: HashMap<String, String>,
    pub bulk: BulkSubscribe,
    /// From a gRPC app: routes compiled as daprd does for them (the default kept even empty).
    pub grpc_app: bool,
}

impl From<&Subscription> for Spec {
    fn from(s: &Subscription) -> Self {
        Self {
            origin: format!("Subscription {} ({})", s.name, s.source),
            kind: SubscriptionKind::Declarative,
            pubsub_name: s.pubsub_name.clone(),
            topic: s.topic.clone(),
            rules: s.rules.clone(),
            default_route: s.default_route.clone(),
            legacy_route: None,
            dead_letter_topic: s.dead_letter_topic.clone(),
            metadata: s
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            bulk: s.bulk_subscribe,
            grpc_app: false,
        }
    }
}

/// Where a subscription came from, as the metadata API reports it (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// A `Subscription` resource.
    Declarative,
    /// The app's `GET /dapr/subscribe` or `ListTopicSubscriptions`.
    Programmatic,
}

impl SubscriptionKind {
    /// daprd's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Declarative => "DECLARATIVE",
            Self::Programmatic => "PROGRAMMATIC",
        }
    }
}

/// One consumer to run.
pub(super) struct Plan {
    pub kind: SubscriptionKind,
    pub pubsub: Arc<PubSubComponent>,
    pub topic: String,
    pub routes: Routes,
    pub dead_letter_topic: Option<String>,
    pub metadata: HashMap<String, String>,
    pub raw_payload: bool,
    pub bulk: BulkSubscribe,
    /// `concurrency` from the subscription metadata; 0 lets the broker use its component's.
    pub concurrency: usize,
}

/// Compiles `specs` in order (declarative first, so a file wins over the app for the same
/// topic, as daprd keeps the first). Unusable specs are logged and skipped: one bad item must
/// not stop the app's other subscriptions.
pub(super) fn build(app_id: &str, pubsubs: &PubSubs, specs: Vec<Spec>) -> Vec<Plan> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for spec in specs {
        let Some(component) = pubsubs.get(&spec.pubsub_name) else {
            tracing::warn!(
                origin = %spec.origin, pubsub = %spec.pubsub_name, topic = %spec.topic,
                "subscription names a pub/sub component this sidecar does not have; skipping it"
            );
            continue;
        };
        if !component.scopes.can_subscribe(app_id, &spec.topic) {
            tracing::warn!(
                origin = %spec.origin, pubsub = %spec.pubsub_name, topic = %spec.topic, app_id,
                "the component's topic scopes do not allow this app to subscribe; skipping it"
            );
            continue;
        }
        let compiled = if spec.grpc_app {
            Routes::compile_for_grpc_app(&spec.rules, spec.default_route.as_deref().unwrap_or(""))
        } else {
            Routes::compile(
                &spec.rules,
                spec.default_route.as_deref(),
                spec.legacy_route.as_deref(),
            )
        };
        let routes = match compiled {
            Ok(r) if r.is_empty() => {
                tracing::warn!(
                    origin = %spec.origin, topic = %spec.topic,
                    "subscription has no route; skipping it"
                );
                continue;
            }
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    origin = %spec.origin, topic = %spec.topic, error = %e,
                    "invalid subscription routes; skipping it"
                );
                continue;
            }
        };
        if !seen.insert((spec.pubsub_name.clone(), spec.topic.clone())) {
            tracing::warn!(
                origin = %spec.origin, pubsub = %spec.pubsub_name, topic = %spec.topic,
                "topic is already subscribed; keeping the first subscription"
            );
            continue;
        }
        let flag = |key: &str| {
            spec.metadata
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim().to_owned())
        };
        let raw_payload = flag("rawPayload").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let concurrency = flag("concurrency")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        out.push(Plan {
            kind: spec.kind,
            pubsub: component.clone(),
            topic: spec.topic,
            routes,
            dead_letter_topic: spec.dead_letter_topic.filter(|t| !t.is_empty()),
            metadata: spec.metadata,
            raw_payload,
            bulk: spec.bulk,
            concurrency,
        });
    }
    out
}
