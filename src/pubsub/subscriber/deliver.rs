//! HTTP delivery of one CloudEvent to the app (daprd `postman/http`) and the reading of its
//! answer, exactly per daprd's table: the verdict decides ack, redelivery or drop.

use std::collections::HashMap;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value};

use crate::app_channel::AppChannel;
use crate::invoke::Call;

/// Largest app answer read to find its `status`; a bigger body is treated as non-JSON (ack),
/// since an app acknowledging with a large payload still accepted the message.
const MAX_ANSWER: usize = 64 * 1024;

/// What the app's answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    /// Redeliver (daprd: retriable error). The string says why, for logs.
    Retry(String),
    /// Do not redeliver: ack, dead-letter when configured.
    Drop(String),
}

/// POSTs `body` to `path` and reads the verdict.
pub(super) async fn deliver(
    app: &AppChannel,
    path: &str,
    body: Bytes,
    headers: HeaderMap,
) -> Verdict {
    let call = Call {
        method: path.trim_start_matches('/').to_owned(),
        verb: Method::POST,
        query: String::new(),
        headers,
        body: Body::from(body),
    };
    let res = match app.call(call).await {
        Ok(res) => res,
        Err(e) => return Verdict::Retry(format!("error sending to the app: {e}")),
    };
    let status = res.status();
    // The body is read in every case so the connection (and the concurrency permit) is released.
    let answer = Limited::new(res.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes());
    classify(status, answer.as_deref().ok())
}

/// daprd's table. `body` is `None` when it could not be read (treated like a non-JSON body).
pub(super) fn classify(status: StatusCode, body: Option<&[u8]>) -> Verdict {
    if status == StatusCode::NOT_FOUND {
        return Verdict::Drop("the app answered 404 Not Found".to_owned());
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
            Verdict::Drop("the app asked to drop the message".to_owned())
        }
        Some(other) => Verdict::Retry(format!("unknown status {other} from the app")),
    }
}

/// The request headers of a delivery: the broker metadata (minus `Content-Length`),
/// `pubsubName`, the CloudEvents content type, and a trace context continuing the CE's.
pub(super) fn headers(
    metadata: &HashMap<String, String>,
    pubsub_name: &str,
    event: &Map<String, Value>,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(metadata.len() + 4);
    for (k, v) in metadata {
        // Metadata keys are whatever publishers sent; skip the ones HTTP cannot carry.
        let (Ok(name), Ok(value)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) else {
            continue;
        };
        if name != CONTENT_LENGTH && name != CONTENT_TYPE {
            out.insert(name, value);
        }
    }
    if let Ok(v) = HeaderValue::try_from(pubsub_name) {
        out.insert("pubsubname", v);
    }
    out.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/cloudevents+json"),
    );
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
}
