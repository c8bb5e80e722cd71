//! [`ApiError`] as a gRPC status: daprd's gRPC code for each `errorCode` (reference §2.3) and the
//! same `google.rpc` details the HTTP body carries, encoded in `grpc-status-details-bin` where the
//! SDKs read them.

use std::collections::HashMap;

use http::StatusCode;
use tonic::{Code, Status};
use tonic_types::{
    BadRequest, ErrorDetail as RpcDetail, ErrorInfo, FieldViolation, Help, HelpLink, ResourceInfo,
    StatusExt,
};

use super::super::error::{ApiError, ErrorDetail};

const DOMAIN: &str = "dapr.io";

/// The status for `err`. Errors daprd builds without details (its legacy `APIError`s) carry an
/// `ErrorInfo` whose reason is the `errorCode`, so gRPC callers can tell them apart as HTTP
/// callers can from the body.
pub fn status(err: ApiError) -> Status {
    let code = grpc_code(&err);
    let details: Vec<RpcDetail> = if err.details.is_empty() {
        vec![RpcDetail::ErrorInfo(ErrorInfo::new(
            err.code,
            DOMAIN,
            HashMap::new(),
        ))]
    } else {
        err.details.into_iter().map(rpc_detail).collect()
    };
    Status::with_error_details_vec(code, err.message, details)
}

fn rpc_detail(detail: ErrorDetail) -> RpcDetail {
    match detail {
        ErrorDetail::ErrorInfo { reason, metadata } => RpcDetail::ErrorInfo(ErrorInfo::new(
            reason,
            DOMAIN,
            metadata
                .map(|m| m.into_iter().collect::<HashMap<_, _>>())
                .unwrap_or_default(),
        )),
        ErrorDetail::ResourceInfo {
            resource_type,
            resource_name,
            owner,
            description,
        } => RpcDetail::ResourceInfo(ResourceInfo::new(
            resource_type,
            resource_name,
            owner,
            description,
        )),
        ErrorDetail::BadRequest { field_violations } => RpcDetail::BadRequest(BadRequest::new(
            field_violations
                .into_iter()
                .map(|(field, why)| FieldViolation::new(field, why))
                .collect::<Vec<_>>(),
        )),
        ErrorDetail::Help { links } => RpcDetail::Help(Help::new(
            links
                .into_iter()
                .map(|(url, description)| HelpLink::new(description, url))
                .collect::<Vec<_>>(),
        )),
    }
}

/// The reason of the first `ErrorInfo`, which tells apart errors sharing an `errorCode`.
fn reason(err: &ApiError) -> Option<&str> {
    err.details.iter().find_map(|d| match d {
        ErrorDetail::ErrorInfo { reason, .. } => Some(reason.as_str()),
        _ => None,
    })
}

/// daprd's gRPC code for an error; where daprd picks by cause (etag mismatch, ACL), the HTTP
/// status already says which cause it was.
fn grpc_code(err: &ApiError) -> Code {
    match err.code {
        "ERR_STATE_STORE_NOT_CONFIGURED" | "ERR_PUBSUB_NOT_CONFIGURED" => Code::FailedPrecondition,
        "ERR_STATE_STORE_NOT_FOUND"
        | "ERR_MALFORMED_REQUEST"
        | "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS"
        | "ERR_PUBSUB_EMPTY"
        | "ERR_TOPIC_NAME_EMPTY"
        | "ERR_PUBSUB_REQUEST_METADATA"
        | "ERR_PUBSUB_CLOUD_EVENTS_SER"
        | "ERR_PUBSUB_EVENTS_SER"
        | "ERR_BODY_READ"
        | "ERR_BAD_REQUEST" => Code::InvalidArgument,
        "ERR_PUBSUB_NOT_FOUND" if reason(err) == Some("DAPR_PUBSUB_TEST_NOT_FOUND") => {
            Code::NotFound
        }
        "ERR_PUBSUB_NOT_FOUND" => Code::InvalidArgument,
        "ERR_PUBSUB_FORBIDDEN" => Code::PermissionDenied,
        "ERR_NOT_SUPPORTED_STATE_OPERATION" | "ERR_API_UNIMPLEMENTED" => Code::Unimplemented,
        "ERR_STATE_STORE_NOT_SUPPORTED"
            if reason(err) == Some("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED") =>
        {
            Code::Unimplemented
        }
        "ERR_STATE_SAVE" | "ERR_STATE_DELETE" | "ERR_STATE_BULK_DELETE" => match err.status {
            StatusCode::CONFLICT => Code::Aborted,
            StatusCode::BAD_REQUEST => Code::InvalidArgument,
            _ => Code::Internal,
        },
        "ERR_DIRECT_INVOKE" => match err.status {
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            _ => Code::Internal,
        },
        _ => from_http(err.status),
    }
}

/// The usual HTTP-to-gRPC correspondence, for errors daprd does not map one by one.
fn from_http(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        413 | 429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        s if (200..300).contains(&s) => Code::Ok,
        _ => Code::Internal,
    }
}

/// The code daprd gives an app's HTTP answer to `InvokeService` (`invokev1.CodeFromHTTPStatus`).
pub fn from_app_http_status(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        408 => Code::DeadlineExceeded,
        499 => Code::Cancelled,
        500 => Code::Internal,
        _ => StatusCode::from_u16(status).map_or(Code::Unknown, from_http),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn rich_errors_keep_their_details_in_order() {
        let err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
            "state store s is not found",
        )
        .with_details(vec![
            ErrorDetail::ErrorInfo {
                reason: "DAPR_STATE_NOT_FOUND".into(),
                metadata: Some(BTreeMap::from([("appID".into(), "a".into())])),
            },
            ErrorDetail::ResourceInfo {
                resource_type: "state".into(),
                resource_name: "s".into(),
                owner: String::new(),
                description: String::new(),
            },
        ]);
        let status = status(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "state store s is not found");
        let details = status.get_error_details_vec();
        assert!(matches!(&details[0], RpcDetail::ErrorInfo(i)
            if i.reason == "DAPR_STATE_NOT_FOUND" && i.domain == "dapr.io" && i.metadata["appID"] == "a"));
        assert!(matches!(&details[1], RpcDetail::ResourceInfo(r) if r.resource_name == "s"));
    }

    #[test]
    fn etag_mismatch_is_aborted_with_the_error_code_as_reason() {
        let err = ApiError::new(StatusCode::CONFLICT, "ERR_STATE_SAVE", "m");
        let status = status(err);
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(
            status.get_details_error_info().map(|i| i.reason),
            Some("ERR_STATE_SAVE".to_owned())
        );
    }

    #[test]
    fn codes_follow_daprd() {
        let code = |status, code| grpc_code(&ApiError::new(status, code, ""));
        assert_eq!(
            code(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_STORE_NOT_CONFIGURED"
            ),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(StatusCode::FORBIDDEN, "ERR_PUBSUB_FORBIDDEN"),
            Code::PermissionDenied
        );
        assert_eq!(
            code(StatusCode::BAD_REQUEST, "ERR_STATE_DELETE"),
            Code::InvalidArgument
        );
        assert_eq!(
            code(StatusCode::NOT_FOUND, "ERR_DIRECT_INVOKE"),
            Code::NotFound
        );
        assert_eq!(from_app_http_status(404), Code::NotFound);
        assert_eq!(from_app_http_status(204), Code::Ok);
    }
}
