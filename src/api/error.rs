//! One error type for the app-facing API: Dapr's `errorCode`, message and HTTP status, rendered
//! as `{"errorCode": "...", "message": "..."}` exactly as daprd does, plus the `details` list of
//! daprd's rich errors (dapr/kit `errors`) when an error carries any.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// An error answered to the app: daprd's legacy `APIError` shape when `details` is empty, its
/// rich error shape otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `google.rpc` error details, in the order daprd adds them.
    pub details: Vec<ErrorDetail>,
}

/// One `google.rpc` error detail as dapr/kit renders it in JSON: `@type` plus snake-case fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    /// `domain` is always `dapr.io`. `metadata: None` renders as `null`, as Go does for a nil map.
    ErrorInfo {
        reason: String,
        metadata: Option<BTreeMap<String, String>>,
    },
    ResourceInfo {
        resource_type: String,
        resource_name: String,
        owner: String,
        description: String,
    },
    /// `(field, description)` pairs.
    BadRequest {
        field_violations: Vec<(String, String)>,
    },
    /// `(url, description)` pairs.
    Help { links: Vec<(String, String)> },
}

const TYPE_PREFIX: &str = "type.googleapis.com/google.rpc.";
const DOMAIN: &str = "dapr.io";

impl ErrorDetail {
    /// dapr/kit builds each detail as a Go map, so keys come out sorted; serde_json's map is
    /// sorted too.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::ErrorInfo { reason, metadata } => json!({
                "@type": format!("{TYPE_PREFIX}ErrorInfo"),
                "domain": DOMAIN,
                "metadata": metadata,
                "reason": reason,
            }),
            Self::ResourceInfo {
                resource_type,
                resource_name,
                owner,
                description,
            } => json!({
                "@type": format!("{TYPE_PREFIX}ResourceInfo"),
                "description": description,
                "owner": owner,
                "resource_name": resource_name,
                "resource_type": resource_type,
            }),
            // The nested messages are Go structs, so their fields keep declaration order.
            Self::BadRequest { field_violations } => json!({
                "@type": format!("{TYPE_PREFIX}BadRequest"),
                "field_violations": field_violations
                    .iter()
                    .map(|(field, description)| FieldViolation { field, description })
                    .collect::<Vec<_>>(),
            }),
            Self::Help { links } => json!({
                "@type": format!("{TYPE_PREFIX}Help"),
                "links": links
                    .iter()
                    .map(|(url, description)| HelpLink { description, url })
                    .collect::<Vec<_>>(),
            }),
        }
    }
}

#[derive(Serialize)]
struct FieldViolation<'a> {
    field: &'a str,
    description: &'a str,
}

#[derive(Serialize)]
struct HelpLink<'a> {
    description: &'a str,
    url: &'a str,
}

/// dapr/kit's `ErrorJSON`: a Go struct, so the keys keep this order.
#[derive(Serialize)]
struct RichBody<'a> {
    #[serde(rename = "errorCode")]
    error_code: &'a str,
    message: &'a str,
    details: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The same error with rich details.
    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.details = details;
        self
    }

    /// `ERR_DIRECT_INVOKE` 404: neither the path nor the headers name a target app.
    pub fn no_app_id() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ERR_DIRECT_INVOKE",
            "failed getting app id either from the URL path or the header dapr-app-id",
        )
    }

    /// `ERR_DIRECT_INVOKE` 500 (or 403 when the callee refused the caller).
    pub fn direct_invoke(app_id: &str, err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_DIRECT_INVOKE",
            format!("failed to invoke, id: {app_id}, err: {err}"),
        )
    }

    pub fn malformed_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", message)
    }

    pub fn bad_request(err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            format!("invalid request: {err}"),
        )
    }

    /// 413 with daprd's body-read code: the body is larger than `--max-body-size`.
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_READ",
            format!(
                "failed to read request body: request body exceeds the limit of {limit} bytes set by --max-body-size"
            ),
        )
    }

    pub fn body_read(err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ERR_BODY_READ",
            format!("failed to read request body: {err}"),
        )
    }

    pub fn health_not_ready(targets: &[&str]) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_NOT_READY",
            format!("dapr is not ready: [{}]", targets.join(" ")),
        )
    }

    pub fn health_app_id_mismatch() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_HEALTH_APPID_NOT_MATCH",
            "dapr app-id does not match",
        )
    }

    pub fn outbound_not_ready() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_OUTBOUND_HEALTH_NOT_READY",
            "dapr outbound is not ready",
        )
    }

    /// The JSON body: exactly `errorCode` and `message` for legacy errors, plus `details` for
    /// rich ones.
    pub fn body(&self) -> String {
        if self.details.is_empty() {
            return serde_json::json!({ "errorCode": self.code, "message": self.message })
                .to_string();
        }
        let rich = RichBody {
            error_code: self.code,
            message: &self.message,
            details: self.details.iter().map(ErrorDetail::to_json).collect(),
        };
        // Serializing strings and maps of strings cannot fail.
        serde_json::to_string(&rich).unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, self.body()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// daprd's answer to a missing or wrong `dapr-api-token`: Go's `http.Error`, plain text.
pub fn invalid_api_token() -> Response {
    let mut res = (StatusCode::UNAUTHORIZED, "invalid api token\n").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_exactly_daprd_keys() {
        let v: serde_json::Value = serde_json::from_str(&ApiError::no_app_id().body()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert_eq!(obj["errorCode"], "ERR_DIRECT_INVOKE");
        assert_eq!(
            obj["message"],
            "failed getting app id either from the URL path or the header dapr-app-id"
        );
    }

    #[test]
    fn rich_body_matches_dapr_kit() {
        let err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
            "state store mystore is not found",
        )
        .with_details(vec![ErrorDetail::ErrorInfo {
            reason: "DAPR_STATE_NOT_FOUND".into(),
            metadata: Some(BTreeMap::from([("appID".into(), "myapp".into())])),
        }]);
        assert_eq!(
            err.body(),
            r#"{"errorCode":"ERR_STATE_STORE_NOT_FOUND","message":"state store mystore is not found","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":{"appID":"myapp"},"reason":"DAPR_STATE_NOT_FOUND"}]}"#
        );
        let bad = ApiError::new(StatusCode::BAD_REQUEST, "X", "m").with_details(vec![
            ErrorDetail::BadRequest {
                field_violations: vec![("k".into(), "why".into())],
            },
            ErrorDetail::Help {
                links: vec![("https://u".into(), "d".into())],
            },
            ErrorDetail::ErrorInfo {
                reason: "R".into(),
                metadata: None,
            },
        ]);
        let v: serde_json::Value = serde_json::from_str(&bad.body()).unwrap();
        assert_eq!(v["details"][0]["field_violations"][0]["field"], "k");
        assert_eq!(v["details"][1]["links"][0]["url"], "https://u");
        assert!(v["details"][2]["metadata"].is_null());
    }
}
