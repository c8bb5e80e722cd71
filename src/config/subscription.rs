//! The `kind: Subscription` document (`pkg/apis/subscriptions/{v1alpha1,v2alpha1}`), decoded
//! strictly and validated into a [`Subscription`]. v1alpha1 has a single `spec.route`; v2alpha1
//! has `spec.routes { rules, default }`. Each version refuses the other's field, so a document
//! written for one version but labelled with the other fails loudly instead of losing routes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::component_yaml::ObjectMeta;
use super::yaml::{decode, invalid, render};
use super::{ComponentSource, ConfigError};
use crate::pubsub::routing::{Routes, RoutingError, RuleSpec};

/// daprd's bulk subscribe defaults (`pkg/runtime/pubsub/default_bulksub.go`).
pub const DEFAULT_BULK_MAX_MESSAGES: usize = 100;
pub const DEFAULT_BULK_MAX_AWAIT: Duration = Duration::from_millis(1000);

/// A declarative subscription after validation. Its routes are known to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub name: String,
    pub pubsub_name: String,
    pub topic: String,
    /// `spec.routes.rules` in order (empty for v1alpha1).
    pub rules: Vec<RuleSpec>,
    /// `spec.routes.default` (v2alpha1) or `spec.route` (v1alpha1).
    pub default_route: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// `spec.metadata`, passed to the broker's subscribe (e.g. `rawPayload`).
    pub metadata: BTreeMap<String, String>,
    pub bulk_subscribe: BulkSubscribe,
    /// App ids this subscription applies to; empty means every app.
    pub scopes: Vec<String>,
    pub source: ComponentSource,
}

impl Subscription {
    /// Whether `app_id` subscribes with this resource (`scopes` empty = all apps).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

/// `bulkSubscribe`, with daprd's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSubscribe {
    pub enabled: bool,
    pub max_messages_count: usize,
    pub max_await: Duration,
}

impl Default for BulkSubscribe {
    fn default() -> Self {
        Self {
            enabled: false,
            max_messages_count: DEFAULT_BULK_MAX_MESSAGES,
            max_await: DEFAULT_BULK_MAX_AWAIT,
        }
    }
}

/// `bulkSubscribe` as written, in YAML and in `/dapr/subscribe` JSON alike.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkSubscribeDoc {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub max_messages_count: Option<i64>,
    #[serde(default)]
    pub max_await_duration_ms: Option<i64>,
}

impl BulkSubscribeDoc {
    /// Fills defaults; a count below 1 or a negative wait is refused (field name, reason).
    pub fn resolve(&self) -> Result<BulkSubscribe, (&'static str, String)> {
        let max_messages_count = match self.max_messages_count {
            None | Some(0) => DEFAULT_BULK_MAX_MESSAGES,
            Some(n) => usize::try_from(n).map_err(|_| {
                (
                    "maxMessagesCount",
                    format!("must be a positive count, got {n}"),
                )
            })?,
        };
        let max_await = match self.max_await_duration_ms {
            None | Some(0) => DEFAULT_BULK_MAX_AWAIT,
            Some(ms) => Duration::from_millis(u64::try_from(ms).map_err(|_| {
                (
                    "maxAwaitDurationMs",
                    format!("must be a positive number of milliseconds, got {ms}"),
                )
            })?),
        };
        Ok(BulkSubscribe {
            enabled: self.enabled,
            max_messages_count,
            max_await,
        })
    }
}

/// `routes.rules[]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    #[serde(default, rename = "match")]
    pub match_expr: String,
    #[serde(default)]
    pub path: String,
}

