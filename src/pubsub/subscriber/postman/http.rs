//! HTTP delivery to the app (daprd `postman/http`): one CloudEvent POSTed to its route, or a
//! bulk envelope of several, and the reading of the app's answer exactly per daprd's tables.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BulkMessage, Postman, SubscribedMessage, Verdict};
use crate::app_channel::AppChannel;
use crate::invoke::Call;

/// Largest single-message answer read to find its `status`; a bigger body is treated as
/// non-JSON (ack), since an app acknowledging with a large payload still accepted the message.
const MAX_ANSWER: usize = 64 * 1024;
/// Largest bulk answer read: it lists a status per entry, so it grows with the batch.
const MAX_BULK_ANSWER: usize = 4 * 1024 * 1024;

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Delivers over the app channel (HTTP/1.1 or h2c).
pub struct HttpPostman {
    app: Arc<AppChannel>,
}

impl HttpPostman {
    pub fn new(app: Arc<AppChannel>) -> Self {
        Self { app }
    }

    /// POSTs `body` to `path`; the status and (bounded) body of the answer, or why there is none.
    async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        limit: usize,
    ) -> Result<(StatusCode, Option<Bytes>), String> {
        let call = Call {
            method: path.trim_start_matches('/').to_owned(),
            verb: Method::POST,
            query: String::new(),
            headers,
            body: Body::from(body),
        };
        let res = self
            .app
            .call(call)
            .await
            .map_err(|e| format!("error sending to the app: {e}"))?;
        let status = res.status();
        // The body is read in every case so the connection (and the concurrency permit) is
        // released.
        let answer = Limited::new(res.into_body(), limit)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .ok();
        Ok((status, answer))
    }
}

impl Postman for HttpPostman {
    fn deliver(&self, msg: SubscribedMessage) -> BoxFuture<'_, Verdict> {
        Box::pin(async move {
            let headers = headers(&msg.metadata, &msg.pubsub_name, &msg.event);
            match self.post(&msg.path, headers, msg.body, MAX_ANSWER).await {
                Ok((status, body)) => classify(status, body.as_deref()),
                Err(e) => Verdict::Retry(e),
            }
        })
    }

    fn deliver_bulk(&self, batch: BulkMessage) -> BoxFuture<'_, Vec<Verdict>> {
        Box::pin(async move {
            let n = batch.entries.len();
            let body = match envelope(&batch) {
                Ok(body) => body,
                Err(e) => {
                    let why = format!("cannot serialize the bulk envelope: {e}");
                    return vec![Verdict::Retry(why); n];
                }
            };
            let mut headers = headers_from_metadata(&batch.metadata, n + 2);
            if let Ok(v) = HeaderValue::try_from(&*batch.pubsub_name) {
                headers.insert("pubsubname", v);
            }
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            match self.post(&batch.path, headers, body, MAX_BULK_ANSWER).await {
                Ok((status, answer)) => classify_bulk(&batch, status, answer.as_deref()),
                Err(e) => vec![Verdict::Retry(e); n],
            }
        })
    }
}

/// daprd's table. `body` is `None` when it could not be read (treated like a non-JSON body).
pub(super) fn classify(status: StatusCode, body: Option<&[u8]>) -> Verdict {
    if status == StatusCode::NOT_FOUND {
        return Verdict::drop("the app answered 404 Not Found");
    }
    if !status.is_success() {
        return Verdict::Retry(format!("the app answered {status}"));
    }
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        return Verdict::Success;
    };
    // daprd unmarshals into {status string}; anything that does not fit is a plain success.
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Success;
    };
    match answer.get("status") {
        None | Some(Value::Null) => Verdict::Success,
        Some(Value::String(s)) if s.is_empty() || s.eq_ignore_ascii_case("SUCCESS") => {
            Verdict::Success
        }
        Some(Value::String(s)) if s.eq_ignore_ascii_case("RETRY") => {
            Verdict::Retry("the app asked to retry".to_owned())
        }
        Some(Value::String(s)) if s.eq_ignore_ascii_case("DROP") => {
            Verdict::deliberate_drop("the app asked to drop the message")
        }
        Some(other) => Verdict::Retry(format!("unknown status {other} from the app")),
    }
}

