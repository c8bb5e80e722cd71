//! Ingress processing of one broker message (daprd `pkg/runtime/subscription`): the CloudEvent
//! to deliver (parsed, or synthesized for `rawPayload`), expiry, and the route.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::binary_mode;
use super::plan::Plan;
use crate::pubsub::routing::RoutingError;
use crate::pubsub::Message;

/// What to do with a message before the app sees it.
#[derive(Debug)]
pub(super) enum Ingress {
    /// POST `body` (the CloudEvent bytes) to `path`.
    Deliver {
        path: String,
        body: Bytes,
        event: Map<String, Value>,
        /// The original payload of a raw-payload subscription (bulk entries carry it as is).
        raw: Option<Bytes>,
    },
    /// Ack without delivering (dead-lettered first when the subscription has a DLQ).
    /// `deliberate` as in [`Dropped`](super::postman::Dropped).
    Drop { reason: String, deliberate: bool },
}

/// Why a message could not be processed; it goes back to the broker (or to the DLQ).
#[derive(Debug, thiserror::Error)]
pub(super) enum IngressError {
    #[error("the message is not a JSON CloudEvent: {0}")]
    NotCloudEvent(String),
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// daprd's default when neither the broker nor the metadata names a content type.
const DEFAULT_CONTENT_TYPE: &str = "application/json";

pub(super) fn process(plan: &Plan, msg: &Message) -> Result<Ingress, IngressError> {
    let content_type = msg
        .content_type
        .as_deref()
        .or_else(|| msg.metadata.get("content-type").map(String::as_str))
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    let (event, body, raw) = if plan.raw_payload {
        let event = synthesize(plan, msg);
        let body = serialize(&event);
        (event, body, Some(msg.data.clone()))
    } else if binary_mode::is_binary(content_type) {
        let event = binary_mode::rebuild(&msg.metadata, content_type, &msg.data);
        let body = serialize(&event);
        (event, body, None)
    } else {
        // The app gets the bytes exactly as published; the parsed copy is only for routing.
        match serde_json::from_slice::<Value>(&msg.data) {
            Ok(Value::Object(event)) => (event, msg.data.clone(), None),
            Ok(_) => {
                return Err(IngressError::NotCloudEvent(
                    "the payload is JSON but not an object".to_owned(),
                ))
            }
            Err(e) => return Err(IngressError::NotCloudEvent(e.to_string())),
        }
    };
    if let Some(Value::String(expiration)) = event.get("expiration") {
        if is_past(expiration) {
            return Ok(Ingress::Drop {
                reason: format!("the message expired at {expiration}"),
                deliberate: false,
            });
        }
    }
    // Routing reads the event as a JSON value: wrap the map for it instead of copying it.
    let wrapped = Value::Object(event);
    let routed = plan.routes.route(&wrapped)?.map(str::to_owned);
    let Value::Object(event) = wrapped else {
        return Err(IngressError::NotCloudEvent(
            "the event is not an object".to_owned(),
        ));
    };
    Ok(match routed {
        Some(path) => Ingress::Deliver {
            path,
            body,
            event,
            raw,
        },
        None => Ingress::Drop {
            reason: "no routing rule matched the event".to_owned(),
            deliberate: true,
        },
    })
}

/// A synthesized event as the JSON the app receives.
fn serialize(event: &Map<String, Value>) -> Bytes {
    // A map of JSON values always serializes.
    Bytes::from(serde_json::to_vec(event).unwrap_or_default())
}

/// daprd's CloudEvent for a raw payload: fixed attributes, the bytes as `data_base64`, and the
/// trace context the publisher left in the broker metadata.
fn synthesize(plan: &Plan, msg: &Message) -> Map<String, Value> {
    let mut ce = Map::new();
    let mut put = |k: &str, v: String| {
        ce.insert(k.to_owned(), Value::String(v));
    };
    put("id", uuid::Uuid::new_v4().to_string());
    put("source", "Dapr".to_owned());
    put("type", "com.dapr.event.sent".to_owned());
    put("specversion", "1.0".to_owned());
    put("datacontenttype", "application/octet-stream".to_owned());
    put("topic", plan.topic.clone());
    put("pubsubname", plan.pubsub.name.clone());
    put(
        "data_base64",
        base64::engine::general_purpose::STANDARD.encode(&msg.data),
    );
    for key in ["traceid", "traceparent", "tracestate"] {
        if let Some(v) = msg.metadata.get(key).filter(|v| !v.is_empty()) {
            put(key, v.clone());
        }
    }
    ce
}

/// Whether an RFC 3339 timestamp lies in the past. An unreadable one never expires the message:
/// dropping data because of a malformed optional attribute would lose it silently.
fn is_past(text: &str) -> bool {
    match rfc3339_unix_millis(text) {
        Some(at) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX));
            at < now
        }
        None => {
            tracing::warn!(
                expiration = text,
                "unreadable CloudEvent expiration; ignoring it"
            );
            false
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as milliseconds since the Unix epoch.
fn rfc3339_unix_millis(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1000 + i128::from(millis))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(rfc3339_unix_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_unix_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(rfc3339_unix_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            rfc3339_unix_millis("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(rfc3339_unix_millis("2024-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_unix_millis("yesterday"), None);
    }

    #[test]
    fn expiry() {
        assert!(is_past("2001-01-01T00:00:00Z"));
        assert!(!is_past("2999-01-01T00:00:00Z"));
        assert!(!is_past("garbage"));
    }
}
