//! Caller metadata as gRPC metadata for a gRPC app, and the app's answer metadata back, as
//! daprd converts them (`InternalMetadataToGrpcMetadata` / `GrpcMetadataToInternalMetadata`).

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use tonic::metadata::{KeyAndValueRef, MetadataMap};

use crate::invoke::headers::canonical_key;
use crate::proto::internals::ListStringValue;

/// IANA's permanent HTTP request headers: daprd prefixes them `dapr-` so they cannot clash
/// with the gRPC transport's own (`content-type`, `user-agent`, ...).
const PERMANENT_HTTP: [&str; 24] = [
    "Accept",
    "Accept-Charset",
    "Accept-Language",
    "Accept-Ranges",
    "Authorization",
    "Cache-Control",
    "Content-Type",
    "Cookie",
    "Date",
    "Expect",
    "From",
    "Host",
    "If-Match",
    "If-Modified-Since",
    "If-None-Match",
    "If-Schedule-Tag-Match",
    "If-Unmodified-Since",
    "Max-Forwards",
    "Origin",
    "Pragma",
    "Referer",
    "User-Agent",
    "Via",
    "Warning",
];

/// Connection-scoped headers: HTTP/2 refuses them outright, so they can never be forwarded.
const CONNECTION_SCOPED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
    "trailer",
    "content-length",
];

/// daprd's internal metadata map as gRPC request metadata.
pub(super) fn from_internal(metadata: &HashMap<String, ListStringValue>) -> MetadataMap {
    let mut out = HeaderMap::with_capacity(metadata.len());
    for (key, values) in metadata {
        for value in &values.values {
            push(&mut out, key, value);
        }
    }
    MetadataMap::from_headers(out)
}

/// HTTP request headers (a [`crate::invoke::Call`]'s) as gRPC request metadata.
pub(super) fn from_headers(headers: &HeaderMap) -> MetadataMap {
    let mut out = HeaderMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            push(&mut out, name.as_str(), value);
        }
    }
    MetadataMap::from_headers(out)
}

fn push(out: &mut HeaderMap, key: &str, value: &str) {
    let lower = key.to_ascii_lowercase();
    if lower.starts_with(':')
        || lower == crate::invoke::headers::DESTINATION_APP_ID
        || CONNECTION_SCOPED.contains(&lower.as_str())
        // The transport's own keys; the app gets the call's real deadline and status from it.
        || (lower.starts_with("grpc-") && lower != "grpc-trace-bin")
    {
        return;
    }
    let canonical = canonical_key(&lower);
    let name = if PERMANENT_HTTP.contains(&canonical.as_str()) {
        format!("dapr-{lower}")
    } else {
        lower
    };
    let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
        return;
    };
    if name.as_str().ends_with("-bin") {
        // Carried base64 in the map; gRPC wants the raw bytes, which tonic re-encodes.
        let Ok(raw) = STANDARD
            .decode(value)
            .or_else(|_| STANDARD_NO_PAD.decode(value))
        else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&STANDARD_NO_PAD.encode(raw)) {
            out.append(name, v);
        }
    } else if let Ok(v) = HeaderValue::from_str(value) {
        out.append(name, v);
    }
}

/// Keys of the gRPC transport itself (`content-type: application/grpc`, `grpc-status`, ...):
/// they describe the hop to the app, not the app's answer.
fn is_transport(key: &str) -> bool {
    key == "content-type" || key == "te" || key.starts_with("grpc-")
}

/// The app's response headers or trailers as daprd's internal map (binary values base64).
pub(super) fn to_internal(metadata: &MetadataMap) -> HashMap<String, ListStringValue> {
    let mut out: HashMap<String, ListStringValue> = HashMap::new();
    for entry in metadata.iter() {
        let (key, value) = match entry {
            KeyAndValueRef::Ascii(k, v) => match v.to_str() {
                Ok(v) => (k.as_str(), v.to_owned()),
                Err(_) => continue,
            },
            KeyAndValueRef::Binary(k, v) => match v.to_bytes() {
                Ok(b) => (k.as_str(), STANDARD.encode(b)),
                Err(_) => continue,
            },
        };
        if !is_transport(key) {
            out.entry(key.to_owned()).or_default().values.push(value);
        }
    }
    out
}

/// The app's response headers as HTTP headers for an HTTP-shaped answer (binary keys dropped).
pub(super) fn to_http(metadata: &MetadataMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(metadata.len());
    for entry in metadata.iter() {
        if let KeyAndValueRef::Ascii(k, v) = entry {
            if is_transport(k.as_str()) {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_str().as_bytes()),
                HeaderValue::from_bytes(v.as_encoded_bytes()),
            ) {
                out.append(name, value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> HashMap<String, ListStringValue> {
        let mut out: HashMap<String, ListStringValue> = HashMap::new();
        for (k, v) in pairs {
            out.entry((*k).to_owned())
                .or_default()
                .values
                .push((*v).to_owned());
        }
        out
    }

    #[test]
    fn internal_metadata_becomes_grpc_metadata_like_daprd() {
        let got = from_internal(&md(&[
            ("Content-Type", "application/json"),
            ("User-Agent", "curl"),
            ("X-Custom", "a"),
            ("X-Custom", "b"),
            ("dapr-caller-app-id", "alpha"),
            ("destination-app-id", "beta"),
            ("Connection", "close"),
            ("grpc-timeout", "1S"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("trace-bin", "AQID"),
        ]));
        assert_eq!(got.get("dapr-content-type").unwrap(), "application/json");
        assert_eq!(got.get("dapr-user-agent").unwrap(), "curl");
        assert!(got.get("content-type").is_none());
        assert_eq!(got.get_all("x-custom").iter().count(), 2);
        assert_eq!(got.get("dapr-caller-app-id").unwrap(), "alpha");
        assert!(got.get("destination-app-id").is_none());
        assert!(got.get("connection").is_none());
        assert!(got.get("grpc-timeout").is_none());
        assert!(got.get("traceparent").is_some());
        let bin = got.get_bin("trace-bin").unwrap().to_bytes().unwrap();
        assert_eq!(&bin[..], &[1, 2, 3]);
    }

    #[test]
    fn answer_metadata_round_trips_to_the_internal_map() {
        let mut m = MetadataMap::new();
        m.insert("x-answer", "yes".parse().unwrap());
        m.insert("content-type", "application/grpc".parse().unwrap());
        m.insert_bin(
            "blob-bin",
            tonic::metadata::MetadataValue::from_bytes(&[0xff, 0]),
        );
        let internal = to_internal(&m);
        assert_eq!(internal["x-answer"].values, vec!["yes"]);
        assert!(!internal.contains_key("content-type"));
        assert_eq!(internal["blob-bin"].values, vec!["/wA="]);
        let http = to_http(&m);
        assert_eq!(http["x-answer"], "yes");
        assert!(http.get("blob-bin").is_none());
    }
}