/// daprd's bulk envelope (`pubsub/bulksubscribe_events.go`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    id: String,
    r#type: &'static str,
    topic: &'a str,
    pubsubname: &'a str,
    metadata: &'a HashMap<String, String>,
    entries: Vec<EnvelopeEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeEntry<'a> {
    entry_id: &'a str,
    event: EntryEvent<'a>,
    metadata: &'a HashMap<String, String>,
    content_type: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EntryEvent<'a> {
    /// The CloudEvent JSON, embedded as is (no parse and re-serialize of the app's data).
    CloudEvent(&'a RawValue),
    /// A raw payload, base64-encoded as daprd sends it.
    Raw(String),
}

fn envelope(batch: &BulkMessage) -> Result<Bytes, serde_json::Error> {
    let mut entries = Vec::with_capacity(batch.entries.len());
    for entry in &batch.entries {
        let msg = &entry.message;
        let (event, content_type) = match &msg.raw {
            Some(raw) => (
                EntryEvent::Raw(base64::engine::general_purpose::STANDARD.encode(raw)),
                "application/octet-stream",
            ),
            None => (
                EntryEvent::CloudEvent(serde_json::from_slice(&msg.body)?),
                msg.content_type
                    .as_deref()
                    .filter(|ct| ct.contains("json"))
                    .unwrap_or(CLOUDEVENTS_JSON),
            ),
        };
        entries.push(EnvelopeEntry {
            entry_id: &entry.entry_id,
            event,
            metadata: &msg.metadata,
            content_type,
        });
    }
    let body = Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        r#type: "com.dapr.event.sent.bulk",
        topic: &batch.topic,
        pubsubname: &batch.pubsub_name,
        metadata: &batch.metadata,
        entries,
    };
    serde_json::to_vec(&body).map(Bytes::from)
}

#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    statuses: Vec<EntryAnswer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryAnswer {
    #[serde(default)]
    entry_id: String,
    #[serde(default)]
    status: Option<String>,
}

/// daprd's bulk table: 2xx reads a status per entry (missing, empty, unknown or unlisted ->
/// retry; an unreadable body retries them all); 404 drops them all; anything else retries all.
pub(super) fn classify_bulk(
    batch: &BulkMessage,
    status: StatusCode,
    body: Option<&[u8]>,
) -> Vec<Verdict> {
    let n = batch.entries.len();
    if status == StatusCode::NOT_FOUND {
        return vec![Verdict::drop("the app answered 404 Not Found to the bulk delivery"); n];
    }
    if !status.is_success() {
        return vec![Verdict::Retry(format!("the app answered {status} to the bulk delivery")); n];
    }
    let answer = match body.map(serde_json::from_slice::<BulkAnswer>) {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => {
            return vec![Verdict::Retry(format!("unreadable bulk answer from the app: {e}")); n]
        }
        None => return vec![Verdict::Retry("unreadable bulk answer from the app".to_owned()); n],
    };
    let index: HashMap<&str, usize> = batch
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.entry_id.as_str(), i))
        .collect();
    let mut out: Vec<Option<Verdict>> = vec![None; n];
    for item in answer.statuses {
        let Some(&i) = index.get(item.entry_id.as_str()) else {
            tracing::warn!(entry_id = %item.entry_id, "the app answered for an unknown bulk entry");
            continue;
        };
        out[i] = Some(match item.status.as_deref().unwrap_or_default() {
            s if s.eq_ignore_ascii_case("SUCCESS") => Verdict::Success,
            s if s.eq_ignore_ascii_case("DROP") => {
                Verdict::deliberate_drop("the app asked to drop the entry")
            }
            s if s.eq_ignore_ascii_case("RETRY") => {
                Verdict::Retry("the app asked to retry the entry".to_owned())
            }
            "" => Verdict::Retry("the app gave the entry no status".to_owned()),
            s => Verdict::Retry(format!("unknown status {s:?} for the entry")),
        });
    }
    out.into_iter()
        .map(|v| {
            v.unwrap_or_else(|| Verdict::Retry("the app did not answer for the entry".to_owned()))
        })
        .collect()
}

