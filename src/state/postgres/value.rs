//! How values sit in daprd's `value JSONB, isbinary BOOLEAN` columns, and the two column
//! types tokio-postgres has no mapping for (raw `jsonb` text and `xid`).
//!
//! daprd stores a JSON value (what the HTTP API always sends) as JSONB with `isbinary =
//! false`, and raw bytes (gRPC without a JSON content type) as a JSON string holding their
//! standard base64 with `isbinary = true`. Our values arrive as bytes without that
//! distinction, so the bytes decide: valid JSON that PostgreSQL can hold is JSON, anything
//! else (plain text, binary) is stored the binary way and read back byte for byte.

use std::error::Error;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// A value ready for the `value` and `isbinary` columns.
#[derive(Debug)]
pub(super) struct Encoded {
    pub json: Bytes,
    pub is_binary: bool,
}

pub(super) fn encode(value: &Bytes) -> Encoded {
    if jsonb_can_hold(value) {
        Encoded {
            json: value.clone(),
            is_binary: false,
        }
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let mut json = BytesMut::with_capacity(b64.len() + 2);
        json.put_u8(b'"');
        json.put_slice(b64.as_bytes());
        json.put_u8(b'"');
        Encoded {
            json: json.freeze(),
            is_binary: true,
        }
    }
}

/// The stored bytes for a row: the base64 payload decoded for binary rows, else the JSON.
pub(super) fn decode(json: &[u8], is_binary: bool) -> Result<Bytes, String> {
    if !is_binary {
        return Ok(compact(json));
    }
    let text: String = serde_json::from_slice(json)
        .map_err(|e| format!("binary value is not a JSON string: {e}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| format!("binary value is not valid base64: {e}"))
}

/// PostgreSQL prints JSONB with a space after `:` and `,`. Apps wrote compact JSON (the API
/// layer stores a JSON value as its compact text), so the whitespace between tokens is
/// removed again; string contents are left alone.
pub(super) fn compact(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out.into()
}

/// Valid JSON in UTF-8 that JSONB accepts. JSONB refuses the NUL character (`\u0000`), and
/// rejects lone surrogate escapes; values with either go the binary way instead of failing.
fn jsonb_can_hold(value: &[u8]) -> bool {
    if std::str::from_utf8(value).is_err() {
        return false;
    }
    if memchr_escape(value) {
        // Rare: a full parse checks surrogate pairs and finds decoded NULs.
        return match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(v) => !contains_nul(&v),
            Err(_) => false,
        };
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok()
}

/// Whether the text has any `\u` escape.
fn memchr_escape(value: &[u8]) -> bool {
    value.windows(2).any(|w| w == b"\\u")
}

fn contains_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

/// JSON text sent as a `jsonb` parameter (binary format: version byte 1, then the text), so
/// a large value is not parsed into a tree on our side.
#[derive(Debug)]
pub(super) struct JsonbText<'a>(pub &'a [u8]);

impl ToSql for JsonbText<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// A `jsonb` column read as its text.
#[derive(Debug)]
pub(super) struct RawJsonb<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawJsonb<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(Self(text)),
            _ => Err("unsupported jsonb wire format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

/// PostgreSQL's `xid`, the type of the `xmin` system column daprd uses as the etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Xid(pub u32);

impl ToSql for Xid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u32(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Xid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 4] = raw.try_into().map_err(|_| "xid must be 4 bytes")?;
        Ok(Self(u32::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID
    }
}

/// daprd's etag check: `strconv.ParseUint(etag, 10, 32)`, so only plain decimal digits that
/// fit in 32 bits name an `xid`. Anything else is an invalid etag, not a mismatch.
pub(super) fn parse_etag(etag: &str) -> Result<Xid, String> {
    if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{etag:?} is not a PostgreSQL etag (a 32-bit number)"
        ));
    }
    etag.parse::<u32>()
        .map(Xid)
        .map_err(|_| format!("{etag:?} is not a PostgreSQL etag (a 32-bit number)"))
}
