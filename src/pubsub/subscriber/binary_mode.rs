//! Binary-mode CloudEvents (daprd `pkg/runtime/subscription`, the `ce_` branch): a message whose
//! content type is `application/octet-stream` carries the event attributes as broker metadata
//! (`ce_id`, `ce_source`, `ce_type`, `ce_specversion`, `ce_datacontenttype`, extensions...) and
//! the event data as the payload, as Kafka and AMQP bindings of CloudEvents do. The event is
//! rebuilt from those so routing, expiry and tracing work as for a structured event.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value};

const PREFIX: &str = "ce_";

/// Whether `content_type` marks a binary payload (components-contrib `IsBinaryContentType`).
pub(super) fn is_binary(content_type: &str) -> bool {
    starts_with_ignore_case(content_type.trim_start(), "application/octet-stream")
}

/// The CloudEvent of a binary-mode message: every `ce_`-prefixed metadata key (matched and
/// stored lower-case, prefix removed), `datacontenttype` from `ce_datacontenttype` or else the
/// message's content type, and the payload as `data` when that type is JSON (parsed) or text,
/// else as `data_base64`.
pub(super) fn rebuild(
    metadata: &HashMap<String, String>,
    content_type: &str,
    payload: &[u8],
) -> Map<String, Value> {
    let mut ce = Map::new();
    for (k, v) in metadata {
        if k.len() > PREFIX.len() && starts_with_ignore_case(k, PREFIX) {
            ce.insert(
                k[PREFIX.len()..].to_ascii_lowercase(),
                Value::String(v.clone()),
            );
        }
    }
    let data_type = match ce.get("datacontenttype") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => {
            let t = content_type.to_owned();
            ce.insert("datacontenttype".to_owned(), Value::String(t.clone()));
            t
        }
    };
    let text = std::str::from_utf8(payload).ok();
    let data = match text {
        Some(text) if is_json(&data_type) => {
            Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
        }
        Some(text) if is_text(&data_type) => Some(Value::String(text.to_owned())),
        _ => None,
    };
    match data {
        Some(data) => ce.insert("data".to_owned(), data),
        None => ce.insert(
            "data_base64".to_owned(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
    };
    ce
}

/// The media type without parameters, lower-case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// components-contrib `IsJSONContentType`: `application/json` or any `+json` type.
fn is_json(content_type: &str) -> bool {
    let t = essence(content_type);
    t == "application/json" || t.ends_with("+json")
}

/// components-contrib `IsStringContentType`: text and XML types.
fn is_text(content_type: &str) -> bool {
    let t = essence(content_type);
    t.starts_with("text/") || t == "application/xml" || t.ends_with("+xml")
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn recognises_binary_content_types() {
        assert!(is_binary("application/octet-stream"));
        assert!(is_binary("Application/Octet-Stream; charset=x"));
        assert!(!is_binary("application/json"));
        assert!(!is_binary("application/cloudevents+json"));
    }

    #[test]
    fn attributes_come_from_ce_metadata_and_opaque_data_is_base64() {
        let m = meta(&[
            ("ce_id", "1"),
            ("CE_Source", "orders"),
            ("ce_type", "order.created"),
            ("ce_specversion", "1.0"),
            ("ce_traceparent", "00-aa-bb-01"),
            ("ce_", "no attribute name"),
            ("traceparent", "not an attribute"),
            ("other", "x"),
        ]);
        let ce = rebuild(&m, "application/octet-stream", b"\x00\xff");
        assert_eq!(ce["id"], "1");
        assert_eq!(ce["source"], "orders");
        assert_eq!(ce["type"], "order.created");
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["traceparent"], "00-aa-bb-01");
        assert_eq!(ce["datacontenttype"], "application/octet-stream");
        assert_eq!(ce["data_base64"], "AP8=");
        assert!(!ce.contains_key("data") && !ce.contains_key("other") && !ce.contains_key(""));
        assert_eq!(ce.len(), 7);
    }

    #[test]
    fn json_and_text_data_content_types_give_data() {
        let json = meta(&[("ce_datacontenttype", "application/json; charset=utf-8")]);
        let ce = rebuild(&json, "application/octet-stream", br#"{"amount":5}"#);
        assert_eq!(ce["data"], serde_json::json!({"amount": 5}));
        assert_eq!(ce["datacontenttype"], "application/json; charset=utf-8");
        assert!(!ce.contains_key("data_base64"));

        let broken = rebuild(&json, "application/octet-stream", b"{not json");
        assert_eq!(broken["data"], "{not json");

        let text = meta(&[("ce_datacontenttype", "text/plain")]);
        assert_eq!(
            rebuild(&text, "application/octet-stream", b"hi")["data"],
            "hi"
        );

        let not_utf8 = rebuild(&text, "application/octet-stream", b"\xff");
        assert_eq!(not_utf8["data_base64"], "/w==");
    }
}
