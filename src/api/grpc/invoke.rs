//! `InvokeService`: the deprecated unary invocation RPC, translated into the same [`Call`] the
//! HTTP invoke route builds, with `http_extension` giving the verb and query string.

use std::collections::HashMap;

use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use prost_types::Any;
use tonic::metadata::{KeyAndValueRef, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetail, ErrorInfo, StatusExt};

use super::super::error::ApiError;
use super::super::invoke::{invoke_error, parse_target};
use super::super::ApiState;
use super::errors::{from_app_http_status, status};
use crate::invoke::headers::strip_hop_by_hop;
use crate::invoke::Call;
use crate::proto::common::{http_extension::Verb, InvokeResponse};
use crate::proto::runtime::InvokeServiceRequest;

/// The header daprd adds with the app's HTTP status.
const HTTP_STATUS_METADATA: &str = "dapr-http-status";

pub(super) async fn invoke(
    api: &ApiState,
    req: Request<InvokeServiceRequest>,
) -> Result<Response<InvokeResponse>, Status> {
    let (metadata, _, req) = req.into_parts();
    if req.id.is_empty() {
        return Err(status(ApiError::no_app_id()));
    }
    let target = parse_target(&req.id, &api.namespace)
        .map_err(|e| status(ApiError::direct_invoke(&req.id, e)))?;
    let message = req.message.unwrap_or_default();
    let extension = message.http_extension.unwrap_or_default();
    let mut headers = forwarded_headers(&metadata);
    if let Ok(ct) = HeaderValue::from_str(&message.content_type) {
        if !message.content_type.is_empty() {
            headers.insert(CONTENT_TYPE, ct);
        }
    }
    let call = Call {
        method: message.method,
        verb: verb(extension.verb),
        query: extension.querystring,
        headers,
        body: Body::from(message.data.map(|d| d.value).unwrap_or_default()),
    };
    let res = api
        .invoker
        .invoke(&target, call)
        .await
        .map_err(|e| status(invoke_error(&target.app_id, e, api.max_body)))?;
    let code = res.status().as_u16();
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limit = usize::try_from(api.max_body).unwrap_or(usize::MAX);
    let data = Limited::new(res.into_body(), limit)
        .collect()
        .await
        .map_err(|e| status(ApiError::direct_invoke(&target.app_id, e)))?
        .to_bytes();
    let grpc_code = from_app_http_status(code);
    if grpc_code != Code::Ok {
        return Err(app_error(grpc_code, code, &data));
    }
    let mut reply = Response::new(InvokeResponse {
        data: Some(Any {
            type_url: String::new(),
            value: data.into(),
        }),
        content_type,
    });
    reply
        .metadata_mut()
        .insert(HTTP_STATUS_METADATA, MetadataValue::from(code));
    Ok(reply)
}

/// daprd's answer when the app answered a non-2xx status: the status text as message and an
/// `ErrorInfo` carrying the HTTP code and the app's body.
fn app_error(code: Code, http_status: u16, body: &[u8]) -> Status {
    let text = http::StatusCode::from_u16(http_status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default();
    let mut metadata = HashMap::from([("http.code".to_owned(), http_status.to_string())]);
    if !body.is_empty() {
        metadata.insert(
            "http.error_message".to_owned(),
            String::from_utf8_lossy(body).into_owned(),
        );
    }
    let mut status = Status::with_error_details_vec(
        code,
        text,
        [ErrorDetail::ErrorInfo(ErrorInfo::new(
            text, "dapr.io", metadata,
        ))],
    );
    status
        .metadata_mut()
        .insert(HTTP_STATUS_METADATA, MetadataValue::from(http_status));
    status
}

/// An unset verb is POST, as daprd's HTTP channel sends it.
fn verb(value: i32) -> Method {
    match Verb::try_from(value).unwrap_or(Verb::None) {
        Verb::Get => Method::GET,
        Verb::Head => Method::HEAD,
        Verb::Put => Method::PUT,
        Verb::Delete => Method::DELETE,
        Verb::Connect => Method::CONNECT,
        Verb::Options => Method::OPTIONS,
        Verb::Trace => Method::TRACE,
        Verb::Patch => Method::PATCH,
        Verb::None | Verb::Post => Method::POST,
    }
}

/// The caller's gRPC metadata becomes HTTP headers for the app, as in daprd; gRPC's own
/// transport headers are not the app's business.
fn forwarded_headers(metadata: &MetadataMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for entry in metadata.iter() {
        let KeyAndValueRef::Ascii(key, value) = entry else {
            continue;
        };
        let name = key.as_str();
        if name.starts_with("grpc-") || name == "te" || name == "content-type" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_encoded_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    strip_hop_by_hop(&mut headers);
    headers
}