/// Broker metadata as request headers, minus what HTTP cannot carry and the framing headers
/// the sidecar sets itself.
fn headers_from_metadata(metadata: &HashMap<String, String>, extra: usize) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(metadata.len() + extra);
    for (k, v) in metadata {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) else {
            continue;
        };
        if name != CONTENT_LENGTH && name != CONTENT_TYPE {
            out.insert(name, value);
        }
    }
    out
}

/// The request headers of a delivery: the broker metadata (minus `Content-Length`),
/// `pubsubName`, the CloudEvents content type, and a trace context continuing the CE's.
pub(super) fn headers(
    metadata: &HashMap<String, String>,
    pubsub_name: &str,
    event: &Map<String, Value>,
) -> HeaderMap {
    let mut out = headers_from_metadata(metadata, 4);
    if let Ok(v) = HeaderValue::try_from(pubsub_name) {
        out.insert("pubsubname", v);
    }
    out.insert(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON));
    let parent = [event.get("traceparent"), event.get("traceid")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty());
    if let Some(tp) = parent.and_then(child_traceparent) {
        if let Ok(v) = HeaderValue::try_from(tp) {
            out.insert("traceparent", v);
        }
        if let Some(Ok(v)) = event
            .get("tracestate")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .map(HeaderValue::try_from)
        {
            out.insert("tracestate", v);
        }
    }
    out
}

/// A W3C traceparent for a new span (daprd's `pubsub/<topic>` span) under `parent`: same trace
/// id and flags, fresh span id. `None` when `parent` is not a valid version-00 traceparent.
fn child_traceparent(parent: &str) -> Option<String> {
    let parts: Vec<&str> = parent.trim().split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    if !(hex(version, 2) && hex(trace_id, 32) && hex(span_id, 16) && hex(flags, 2))
        || trace_id.bytes().all(|c| c == b'0')
    {
        return None;
    }
    let random = uuid::Uuid::new_v4().simple().to_string();
    Some(format!(
        "00-{}-{}-{}",
        trace_id.to_ascii_lowercase(),
        &random[..16],
        flags
    ))
}

#[cfg(test)]
mod tests {
    use super::super::BulkEntry;
    use super::*;

