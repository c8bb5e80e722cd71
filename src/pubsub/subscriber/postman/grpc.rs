//! Pub/sub for gRPC apps (daprd `postman/grpc` and `GRPCEnvelopeFromSubscriptionMessage`):
//! subscriptions from `AppCallback.ListTopicSubscriptions`, deliveries with `OnTopicEvent` /
//! `OnBulkTopicEvent`, and the app's status enum read as a verdict.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use super::http::headers as http_headers;
use super::{BulkMessage, Postman, SubscribedMessage, Verdict};
use crate::app_channel::{AppChannel, GrpcApp};
use crate::config::subscription::BulkSubscribeDoc;
use crate::proto::runtime::topic_event_bulk_request_entry::Event as BulkEvent;
use crate::proto::runtime::topic_event_response::TopicEventResponseStatus;
use crate::proto::runtime::{
    TopicEventBulkRequest, TopicEventBulkRequestEntry, TopicEventCeRequest, TopicEventRequest,
    TopicSubscription,
};
use crate::pubsub::routing::RuleSpec;
use crate::pubsub::subscriber::plan::Spec;

/// daprd's `DaprBuiltInInitializationRetries` budget, for an app that just started listening.
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// The CloudEvent attributes with their own `TopicEventRequest` field; every other one goes to
/// `extensions`.
const ENVELOPE_FIELDS: [&str; 7] = [
    "id",
    "source",
    "datacontenttype",
    "type",
    "specversion",
    "data",
    "data_base64",
];

/// Delivers to a gRPC app (`--app-protocol grpc`) with `OnTopicEvent` / `OnBulkTopicEvent`.
pub struct GrpcPostman {
    channel: Arc<AppChannel>,
}

impl GrpcPostman {
    /// `None` when the channel does not speak gRPC.
    pub fn new(channel: Arc<AppChannel>) -> Option<Self> {
        channel.grpc()?;
        Some(Self { channel })
    }

    fn app(&self) -> &GrpcApp {
        self.channel
            .grpc()
            .expect("GrpcPostman is only built for a gRPC app channel")
    }
}

impl Postman for GrpcPostman {
    fn deliver(&self, msg: SubscribedMessage) -> BoxFuture<'_, Verdict> {
        Box::pin(async move {
            let target = Target {
                path: &msg.path,
                pubsub_name: &msg.pubsub_name,
                topic: &msg.topic,
            };
            deliver(&self.channel, self.app(), &msg.event, target, &msg.metadata).await
        })
    }

    fn deliver_bulk(&self, batch: BulkMessage) -> BoxFuture<'_, Vec<Verdict>> {
        Box::pin(async move {
            let entries: Vec<BulkEntry<'_>> = batch
                .entries
                .iter()
                .map(|e| {
                    let m = &e.message;
                    BulkEntry {
                        entry_id: &e.entry_id,
                        event: m.raw.is_none().then_some(&m.event),
                        raw: m.raw.as_ref().unwrap_or(&m.body),
                        content_type: if m.raw.is_some() {
                            "application/octet-stream"
                        } else {
                            "application/cloudevents+json"
                        },
                        metadata: &m.metadata,
                    }
                })
                .collect();
            let target = Target {
                path: &batch.path,
                pubsub_name: &batch.pubsub_name,
                topic: &batch.topic,
            };
            deliver_bulk(&self.channel, self.app(), &entries, target, &batch.metadata).await
        })
    }
}

/// Asks the app for its subscriptions. Never fails: daprd carries on without them.
pub(in crate::pubsub::subscriber) async fn discover(app: &GrpcApp) -> Vec<Spec> {
    for attempt in 1..=ATTEMPTS {
        match app.list_topic_subscriptions().await {
            Ok(res) => {
                return res
                    .subscriptions
                    .into_iter()
                    .enumerate()
                    .filter_map(to_spec)
                    .collect()
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::debug!("the app does not implement ListTopicSubscriptions: no programmatic subscriptions");
                return Vec::new();
            }
            Err(status) if attempt == ATTEMPTS => {
                tracing::error!(
                    code = ?status.code(), message = status.message(), attempts = ATTEMPTS,
                    "subscription discovery (ListTopicSubscriptions) failed"
                );
            }
            Err(_) => tokio::time::sleep(RETRY_DELAY).await,
        }
    }
    Vec::new()
}

