//! Request bodies and query strings of the state routes, decoded the way daprd's Go structs
//! decode: field names match case-insensitively, `null` is the zero value, and a `value` keeps
//! the app's JSON text, sliced from the request body without a copy.

use std::collections::HashMap;

use axum::body::Body;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::super::error::ApiError;
use crate::state::{BulkGet, SaveState, StateOptions, TransactionOperation, Value};

const METADATA_PREFIX: &str = "metadata.";

/// A JSON object whose fields are read on demand, matching names as Go's `encoding/json` does
/// (exact match first, then ignoring ASCII case).
#[derive(Deserialize)]
#[serde(transparent)]
struct Fields<'a>(#[serde(borrow)] HashMap<String, &'a RawValue>);

impl<'a> Fields<'a> {
    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied().or_else(|| {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        })
    }

    /// The field decoded as `T`; absent and `null` are both `None`.
    fn get<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, String> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Option<T>>(raw.get())
                .map_err(|e| format!("field {name:?}: {e}")),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        Ok(self.get::<String>(name)?.unwrap_or_default())
    }
}

/// The query string of a state call: `metadata.<k>` entries (first value of each key wins, as
/// in daprd) and the other parameters.
#[derive(Debug, Default)]
pub(in crate::api) struct UrlParams {
    pub metadata: HashMap<String, String>,
    params: Vec<(String, String)>,
}

impl UrlParams {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut metadata = HashMap::new();
        let mut params = Vec::new();
        for (k, v) in pairs {
            match k.strip_prefix(METADATA_PREFIX) {
                Some(name) => {
                    metadata.entry(name.to_owned()).or_insert(v);
                }
                None => params.push((k, v)),
            }
        }
        Self { metadata, params }
    }

    /// The first value of a plain parameter, or empty.
    pub fn param(&self, name: &str) -> String {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Reads the whole body. The edge already bounds it by `--max-body-size`; running past that
/// limit mid-stream is the same 413 the edge gives for a declared length.
pub(in crate::api) async fn read(body: Body, max_body: u64) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|err| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = cause {
            if e.is::<http_body_util::LengthLimitError>() {
                return ApiError::body_too_large(max_body);
            }
            cause = e.source();
        }
        ApiError::body_read(err)
    })
}

/// `POST /v1.0/state/{store}`: a JSON array of items; URL metadata is merged into each item's
/// metadata, the URL winning. daprd answers a decode failure with the bare decoder message.
pub(super) fn save_items(
    body: &Bytes,
    url_metadata: &HashMap<String, String>,
) -> Result<Vec<SaveState>, ApiError> {
    let items: Vec<Fields<'_>> =
        serde_json::from_slice(body).map_err(|e| ApiError::malformed_request(e.to_string()))?;
    items
        .iter()
        .map(|fields| item(body, fields, url_metadata))
        .collect::<Result<_, _>>()
        .map_err(ApiError::malformed_request)
}

/// `POST /v1.0/state/{store}/bulk`.
pub(super) fn bulk_get(
    body: &Bytes,
    url_metadata: &HashMap<String, String>,
) -> Result<BulkGet, ApiError> {
    let decode = || -> Result<BulkGet, String> {
        let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(BulkGet {
            keys: fields.get("keys")?.unwrap_or_default(),
            parallelism: fields.get("parallelism")?.unwrap_or_default(),
            metadata: merged(fields.get("metadata")?, url_metadata),
        })
    };
    decode().map_err(deserializing)
}