    #[test]
    fn answers_map_to_daprd_verdicts() {
        let ok = StatusCode::OK;
        let v = |status, body: &str| classify(status, Some(body.as_bytes()));
        assert_eq!(v(ok, ""), Verdict::Success);
        assert_eq!(v(StatusCode::NO_CONTENT, ""), Verdict::Success);
        assert_eq!(v(ok, "not json"), Verdict::Success);
        assert_eq!(v(ok, "[1,2]"), Verdict::Success);
        assert_eq!(v(ok, r#"{"status":"SUCCESS"}"#), Verdict::Success);
        assert_eq!(v(ok, r#"{"status":""}"#), Verdict::Success);
        assert_eq!(v(ok, r#"{"other":1}"#), Verdict::Success);
        assert!(matches!(v(ok, r#"{"status":"RETRY"}"#), Verdict::Retry(_)));
        assert!(matches!(v(ok, r#"{"status":"DROP"}"#), Verdict::Drop(_)));
        assert!(matches!(v(ok, r#"{"status":"MAYBE"}"#), Verdict::Retry(_)));
        assert!(matches!(v(StatusCode::NOT_FOUND, ""), Verdict::Drop(_)));
        assert!(matches!(
            v(StatusCode::INTERNAL_SERVER_ERROR, r#"{"status":"SUCCESS"}"#),
            Verdict::Retry(_)
        ));
        assert!(matches!(v(StatusCode::BAD_REQUEST, ""), Verdict::Retry(_)));
        assert_eq!(classify(ok, None), Verdict::Success);
    }

    #[test]
    fn headers_carry_metadata_pubsub_and_child_trace() {
        let meta = HashMap::from([
            ("x-custom".to_owned(), "1".to_owned()),
            ("Content-Length".to_owned(), "99".to_owned()),
            ("bad header".to_owned(), "x".to_owned()),
        ]);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let event = serde_json::json!({"traceparent": tp, "tracestate": "k=v"});
        let h = headers(&meta, "pubsub", event.as_object().expect("object"));
        assert_eq!(h["x-custom"], "1");
        assert_eq!(h["pubsubname"], "pubsub");
        assert_eq!(h[CONTENT_TYPE], "application/cloudevents+json");
        assert!(h.get(CONTENT_LENGTH).is_none());
        let got = h["traceparent"].to_str().expect("ascii");
        assert!(got.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && got.ends_with("-01"));
        assert_ne!(got, tp, "a new span id under the CE's span");
        assert_eq!(h["tracestate"], "k=v");
        assert!(child_traceparent("garbage").is_none());
    }

    fn batch(ids: &[&str], raw: bool) -> BulkMessage {
        let entries = ids
            .iter()
            .map(|id| {
                let event = serde_json::json!({"id": id, "data": {"n": 1}});
                BulkEntry {
                    entry_id: (*id).to_owned(),
                    message: SubscribedMessage {
                        pubsub_name: Arc::from("ps"),
                        topic: Arc::from("t"),
                        path: "/p".into(),
                        body: Bytes::from(event.to_string()),
                        event: event.as_object().expect("object").clone(),
                        raw: raw.then(|| Bytes::from_static(b"\x00raw")),
                        content_type: None,
                        metadata: HashMap::from([("k".to_owned(), "v".to_owned())]),
                    },
                }
            })
            .collect();
        BulkMessage {
            pubsub_name: Arc::from("ps"),
            topic: Arc::from("t"),
            path: "/p".into(),
            metadata: HashMap::from([("pubsubName".to_owned(), "ps".to_owned())]),
            entries,
        }
    }

    #[test]
    fn bulk_answers_map_to_per_entry_verdicts() {
        let b = batch(&["a", "b", "c", "d", "e"], false);
        let body = br#"{"statuses":[
            {"entryId":"a","status":"SUCCESS"},
            {"entryId":"b","status":"DROP"},
            {"entryId":"c","status":"RETRY"},
            {"entryId":"d","status":""},
            {"entryId":"zzz","status":"SUCCESS"}]}"#;
        let v = classify_bulk(&b, StatusCode::OK, Some(body));
        assert_eq!(v[0], Verdict::Success);
        assert!(matches!(&v[1], Verdict::Drop(d) if d.deliberate));
        assert!(matches!(v[2], Verdict::Retry(_)));
        assert!(matches!(v[3], Verdict::Retry(_)), "empty status");
        assert!(matches!(v[4], Verdict::Retry(_)), "not listed");

        let all = |status, body: &[u8]| classify_bulk(&b, status, Some(body));
        assert!(all(StatusCode::NOT_FOUND, b"")
            .iter()
            .all(|v| matches!(v, Verdict::Drop(d) if !d.deliberate)));
        assert!(all(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"statuses":[{"entryId":"a","status":"SUCCESS"}]}"#
        )
        .iter()
        .all(|v| matches!(v, Verdict::Retry(_))));
        assert!(all(StatusCode::OK, b"not json")
            .iter()
            .all(|v| matches!(v, Verdict::Retry(_))));
        assert_eq!(all(StatusCode::OK, b"").len(), 5);
    }

    #[test]
    fn bulk_envelope_is_daprds() {
        let body = envelope(&batch(&["a"], false)).expect("envelope");
        let e: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(e["type"], "com.dapr.event.sent.bulk");
        assert_eq!(e["topic"], "t");
        assert_eq!(e["pubsubname"], "ps");
        assert_eq!(e["metadata"]["pubsubName"], "ps");
        assert!(e["id"].as_str().is_some_and(|id| id.len() == 36));
        let entry = &e["entries"][0];
        assert_eq!(entry["entryId"], "a");
        assert_eq!(entry["event"]["data"]["n"], 1);
        assert_eq!(entry["metadata"]["k"], "v");
        assert_eq!(entry["contentType"], "application/cloudevents+json");

        let raw: Value = serde_json::from_slice(&envelope(&batch(&["r"], true)).expect("envelope"))
            .expect("json");
        assert_eq!(raw["entries"][0]["event"], "AHJhdw==");
        assert_eq!(raw["entries"][0]["contentType"], "application/octet-stream");
    }
}