fn to_spec((index, sub): (usize, TopicSubscription)) -> Option<Spec> {
    let bulk = sub.bulk_subscribe.unwrap_or_default();
    let bulk = BulkSubscribeDoc {
        enabled: bulk.enabled,
        max_messages_count: Some(i64::from(bulk.max_messages_count)),
        max_await_duration_ms: Some(i64::from(bulk.max_await_duration_ms)),
    };
    let bulk = match bulk.resolve() {
        Ok(b) => b,
        Err((field, reason)) => {
            tracing::error!(index, field, %reason, "ignoring an invalid ListTopicSubscriptions item");
            return None;
        }
    };
    let routes = sub.routes.unwrap_or_default();
    Some(Spec {
        origin: format!("ListTopicSubscriptions item {index}"),
        kind: crate::pubsub::subscriber::plan::SubscriptionKind::Programmatic,
        pubsub_name: sub.pubsub_name,
        topic: sub.topic,
        rules: routes
            .rules
            .into_iter()
            .map(|r| RuleSpec {
                match_expr: r.r#match,
                path: r.path,
            })
            .collect(),
        default_route: Some(routes.default),
        legacy_route: None,
        dead_letter_topic: Some(sub.dead_letter_topic).filter(|t| !t.is_empty()),
        metadata: sub.metadata,
        bulk,
        grpc_app: true,
    })
}

/// Where a message is going, shared by single and bulk deliveries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub path: &'a str,
    pub pubsub_name: &'a str,
    pub topic: &'a str,
}

/// Delivers one CloudEvent with `OnTopicEvent`. `raw` is the event as received: its parsed
/// form `event` is what the envelope is built from.
async fn deliver(
    channel: &AppChannel,
    app: &GrpcApp,
    event: &Map<String, Value>,
    target: Target<'_>,
    metadata: &HashMap<String, String>,
) -> Verdict {
    let _permit = match channel.admit().await {
        Ok(permit) => permit,
        Err(e) => return Verdict::Retry(format!("error sending to the app: {e}")),
    };
    let request = envelope(event, target);
    let headers = request_metadata(metadata, target.pubsub_name, event);
    match app.on_topic_event(request, &headers).await {
        Ok(res) => verdict(res.status),
        Err(status) => verdict_from_error(&status),
    }
}

/// One message of a bulk delivery.
#[derive(Debug)]
pub(super) struct BulkEntry<'a> {
    pub entry_id: &'a str,
    /// The CloudEvent, or `None` for a raw payload (sent as bytes).
    pub event: Option<&'a Map<String, Value>>,
    pub raw: &'a Bytes,
    pub content_type: &'a str,
    pub metadata: &'a HashMap<String, String>,
}

