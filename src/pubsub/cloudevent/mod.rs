//! The CloudEvents envelope daprd wraps published data in (`pkg/runtime/pubsub/cloudevents.go`
//! and components-contrib `pubsub/envelope.go`), field for field: a new event for plain bodies,
//! daprd's defaults and overwrites for bodies that already are CloudEvents, and the body as is
//! for `rawPayload`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

#[cfg(test)]
mod tests;
mod trace;

pub use trace::TraceContext;

/// The content type of a CloudEvent in JSON, as messages carry it on the broker.
pub const CLOUDEVENT_JSON: &str = "application/cloudevents+json";
const DEFAULT_TYPE: &str = "com.dapr.event.sent";
const OVERRIDE_PREFIX: &str = "cloudevent.";

/// Why no message could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// Request metadata that cannot be read (e.g. `rawPayload=maybe`).
    #[error("{0}")]
    Metadata(String),
    /// An `application/cloudevents+json` body that is not a JSON object.
    #[error("cannot create cloudevent: {0}")]
    Invalid(String),
}

/// Everything an envelope is made of.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a> {
    pub app_id: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
    pub data: &'a Bytes,
    pub content_type: Option<&'a str>,
    /// Request metadata (`metadata.*` without the prefix).
    pub metadata: &'a HashMap<String, String>,
    pub trace: &'a TraceContext,
    /// The broker expires messages itself, so no `expiration` is stamped.
    pub broker_has_ttl: bool,
}

/// What goes to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub data: Bytes,
    pub content_type: Option<String>,
}

/// Builds the message for one publish.
pub fn build(input: EventInput<'_>) -> Result<Outgoing, CloudEventError> {
    if raw_payload(input.metadata)? {
        return Ok(Outgoing {
            data: input.data.clone(),
            content_type: input.content_type.map(str::to_owned),
        });
    }
    let media = input.content_type.map(media_type).unwrap_or_default();
    let mut event = if media == CLOUDEVENT_JSON {
        from_cloud_event(&input)?
    } else {
        new_cloud_event(&input, &media)
    };
    if !input.broker_has_ttl {
        if let Some(ttl) = ttl(input.metadata) {
            let at = SystemTime::now() + ttl;
            event.insert("expiration".into(), Value::String(rfc3339(at)));
        }
    }
    // Serializing a map of JSON values cannot fail.
    let data = serde_json::to_vec(&event).unwrap_or_default();
    Ok(Outgoing {
        data: Bytes::from(data),
        content_type: Some(CLOUDEVENT_JSON.to_owned()),
    })
}

/// `rawPayload` as Go's `strconv.ParseBool` reads it; an unreadable value is an error.
fn raw_payload(metadata: &HashMap<String, String>) -> Result<bool, CloudEventError> {
    match metadata.get("rawPayload").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(CloudEventError::Metadata(format!(
            "strconv.ParseBool: parsing \"{other}\": invalid syntax"
        ))),
    }
}

/// `ttlInSeconds` (or `ttl`): integer seconds or a Go duration, above zero. daprd ignores a
/// value it cannot read, and so does this.
fn ttl(metadata: &HashMap<String, String>) -> Option<Duration> {
    let value = metadata
        .get("ttlInSeconds")
        .or_else(|| metadata.get("ttl"))?
        .trim();
    if let Ok(secs) = value.parse::<i64>() {
        return (secs > 0).then(|| Duration::from_secs(secs.unsigned_abs()));
    }
    crate::resolve::parse_go_duration(value).filter(|d| !d.is_zero())
}

/// The media type, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

fn is_binary(media: &str) -> bool {
    matches!(
        media,
        "application/octet-stream" | "application/cloudevents+protobuf" | "application/x-protobuf"
    )
}

