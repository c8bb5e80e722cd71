//! How a saved value becomes stored bytes (reference §2.5): a JSON value is stored as its compact
//! JSON text, bytes stay bytes. Reads return the stored bytes verbatim.

use bytes::Bytes;

use super::StateError;

/// Item metadata that makes gRPC bytes count as JSON.
const CONTENT_TYPE_KEY: &str = "contentType";

/// A value to save, as an API received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Valid JSON text (the HTTP API's `value`); stored compacted.
    Json(Bytes),
    /// Raw bytes (the gRPC API's `value`); stored verbatim unless the item metadata says
    /// `contentType: application/json`, in which case they must be JSON and are compacted.
    Bytes(Bytes),
}

impl Value {
    /// What an absent or `null` HTTP `value` is stored as (daprd marshals a nil `any`).
    pub fn null() -> Self {
        Self::Json(Bytes::from_static(b"null"))
    }

    /// The bytes to store for this value given the item's metadata.
    pub(crate) fn encode(
        self,
        metadata: &std::collections::HashMap<String, String>,
    ) -> Result<Bytes, StateError> {
        match self {
            Self::Json(text) => Ok(compact_json(text)),
            Self::Bytes(raw) if is_json_content_type(metadata) => {
                serde_json::from_slice::<serde::de::IgnoredAny>(&raw).map_err(|e| {
                    StateError::InvalidRequest(format!(
                        "value is not valid JSON although contentType is application/json: {e}"
                    ))
                })?;
                Ok(compact_json(raw))
            }
            Self::Bytes(raw) => Ok(raw),
        }
    }
}

fn is_json_content_type(metadata: &std::collections::HashMap<String, String>) -> bool {
    metadata
        .get(CONTENT_TYPE_KEY)
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"))
}

/// Removes the insignificant whitespace of valid JSON text. Returns the input itself (no copy)
/// when it is already compact, which is the common case for values SDKs serialize.
pub(crate) fn compact_json(text: Bytes) -> Bytes {
    if !has_insignificant_whitespace(&text) {
        return text;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.iter() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !is_json_whitespace(b) {
            out.push(b);
        }
    }
    Bytes::from(out)
}

fn has_insignificant_whitespace(text: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if is_json_whitespace(b) {
            return true;
        }
    }
    false
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn json_is_compacted_outside_strings_only() {
        let text = Bytes::from_static(b" { \"a b\" : [1, 2],\n\"c\":\"x \\\" y\" } ");
        assert_eq!(
            compact_json(text),
            Bytes::from_static(b"{\"a b\":[1,2],\"c\":\"x \\\" y\"}")
        );
    }

    #[test]
    fn compact_json_is_returned_without_copy() {
        let text = Bytes::from(b"{\"a\":\"b c\"}".to_vec());
        let ptr = text.as_ptr();
        assert_eq!(compact_json(text).as_ptr(), ptr);
    }

    #[test]
    fn bytes_stay_bytes_unless_declared_json() {
        let none = HashMap::new();
        let raw = Bytes::from_static(b"  not json ");
        assert_eq!(Value::Bytes(raw.clone()).encode(&none).unwrap(), raw);
        let json = HashMap::from([(
            "contentType".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        )]);
        assert_eq!(
            Value::Bytes(Bytes::from_static(b"{ \"a\": 1 }"))
                .encode(&json)
                .unwrap(),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert!(Value::Bytes(raw).encode(&json).is_err());
    }
}