/// Delivers entries with `OnBulkTopicEvent` (or its alpha predecessor); one verdict per entry,
/// in order. An entry the app does not list, or lists with an unknown status, is retried.
async fn deliver_bulk(
    channel: &AppChannel,
    app: &GrpcApp,
    entries: &[BulkEntry<'_>],
    target: Target<'_>,
    metadata: &HashMap<String, String>,
) -> Vec<Verdict> {
    let _permit = match channel.admit().await {
        Ok(permit) => permit,
        Err(e) => {
            let v = Verdict::Retry(format!("error sending to the app: {e}"));
            return entries.iter().map(|_| v.clone()).collect();
        }
    };
    let request = bulk_envelope(entries, target, metadata);
    let headers = request_metadata(metadata, target.pubsub_name, &Map::new());
    match app.on_bulk_topic_event(request, &headers).await {
        Ok(res) => {
            let answered: HashMap<&str, i32> = res
                .statuses
                .iter()
                .map(|s| (s.entry_id.as_str(), s.status))
                .collect();
            entries
                .iter()
                .map(|e| match answered.get(e.entry_id) {
                    Some(status) => verdict(*status),
                    None => Verdict::Retry("the app did not answer for this entry".to_owned()),
                })
                .collect()
        }
        Err(status) => {
            let v = verdict_from_error(&status);
            entries.iter().map(|_| v.clone()).collect()
        }
    }
}

fn verdict(status: i32) -> Verdict {
    match TopicEventResponseStatus::try_from(status) {
        Ok(TopicEventResponseStatus::Success) => Verdict::Success,
        Ok(TopicEventResponseStatus::Retry) => Verdict::Retry("the app asked to retry".to_owned()),
        Ok(TopicEventResponseStatus::Drop) => {
            Verdict::deliberate_drop("the app asked to drop the message")
        }
        Err(_) => Verdict::Retry(format!("unknown status {status} from the app")),
    }
}

fn verdict_from_error(status: &tonic::Status) -> Verdict {
    if status.code() == tonic::Code::Unimplemented {
        // daprd acks without dead-lettering: an app that cannot take events will never take
        // this one, and the dead-letter topic is for events the app refused.
        tracing::warn!(
            message = status.message(),
            "the app does not implement topic event delivery; dropping the message"
        );
        return Verdict::Success;
    }
    Verdict::Retry(format!(
        "error from the app: {:?}: {}",
        status.code(),
        status.message()
    ))
}

/// daprd's `TopicEventRequest` for a CloudEvent.
pub(super) fn envelope(event: &Map<String, Value>, target: Target<'_>) -> TopicEventRequest {
    let content_type = text(event, "datacontenttype");
    TopicEventRequest {
        id: text(event, "id"),
        source: text(event, "source"),
        r#type: text(event, "type"),
        spec_version: text(event, "specversion"),
        data: data_bytes(event, &content_type),
        data_content_type: content_type,
        topic: target.topic.to_owned(),
        pubsub_name: target.pubsub_name.to_owned(),
        path: target.path.to_owned(),
        extensions: Some(extensions(event)),
    }
}

fn bulk_envelope(
    entries: &[BulkEntry<'_>],
    target: Target<'_>,
    metadata: &HashMap<String, String>,
) -> TopicEventBulkRequest {
    TopicEventBulkRequest {
        id: uuid::Uuid::new_v4().to_string(),
        entries: entries
            .iter()
            .map(|e| TopicEventBulkRequestEntry {
                entry_id: e.entry_id.to_owned(),
                event: Some(match e.event {
                    Some(event) => {
                        let env = envelope(event, target);
                        BulkEvent::CloudEvent(TopicEventCeRequest {
                            id: env.id,
                            source: env.source,
                            r#type: env.r#type,
                            spec_version: env.spec_version,
                            data_content_type: env.data_content_type,
                            data: env.data,
                            extensions: env.extensions,
                        })
                    }
                    None => BulkEvent::Bytes(e.raw.clone()),
                }),
                content_type: e.content_type.to_owned(),
                metadata: e.metadata.clone(),
            })
            .collect(),
        metadata: metadata.clone(),
        topic: target.topic.to_owned(),
        pubsub_name: target.pubsub_name.to_owned(),
        r#type: "com.dapr.event.sent.bulk".to_owned(),
        path: target.path.to_owned(),
    }
}

fn text(event: &Map<String, Value>, key: &str) -> String {
    match event.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The event's data as daprd decodes it: `data_base64` decoded; for text types the string
/// itself; otherwise (JSON and CloudEvents types, or anything else) the JSON of `data`.
fn data_bytes(event: &Map<String, Value>, content_type: &str) -> Bytes {
    if let Some(Value::String(b64)) = event.get("data_base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .unwrap_or_default();
    }
    match event.get("data") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if is_text(content_type) => Bytes::from(s.clone().into_bytes()),
        Some(data) => Bytes::from(data.to_string()),
    }
}

/// daprd's string content types: sent as the string, not as JSON.
fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/") || essence == "application/xml" || essence.ends_with("+xml")
}

fn extensions(event: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: event
            .iter()
            .filter(|(k, _)| !ENVELOPE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), to_proto_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn to_proto_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), to_proto_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The gRPC metadata of a delivery: the broker metadata, `pubsubName` and a trace context
/// continuing the event's, as for HTTP apps minus the HTTP content type.
fn request_metadata(
    metadata: &HashMap<String, String>,
    pubsub_name: &str,
    event: &Map<String, Value>,
) -> http::HeaderMap {
    let mut headers = http_headers(metadata, pubsub_name, event);
    headers.remove(CONTENT_TYPE);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            path: "/orders",
            pubsub_name: "pubsub",
            topic: "orders",
        }
    }

    #[test]
    fn envelope_splits_attributes_and_extensions() {
        let event = serde_json::json!({
            "id": "1", "source": "app", "type": "t", "specversion": "1.0",
            "datacontenttype": "application/json", "data": {"a": 1},
            "topic": "orders", "pubsubname": "pubsub", "traceparent": "tp", "custom": 7
        });
        let env = envelope(event.as_object().unwrap(), target());
        assert_eq!(env.id, "1");
        assert_eq!(env.source, "app");
        assert_eq!(env.r#type, "t");
        assert_eq!(env.spec_version, "1.0");
        assert_eq!(env.data_content_type, "application/json");
        assert_eq!(&env.data[..], br#"{"a":1}"#);
        assert_eq!(env.path, "/orders");
        let ext = env.extensions.unwrap().fields;
        let mut keys: Vec<&str> = ext.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["custom", "pubsubname", "topic", "traceparent"]);
    }

    #[test]
    fn data_is_decoded_per_content_type() {
        let ev = |v: serde_json::Value| v.as_object().unwrap().clone();
        let text = ev(serde_json::json!({"datacontenttype": "text/plain", "data": "hi"}));
        assert_eq!(&envelope(&text, target()).data[..], b"hi");
        let json_string =
            ev(serde_json::json!({"datacontenttype": "application/json", "data": "hi"}));
        assert_eq!(&envelope(&json_string, target()).data[..], br#""hi""#);
        let b64 = ev(
            serde_json::json!({"datacontenttype": "application/octet-stream", "data_base64": "AAE="}),
        );
        assert_eq!(&envelope(&b64, target()).data[..], &[0, 1]);
        assert!(envelope(&ev(serde_json::json!({})), target())
            .data
            .is_empty());
    }

    #[test]
    fn statuses_map_to_verdicts() {
        assert_eq!(verdict(0), Verdict::Success);
        assert!(matches!(verdict(1), Verdict::Retry(_)));
        assert!(matches!(verdict(2), Verdict::Drop(_)));
        assert!(matches!(verdict(9), Verdict::Retry(_)));
        assert_eq!(
            verdict_from_error(&tonic::Status::unimplemented("")),
            Verdict::Success
        );
        assert!(matches!(
            verdict_from_error(&tonic::Status::unavailable("down")),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn subscriptions_without_routes_get_an_empty_default() {
        let spec = to_spec((
            0,
            TopicSubscription {
                pubsub_name: "p".into(),
                topic: "t".into(),
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!(spec.default_route.as_deref(), Some(""));
        assert!(spec.grpc_app);
        assert!(spec.dead_letter_topic.is_none());
    }

    #[test]
    fn bulk_entries_carry_cloud_events_or_bytes() {
        let event = serde_json::json!({"id": "1", "data": "x", "datacontenttype": "text/plain"});
        let raw = Bytes::from_static(b"raw");
        let md = HashMap::new();
        let entries = [
            BulkEntry {
                entry_id: "a",
                event: event.as_object(),
                raw: &raw,
                content_type: "application/cloudevents+json",
                metadata: &md,
            },
            BulkEntry {
                entry_id: "b",
                event: None,
                raw: &raw,
                content_type: "application/octet-stream",
                metadata: &md,
            },
        ];
        let req = bulk_envelope(&entries, target(), &md);
        assert_eq!(req.entries.len(), 2);
        assert!(
            matches!(&req.entries[0].event, Some(BulkEvent::CloudEvent(ce)) if &ce.data[..] == b"x")
        );
        assert!(matches!(&req.entries[1].event, Some(BulkEvent::Bytes(b)) if &b[..] == b"raw"));
        assert_eq!(req.path, "/orders");
    }
}
