//! One error type for the app-facing API: Dapr's `errorCode`, message and HTTP status, rendered
//! as `{"errorCode": "...", "message": "..."}` exactly as daprd does.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// An error answered to the app, in daprd's legacy `APIError` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
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

    /// The JSON body, built without a serializer round trip for the two fixed keys.
    pub fn body(&self) -> String {
        serde_json::json!({ "errorCode": self.code, "message": self.message }).to_string()
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
}
