//! Bulk publish over HTTP: a JSON array of entries, each event turned into bytes by its
//! `contentType` as daprd does, and daprd's failed-entries body when the broker refuses some.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::super::ApiState;
use super::errors;
use super::request::{self, PublishRequest};
use crate::pubsub::{BulkEntry, BulkPublishCall, PublishError};

/// One entry as the app sends it.
#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "entryId", default)]
    entry_id: String,
    #[serde(default)]
    event: Value,
    #[serde(rename = "contentType", default)]
    content_type: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

pub(super) async fn publish(State(api): State<Arc<ApiState>>, req: PublishRequest) -> Response {
    let PublishRequest {
        pubsub,
        topic,
        data,
        metadata,
        trace,
        ..
    } = req;
    let raw: Vec<RawEntry> = match serde_json::from_slice(&data) {
        Ok(raw) => raw,
        Err(e) => {
            let message = format!(
                "error when unmarshaling the request for topic {topic} pubsub {pubsub}: {e}"
            );
            return errors::events_ser(&pubsub, "UNMARSHAL_EVENTS", message).into_response();
        }
    };
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let event = match event_bytes(&entry.event, &entry.content_type) {
            Ok(event) => event,
            Err(why) => {
                let message = format!(
                    "error when unmarshaling the request for topic {topic} pubsub {pubsub}: entry {}: {why}",
                    entry.entry_id
                );
                return errors::events_ser(&pubsub, "MARSHAL_EVENTS", message).into_response();
            }
        };
        entries.push(BulkEntry {
            entry_id: entry.entry_id,
            event,
            content_type: entry.content_type,
            metadata: entry.metadata,
        });
    }
    let call = BulkPublishCall {
        pubsub,
        topic,
        entries,
        metadata,
        trace,
    };
    match api.pubsubs.bulk_publish(call).await {
        Err(PublishError::BulkFailed { failed, .. }) => failed_entries(&failed),
        result => request::reply(result),
    }
}

/// daprd's partial-failure answer: the failed entries as the body and in the
/// `metadata.responseData` header, the first error in `metadata.error`.
fn failed_entries(failed: &[crate::pubsub::FailedEntry]) -> Response {
    let list: Vec<Value> = failed
        .iter()
        .map(|f| serde_json::json!({ "entryId": f.entry_id, "error": f.error }))
        .collect();
    let body = serde_json::json!({
        "failedEntries": list,
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    })
    .to_string();
    let mut res = (StatusCode::INTERNAL_SERVER_ERROR, body.clone()).into_response();
    let headers = res.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&body) {
        headers.insert("metadata.responseData", v);
    }
    if let Some(v) = failed
        .first()
        .and_then(|f| HeaderValue::from_str(&f.error).ok())
    {
        headers.insert("metadata.error", v);
    }
    res
}

/// The bytes of one event by its content type: base64 for `application/octet-stream`, the
/// string for text and XML, re-serialized JSON for JSON and CloudEvents JSON.
fn event_bytes(event: &Value, content_type: &str) -> Result<Bytes, String> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = || {
        event
            .as_str()
            .map(|s| Bytes::from(s.to_owned()))
            .ok_or_else(|| format!("event must be a string for content type {content_type}"))
    };
    match media.as_str() {
        "application/octet-stream" => {
            let s = event
                .as_str()
                .ok_or("event must be a base64 string for application/octet-stream")?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        }
        "application/json" | "application/cloudevents+json" => serde_json::to_vec(event)
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
        "application/xml" => text(),
        m if m.starts_with("text/") => text(),
        _ => Err(format!("content type {content_type} is not supported")),
    }
}
