//! Successful answers of the state routes in daprd's shapes. Stored data is embedded in JSON
//! answers as raw JSON (`json.RawMessage` in daprd).

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::state::{BulkEntry, QueryOutcome, StateEntry};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `GET /v1.0/state/{store}/{key}`: the stored bytes, the etag and `metadata.<k>` headers.
pub(super) fn entry(entry: StateEntry) -> Response {
    let mut res = (StatusCode::OK, entry.value).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    if let Some(etag) = entry
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    for (k, v) in &entry.metadata {
        let name = HeaderName::from_bytes(format!("metadata.{k}").as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(v)) {
            headers.insert(name, value);
        }
    }
    res
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /v1.0/state/{store}/bulk`: one object per key, in key order.
pub(super) fn bulk(entries: &[BulkEntry]) -> Response {
    let items: Vec<BulkItem<'_>> = entries
        .iter()
        .map(|e| BulkItem {
            key: &e.key,
            data: e.value.as_ref().map(JsonData),
            etag: e.etag.as_deref(),
            metadata: &e.metadata,
            error: e.error.as_deref(),
        })
        .collect();
    json(&items)
}

/// `POST /v1.0-alpha1/state/{store}/query`: 204 when nothing matched.
pub(super) fn query(outcome: &QueryOutcome) -> Response {
    if outcome.results.is_empty() {
        return no_content();
    }
    let body = QueryBody {
        results: outcome
            .results
            .iter()
            .map(|r| QueryRow {
                key: &r.key,
                data: JsonData(&r.data),
                etag: r.etag.as_deref().filter(|e| !e.is_empty()),
                error: r.error.as_deref().filter(|e| !e.is_empty()),
            })
            .collect(),
        token: outcome.token.as_deref().filter(|t| !t.is_empty()),
    };
    json(&body)
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut().insert(header::CONTENT_TYPE, JSON);
            res
        }
        // Only string keys and already-validated raw JSON are serialized; this cannot happen.
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

#[derive(Serialize)]
struct BulkItem<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct QueryBody<'a> {
    results: Vec<QueryRow<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

#[derive(Serialize)]
struct QueryRow<'a> {
    key: &'a str,
    data: JsonData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Stored bytes inside a JSON answer: verbatim when they are JSON (everything the HTTP API
/// stores is). Other bytes, which daprd cannot answer at all over HTTP, become a JSON string:
/// the text when it is UTF-8, else its base64.
struct JsonData<'a>(&'a Bytes);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_slice::<&RawValue>(self.0) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => match std::str::from_utf8(self.0) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => serializer
                    .serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn bulk_embeds_raw_json_and_omits_empty_fields() {
        let entries = vec![
            BulkEntry {
                key: "a".into(),
                value: Some(Bytes::from_static(br#"{"x":1}"#)),
                etag: Some("1".into()),
                metadata: BTreeMap::new(),
                error: None,
            },
            BulkEntry {
                key: "b".into(),
                value: None,
                etag: None,
                metadata: BTreeMap::new(),
                error: None,
            },
            BulkEntry {
                key: "c".into(),
                value: Some(Bytes::from_static(&[0xff])),
                etag: None,
                metadata: BTreeMap::from([("ttlExpireTime".into(), "t".into())]),
                error: None,
            },
        ];
        assert_eq!(
            body(bulk(&entries)).await,
            r#"[{"key":"a","data":{"x":1},"etag":"1"},{"key":"b"},{"key":"c","data":"/w==","metadata":{"ttlExpireTime":"t"}}]"#
        );
    }
}