/// `POST /v1.0/state/{store}/transaction`: the operations and the request-level metadata.
/// URL metadata is merged into both, the URL winning.
pub(super) fn transaction(
    body: &Bytes,
    url_metadata: &HashMap<String, String>,
) -> Result<(Vec<TransactionOperation>, HashMap<String, String>), ApiError> {
    let decode = || -> Result<_, String> {
        let fields: Fields<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let ops: Vec<Fields<'_>> = fields.get("operations")?.unwrap_or_default();
        let ops = ops
            .iter()
            .map(|op| {
                let request: Fields<'_> =
                    op.get("request")?.unwrap_or_else(|| Fields(HashMap::new()));
                Ok(TransactionOperation {
                    operation: op.string("operation")?,
                    request: item(body, &request, url_metadata)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((ops, merged(fields.get("metadata")?, url_metadata)))
    };
    decode().map_err(deserializing)
}

/// daprd's `ErrMalformedRequest` wording for bodies other than a save.
fn deserializing(err: String) -> ApiError {
    ApiError::malformed_request(format!("failed deserializing HTTP body: {err}"))
}

/// One state item (`key`, `value`, `etag`, `metadata`, `options`).
fn item(
    body: &Bytes,
    fields: &Fields<'_>,
    url_metadata: &HashMap<String, String>,
) -> Result<SaveState, String> {
    let options: Option<Fields<'_>> = fields.get("options")?;
    let options = match options {
        Some(o) => StateOptions {
            concurrency: o.string("concurrency")?,
            consistency: o.string("consistency")?,
        },
        None => StateOptions::default(),
    };
    // daprd accepts `contentType` on HTTP items but no store reads it there; check its type.
    fields.get::<String>("contentType")?;
    let value = match fields.get::<&RawValue>("value")? {
        Some(raw) => Value::Json(slice_of(body, raw.get().as_bytes())),
        None => Value::null(),
    };
    Ok(SaveState {
        key: fields.string("key")?,
        value,
        etag: fields.get("etag")?,
        metadata: merged(fields.get("metadata")?, url_metadata),
        options,
    })
}

fn merged(
    own: Option<HashMap<String, String>>,
    url: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut metadata = own.unwrap_or_default();
    metadata.extend(url.iter().map(|(k, v)| (k.clone(), v.clone())));
    metadata
}

/// `part` as a view into `body` when it lies inside it (always, for values decoded from the
/// body), else a copy.
fn slice_of(body: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    if start <= body.len() && part.len() <= body.len() - start {
        body.slice(start..start + part.len())
    } else {
        Bytes::copy_from_slice(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_decode_case_insensitively_and_keep_value_text() {
        let body = Bytes::from_static(
            br#"[{"Key":"a","VALUE":{"x": 1},"Etag":"e","Options":{"CONCURRENCY":"first-write"},"metadata":{"ttlInSeconds":"5","k":"own"}},{"key":"b"}]"#,
        );
        let url = HashMap::from([("k".to_owned(), "url".to_owned())]);
        let items = save_items(&body, &url).unwrap();
        assert_eq!(items[0].key, "a");
        assert_eq!(
            items[0].value,
            Value::Json(Bytes::from_static(br#"{"x": 1}"#))
        );
        assert_eq!(items[0].etag.as_deref(), Some("e"));
        assert_eq!(items[0].options.concurrency, "first-write");
        assert_eq!(items[0].metadata["k"], "url");
        assert_eq!(items[0].metadata["ttlInSeconds"], "5");
        assert_eq!(items[1].value, Value::null());
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for bad in [
            &b"{"[..],
            b"{}",
            br#"[{"key": 5}]"#,
            br#"[{"metadata": {"a": 1}}]"#,
        ] {
            let err = save_items(&Bytes::from_static(bad), &HashMap::new()).unwrap_err();
            assert_eq!(err.code, "ERR_MALFORMED_REQUEST");
        }
        let err = bulk_get(&Bytes::from_static(b"nope"), &HashMap::new()).unwrap_err();
        assert!(err.message.starts_with("failed deserializing HTTP body: "));
    }

    #[test]
    fn url_metadata_first_value_wins() {
        let p = UrlParams::new(vec![
            ("metadata.a".into(), "1".into()),
            ("metadata.a".into(), "2".into()),
            ("consistency".into(), "strong".into()),
        ]);
        assert_eq!(p.metadata["a"], "1");
        assert_eq!(p.param("consistency"), "strong");
        assert_eq!(p.param("concurrency"), "");
    }
}
