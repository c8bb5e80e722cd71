//! Which headers cross a hop and which are re-stamped, and the conversion between HTTP headers
//! and daprd's `map<string, ListStringValue>` metadata.

use std::collections::HashMap;

use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::HeaderMap;

use crate::proto::internals::ListStringValue;

pub const CALLER_APP_ID: &str = "dapr-caller-app-id";
pub const CALLEE_APP_ID: &str = "dapr-callee-app-id";
pub const CALLER_NAMESPACE: &str = "dapr-caller-namespace";
pub const DAPR_APP_ID: &str = "dapr-app-id";
pub const DESTINATION_APP_ID: &str = "destination-app-id";

/// Connection-scoped headers (RFC 9110 §7.6.1 plus the ones daprd also drops). They describe one
/// hop and must not be forwarded.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Removes hop-by-hop headers, including any named in `Connection`, and `Content-Length` (the
/// body is re-framed on the next hop).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(CONTENT_LENGTH);
}

/// Who this sidecar is, as stamped on outgoing calls.
#[derive(Debug, Clone)]
pub struct CallerStamp<'a> {
    pub app_id: &'a str,
    pub namespace: &'a str,
    pub host_ip: &'a str,
    pub hostname: &'a str,
}

/// Stamps the caller's identity and forwarding headers, replacing whatever the app supplied for
/// the identity headers: the callee must be able to trust them.
pub fn stamp_caller(headers: &mut HeaderMap, me: &CallerStamp<'_>, callee: &str) {
    headers.remove(DAPR_APP_ID);
    headers.remove(DESTINATION_APP_ID);
    set(headers, CALLER_APP_ID, me.app_id);
    set(headers, CALLEE_APP_ID, callee);
    set(headers, CALLER_NAMESPACE, me.namespace);
    append(headers, "x-forwarded-for", me.host_ip);
    append(headers, "x-forwarded-host", me.hostname);
    let forwarded = format!("for={0};by={0};host={1}", me.host_ip, me.hostname);
    append(headers, "forwarded", &forwarded);
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Appends to an existing value with `, ` as proxies do, so earlier hops stay visible.
fn append(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let name = HeaderName::from_static(name);
    let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
}

/// HTTP headers to daprd's metadata map. Keys use Go's canonical form (`Content-Type`), as a
/// daprd caller sends them. Values that are not UTF-8 cannot be carried in a proto string and
/// are dropped.
pub fn to_metadata(headers: &HeaderMap) -> HashMap<String, ListStringValue> {
    let mut out: HashMap<String, ListStringValue> = HashMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        // daprd puts its own identity keys into the map in lower case, and everything that came
        // from the HTTP request in Go's canonical case; do the same.
        let key = match name.as_str() {
            k @ (CALLER_APP_ID | CALLEE_APP_ID | CALLER_NAMESPACE) => k.to_owned(),
            k => canonical_key(k),
        };
        out.entry(key).or_default().values.push(value.to_owned());
    }
    out
}

/// daprd's metadata map back to HTTP headers for an app, dropping what must not reach it:
/// hop-by-hop headers, `Content-Length`, binary (`-bin`) gRPC keys, the routing key and gRPC
/// pseudo-headers; other `grpc-` keys are renamed `dapr-grpc-` as daprd does.
pub fn from_metadata(metadata: HashMap<String, ListStringValue>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(metadata.len());
    for (key, values) in metadata {
        let lower = key.to_ascii_lowercase();
        if lower.starts_with(':')
            || lower.ends_with("-bin")
            || lower == DESTINATION_APP_ID
            || lower == "content-length"
            || HOP_BY_HOP.contains(&lower.as_str())
        {
            continue;
        }
        let name = if let Some(rest) = lower.strip_prefix("grpc-") {
            format!("dapr-grpc-{rest}")
        } else {
            lower
        };
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in values.values {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.append(name.clone(), v);
            }
        }
    }
    out
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: first letter and letters after `-` upper-cased.
pub fn canonical_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        if upper {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = map(&[
            ("connection", "close, x-private"),
            ("x-private", "1"),
            ("keep-alive", "5"),
            ("content-length", "3"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn identity_is_restamped_and_forwarding_appended() {
        let mut h = map(&[
            ("dapr-caller-app-id", "spoofed"),
            ("dapr-app-id", "beta"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        let me = CallerStamp {
            app_id: "alpha",
            namespace: "default",
            host_ip: "127.0.0.1",
            hostname: "h",
        };
        stamp_caller(&mut h, &me, "beta");
        assert_eq!(h[CALLER_APP_ID], "alpha");
        assert_eq!(h[CALLEE_APP_ID], "beta");
        assert_eq!(h[CALLER_NAMESPACE], "default");
        assert!(h.get(DAPR_APP_ID).is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.9, 127.0.0.1");
        assert_eq!(h["forwarded"], "for=127.0.0.1;by=127.0.0.1;host=h");
    }

    #[test]
    fn metadata_round_trip_uses_canonical_keys_and_filters() {
        let h = map(&[
            ("content-type", "text/plain"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ]);
        let md = to_metadata(&h);
        assert_eq!(md["Content-Type"].values, vec!["text/plain"]);
        assert_eq!(md["X-Multi"].values, vec!["a", "b"]);

        let mut md = md;
        md.insert(
            "grpc-timeout".into(),
            ListStringValue {
                values: vec!["1S".into()],
            },
        );
        md.insert(
            "trace-bin".into(),
            ListStringValue {
                values: vec!["x".into()],
            },
        );
        md.insert(
            "Destination-App-Id".into(),
            ListStringValue {
                values: vec!["b".into()],
            },
        );
        md.insert(
            "Transfer-Encoding".into(),
            ListStringValue {
                values: vec!["chunked".into()],
            },
        );
        let back = from_metadata(md);
        assert_eq!(back.get_all("x-multi").iter().count(), 2);
        assert_eq!(back["dapr-grpc-timeout"], "1S");
        assert!(back.get("trace-bin").is_none());
        assert!(back.get("destination-app-id").is_none());
        assert!(back.get("transfer-encoding").is_none());
    }

    #[test]
    fn canonical_keys_match_go() {
        assert_eq!(canonical_key("content-type"), "Content-Type");
        assert_eq!(canonical_key("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_key("DAPR-caller-app-id"), "Dapr-Caller-App-Id");
    }
}
