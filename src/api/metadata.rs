//! `GET /v1.0/metadata` in daprd's response shape, and `PUT /v1.0/metadata/{key}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::grpc::StreamingSubscription;
use super::ApiState;
use crate::config::Component;
use crate::pubsub::subscriber::ActiveSubscription;

/// The version reported as `runtimeVersion` and `extended.daprRuntimeVersion`.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the sidecar reaches its app, as reported in metadata (`appConnectionProperties`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConnectionInfo {
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    pub protocol: String,
    pub channel_address: String,
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub max_concurrency: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<AppHealthInfo>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppHealthInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health_check_path: String,
    /// Go duration strings, as daprd prints them (`5s`, `500ms`).
    pub health_probe_interval: String,
    pub health_probe_timeout: String,
    pub health_threshold: u32,
}

impl AppHealthInfo {
    pub fn new(path: String, interval: Duration, timeout: Duration, threshold: u32) -> Self {
        Self {
            health_check_path: path,
            health_probe_interval: go_duration(interval),
            health_probe_timeout: go_duration(timeout),
            health_threshold: threshold,
        }
    }
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataResponse<'a> {
    id: &'a str,
    runtime_version: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<ComponentInfo<'a>>,
    extended: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions: Vec<SubscriptionInfo>,
    app_connection_properties: &'a AppConnectionInfo,
    actor_runtime: ActorRuntime,
}

#[derive(Serialize)]
pub(super) struct ComponentInfo<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub type_name: &'a str,
    pub version: &'a str,
    pub capabilities: Vec<&'static str>,
}

/// A subscription in daprd's JSON shape. Streaming subscriptions have no routing rules.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionInfo {
    pubsubname: String,
    topic: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleInfo>,
    #[serde(skip_serializing_if = "String::is_empty")]
    dead_letter_topic: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl From<&StreamingSubscription> for SubscriptionInfo {
    fn from(s: &StreamingSubscription) -> Self {
        Self {
            pubsubname: s.pubsub.clone(),
            topic: s.topic.clone(),
            metadata: s.metadata.clone(),
            rules: Vec::new(),
            dead_letter_topic: s.dead_letter_topic.clone().unwrap_or_default(),
            kind: "STREAMING",
        }
    }
}

/// One routing rule; daprd leaves out an empty `match` (the catch-all).
#[derive(Serialize)]
struct RuleInfo {
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    match_expr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
}

impl From<&ActiveSubscription> for SubscriptionInfo {
    fn from(s: &ActiveSubscription) -> Self {
        Self {
            pubsubname: s.pubsub_name.clone(),
            topic: s.topic.clone(),
            metadata: s.metadata.clone(),
            rules: s
                .rules
                .iter()
                .map(|(m, p)| RuleInfo {
                    match_expr: m.clone(),
                    path: p.clone(),
                })
                .collect(),
            dead_letter_topic: s.dead_letter_topic.clone().unwrap_or_default(),
            kind: s.kind.as_str(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActorRuntime {
    runtime_status: &'static str,
    host_ready: bool,
}

pub async fn get_metadata(State(state): State<Arc<ApiState>>) -> Response {
    let live = state.live.load();
    let streaming = state.streaming.list();
    let body = MetadataResponse {
        id: &state.app_id,
        runtime_version: RUNTIME_VERSION,
        components: components(&state, &live.resources.components),
        extended: extended(&state),
        subscriptions: state
            .app_subscriptions
            .load()
            .iter()
            .map(SubscriptionInfo::from)
            .chain(streaming.iter().map(SubscriptionInfo::from))
            .collect(),
        app_connection_properties: &state.app_connection,
        actor_runtime: ActorRuntime {
            runtime_status: "DISABLED",
            host_ready: false,
        },
    };
    Json(body).into_response()
}

/// The loaded components as metadata lists them; both APIs answer from this.
pub(super) fn components<'a>(
    state: &ApiState,
    components: &'a [Component],
) -> Vec<ComponentInfo<'a>> {
    components
        .iter()
        .filter_map(|c| {
            Some(ComponentInfo {
                name: &c.name,
                type_name: &c.type_name,
                version: &c.version,
                capabilities: capabilities(state, c)?,
            })
        })
        .collect()
}

/// The attributes set through the API, plus the runtime version daprd always adds.
pub(super) fn extended(state: &ApiState) -> BTreeMap<String, String> {
    let mut extended = state
        .extended
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    extended.insert("daprRuntimeVersion".to_owned(), RUNTIME_VERSION.to_owned());
    extended
}

/// Stores `value` under `key`; an empty key is a no-op, as in daprd.
pub(super) fn set(state: &ApiState, key: String, value: String) {
    if !key.is_empty() {
        state
            .extended
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, value);
    }
}

/// Stores the raw body text under `key`.
pub async fn put_metadata(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    set(&state, key, String::from_utf8_lossy(&body).into_owned());
    StatusCode::NO_CONTENT.into_response()
}

/// The feature strings daprd reports for a component: what the opened store or broker says it
/// can do. One that failed to open under `ignoreErrors` is not loaded, so, as in daprd, it is
/// not listed (`None`).
fn capabilities(state: &ApiState, component: &Component) -> Option<Vec<&'static str>> {
    match component.category() {
        "state" => state.states.capabilities(&component.name),
        "pubsub" => state.pubsubs.capabilities(&component.name),
        _ => Some(Vec::new()),
    }
}

/// Go's `time.Duration.String()` for the whole-millisecond durations the flags produce.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let secs = if rem % 1000 == 0 {
        format!("{}s", rem / 1000)
    } else {
        let s = format!("{}.{:03}", rem / 1000, rem % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }
}