/// A body that already is a CloudEvent: daprd keeps it, fills what is missing and overwrites
/// the routing fields. It adds no `id`.
fn from_cloud_event(input: &EventInput<'_>) -> Result<Map<String, Value>, CloudEventError> {
    let mut event = match serde_json::from_slice::<Value>(input.data) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(CloudEventError::Invalid("not a JSON object".into())),
        Err(e) => return Err(CloudEventError::Invalid(e.to_string())),
    };
    let mut default = |key: &str, value: &str| {
        event
            .entry(key.to_owned())
            .or_insert_with(|| Value::String(value.to_owned()));
    };
    default("time", &rfc3339(SystemTime::now()));
    default("source", "Dapr");
    default("type", DEFAULT_TYPE);
    default("specversion", "1.0");
    if !event.contains_key("traceid") {
        let parent = input.trace.child_traceparent();
        event.insert("traceid".into(), Value::String(parent.clone()));
        event.insert("traceparent".into(), Value::String(parent));
    }
    event
        .entry("tracestate")
        .or_insert_with(|| Value::String(input.trace.tracestate().to_owned()));
    event.insert("topic".into(), input.topic.into());
    event.insert("pubsubname".into(), input.pubsub.into());
    Ok(event)
}

/// A new CloudEvent around the body, with the `metadata.cloudevent.*` overrides.
fn new_cloud_event(input: &EventInput<'_>, media: &str) -> Map<String, Value> {
    let overrides = Overrides::from_metadata(input.metadata);
    let traceparent = overrides
        .get("traceparent")
        .map(str::to_owned)
        .unwrap_or_else(|| input.trace.child_traceparent());
    let traceid = match overrides.get("traceparent") {
        Some(parent) => parent.to_owned(),
        None => overrides.get("traceid").unwrap_or(&traceparent).to_owned(),
    };
    let content_type = input
        .content_type
        .filter(|c| !c.is_empty())
        .unwrap_or("text/plain");
    let (field, data) = if is_json(media) {
        let value = serde_json::from_slice(input.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(input.data).into_owned()));
        ("data", value)
    } else if is_binary(media) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(input.data);
        ("data_base64", Value::String(encoded))
    } else {
        let text = String::from_utf8_lossy(input.data).into_owned();
        ("data", Value::String(text))
    };
    let mut event = Map::new();
    let id = uuid::Uuid::new_v4().to_string();
    event.insert("id".into(), overrides.get("id").unwrap_or(&id).into());
    event.insert(
        "source".into(),
        overrides.get("source").unwrap_or(input.app_id).into(),
    );
    event.insert(
        "type".into(),
        overrides.get("type").unwrap_or(DEFAULT_TYPE).into(),
    );
    event.insert("specversion".into(), "1.0".into());
    event.insert("datacontenttype".into(), content_type.into());
    event.insert(field.into(), data);
    event.insert("topic".into(), input.topic.into());
    event.insert("pubsubname".into(), input.pubsub.into());
    event.insert("traceid".into(), traceid.into());
    event.insert("traceparent".into(), traceparent.into());
    let tracestate = overrides
        .get("tracestate")
        .unwrap_or_else(|| input.trace.tracestate());
    event.insert("tracestate".into(), tracestate.into());
    event.insert("time".into(), rfc3339(SystemTime::now()).into());
    if let Some(subject) = overrides.get("subject") {
        event.insert("subject".into(), subject.into());
    }
    event
}

/// `metadata.cloudevent.<field>` values, keys lower-cased: daprd decodes them into its event
/// struct case-insensitively.
struct Overrides<'a>(HashMap<String, &'a str>);

impl<'a> Overrides<'a> {
    fn from_metadata(metadata: &'a HashMap<String, String>) -> Self {
        Self(
            metadata
                .iter()
                .filter_map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let field = lower.strip_prefix(OVERRIDE_PREFIX)?.to_owned();
                    Some((field, v.as_str()))
                })
                .collect(),
        )
    }

    fn get(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).copied().filter(|v| !v.is_empty())
    }
}

/// Go's `time.RFC3339` in UTC: whole seconds, `Z`.
fn rfc3339(at: SystemTime) -> String {
    let whole = at
        .duration_since(UNIX_EPOCH)
        .map(|d| UNIX_EPOCH + Duration::from_secs(d.as_secs()))
        .unwrap_or(UNIX_EPOCH);
    let mut out = String::with_capacity(20);
    // Writing into a String cannot fail.
    let _ = crate::telemetry::logging::write_rfc3339_nanos(&mut out, whole);
    out
}