/// `routes` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesDoc {
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionDoc<S> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: S,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecV1 {
    #[serde(rename = "pubsubname")]
    pubsub_name: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecV2 {
    #[serde(rename = "pubsubname")]
    pubsub_name: String,
    topic: String,
    #[serde(default)]
    routes: Option<RoutesDoc>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    bulk_subscribe: Option<BulkSubscribeDoc>,
}

/// The version-independent part, so both versions share one validation.
struct Common {
    name: String,
    pubsub_name: String,
    topic: String,
    rules: Vec<RuleDoc>,
    default_route: Option<String>,
    metadata: Option<BTreeMap<String, Value>>,
    dead_letter_topic: Option<String>,
    bulk_subscribe: Option<BulkSubscribeDoc>,
    scopes: Vec<String>,
    /// `spec.route` or `spec.routes.default`, for error messages.
    default_field: &'static str,
}

/// Decodes and validates one `kind: Subscription` document of `api_version`
/// (`dapr.io/v1alpha1` or `dapr.io/v2alpha1`).
pub(super) fn parse(
    path: &Path,
    document: usize,
    api_version: &str,
    value: Value,
) -> Result<Subscription, ConfigError> {
    let common = match api_version {
        "dapr.io/v1alpha1" => {
            let doc: SubscriptionDoc<SpecV1> = decode(path, document, value)?;
            Common {
                name: doc.metadata.name.unwrap_or_default(),
                pubsub_name: doc.spec.pubsub_name,
                topic: doc.spec.topic,
                rules: Vec::new(),
                default_route: doc.spec.route,
                metadata: doc.spec.metadata,
                dead_letter_topic: doc.spec.dead_letter_topic,
                bulk_subscribe: doc.spec.bulk_subscribe,
                scopes: doc.scopes.unwrap_or_default(),
                default_field: "spec.route",
            }
        }
        "dapr.io/v2alpha1" => {
            let doc: SubscriptionDoc<SpecV2> = decode(path, document, value)?;
            let routes = doc.spec.routes.unwrap_or_default();
            Common {
                name: doc.metadata.name.unwrap_or_default(),
                pubsub_name: doc.spec.pubsub_name,
                topic: doc.spec.topic,
                rules: routes.rules,
                default_route: routes.default,
                metadata: doc.spec.metadata,
                dead_letter_topic: doc.spec.dead_letter_topic,
                bulk_subscribe: doc.spec.bulk_subscribe,
                scopes: doc.scopes.unwrap_or_default(),
                default_field: "spec.routes.default",
            }
        }
        other => {
            return Err(invalid(
                path,
                document,
                "apiVersion",
                format!(
                    "Subscription `{other}` does not exist; use dapr.io/v2alpha1 (routes) or \
                     dapr.io/v1alpha1 (route)"
                ),
            ))
        }
    };
    validate(path, document, common)
}

fn validate(path: &Path, document: usize, c: Common) -> Result<Subscription, ConfigError> {
    let err = |field: &str, reason: String| invalid(path, document, field, reason);
    if c.name.is_empty() {
        return Err(err(
            "metadata.name",
            "a subscription needs a non-empty metadata.name".to_owned(),
        ));
    }
    if c.pubsub_name.is_empty() {
        return Err(err(
            "spec.pubsubname",
            "the pub/sub component name is empty".to_owned(),
        ));
    }
    if c.topic.is_empty() {
        return Err(err("spec.topic", "the topic is empty".to_owned()));
    }
    let rules: Vec<RuleSpec> = c
        .rules
        .into_iter()
        .map(|r| RuleSpec {
            match_expr: r.match_expr,
            path: r.path,
        })
        .collect();
    let default_route = c.default_route.filter(|d| !d.is_empty());
    let routes = Routes::compile(&rules, default_route.as_deref(), None).map_err(|e| match e {
        RoutingError::InvalidExpression { rule, expr, reason } => err(
            &format!("spec.routes.rules[{rule}].match"),
            format!("invalid CEL expression `{expr}`: {reason}"),
        ),
        RoutingError::EmptyPath { rule } => err(
            &format!("spec.routes.rules[{rule}].path"),
            "a routing rule needs a non-empty path".to_owned(),
        ),
        RoutingError::Evaluation { reason, .. } => err("spec.routes", reason),
    })?;
    if routes.is_empty() {
        // daprd would load it and never deliver anything; an error says why at once.
        return Err(err(
            c.default_field,
            "the subscription has no route: set a default route or at least one rule".to_owned(),
        ));
    }
    let mut metadata = BTreeMap::new();
    for (key, value) in c.metadata.unwrap_or_default() {
        let text = render(&value).map_err(|r| err(&format!("spec.metadata.{key}"), r))?;
        metadata.insert(key, text);
    }
    let bulk_subscribe = c
        .bulk_subscribe
        .unwrap_or_default()
        .resolve()
        .map_err(|(field, r)| err(&format!("spec.bulkSubscribe.{field}"), r))?;
    Ok(Subscription {
        name: c.name,
        pubsub_name: c.pubsub_name,
        topic: c.topic,
        rules,
        default_route,
        dead_letter_topic: c.dead_letter_topic.filter(|t| !t.is_empty()),
        metadata,
        bulk_subscribe,
        scopes: c.scopes,
        source: ComponentSource::File {
            path: path.to_owned(),
            document,
        },
    })
}
