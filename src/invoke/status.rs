//! The response head as daprd carries it (`InternalInvokeResponse`) and as HTTP sees it.

use std::collections::HashMap;

use axum::body::Body;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};

use super::headers::{strip_hop_by_hop, to_metadata};
use crate::app_channel::grpc::status_json;
use crate::app_channel::AppGrpcStatus;
use crate::proto::common::InvokeResponse;
use crate::proto::internals::{InternalInvokeResponse, ListStringValue, Status};

/// An app's HTTP answer as the head of an `InternalInvokeResponse` (its body travels apart).
pub fn head_from_http(status: StatusCode, headers: &HeaderMap) -> InternalInvokeResponse {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut headers = headers.clone();
    strip_hop_by_hop(&mut headers);
    InternalInvokeResponse {
        status: Some(Status {
            code: i32::from(status.as_u16()),
            message: String::new(),
            details: Vec::new(),
        }),
        headers: to_metadata(&headers),
        trailers: HashMap::new(),
        message: Some(InvokeResponse {
            data: None,
            content_type,
        }),
    }
}

/// The HTTP status and headers for a peer's `InternalInvokeResponse`. Codes below 100 are gRPC
/// codes (the callee app speaks gRPC) and are mapped as daprd's `HTTPStatusFromCode` does.
pub fn head_to_http(head: &mut InternalInvokeResponse) -> (StatusCode, HeaderMap) {
    let code = head.status.as_ref().map_or(200, |s| s.code);
    let status = if code >= 100 {
        u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        http_status_from_grpc(code)
    };
    let mut headers = HeaderMap::with_capacity(head.headers.len() + 1);
    for (key, ListStringValue { values }) in head.headers.drain() {
        let Ok(name) = HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(name.clone(), v);
            }
        }
    }
    strip_hop_by_hop(&mut headers);
    if !headers.contains_key(CONTENT_TYPE) {
        let ct = head
            .message
            .as_ref()
            .map(|m| m.content_type.as_str())
            .unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(ct) {
            if !ct.is_empty() {
                headers.insert(CONTENT_TYPE, v);
            }
        }
    }
    (status, headers)
}

/// A peer's answer as the HTTP response for the local caller. When the callee app speaks gRPC
/// (code below 100) its status rides along as an [`AppGrpcStatus`] extension, and a failure's
/// body is the status as JSON, as daprd's HTTP API answers; `body` is then dropped unread.
pub fn response_from_head(mut head: InternalInvokeResponse, body: Body) -> Response<Body> {
    let grpc = head.status.clone().filter(|s| s.code < 100);
    let (status, mut headers) = head_to_http(&mut head);
    let body = match &grpc {
        Some(s) if s.code != 0 => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Body::from(status_json(s))
        }
        _ => body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Some(s) = grpc {
        response.extensions_mut().insert(AppGrpcStatus(s));
    }
    response
}

/// grpc-gateway's mapping, which daprd uses for gRPC apps called over HTTP.
pub fn http_status_from_grpc(code: i32) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        1 => StatusCode::REQUEST_TIMEOUT,
        3 | 9 | 11 => StatusCode::BAD_REQUEST,
        4 => StatusCode::GATEWAY_TIMEOUT,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT,
        7 => StatusCode::FORBIDDEN,
        8 => StatusCode::TOO_MANY_REQUESTS,
        12 => StatusCode::NOT_IMPLEMENTED,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        16 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_head_round_trip_keeps_status_headers_and_type() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("x-custom", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let mut head = head_from_http(StatusCode::CREATED, &h);
        assert_eq!(
            head.message.as_ref().unwrap().content_type,
            "application/json"
        );
        let (status, back) = head_to_http(&mut head);
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(back["x-custom"], "1");
        assert_eq!(back[CONTENT_TYPE], "application/json");
        assert!(back.get("transfer-encoding").is_none());
    }

    #[test]
    fn grpc_codes_map_like_daprd() {
        assert_eq!(http_status_from_grpc(5), StatusCode::NOT_FOUND);
        assert_eq!(http_status_from_grpc(7), StatusCode::FORBIDDEN);
        assert_eq!(http_status_from_grpc(14), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status_from_grpc(13), StatusCode::INTERNAL_SERVER_ERROR);
        let mut head = InternalInvokeResponse {
            status: Some(Status {
                code: 3,
                message: "bad".into(),
                details: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(head_to_http(&mut head).0, StatusCode::BAD_REQUEST);
        let res = response_from_head(head, Body::from("ignored"));
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            res.extensions().get::<AppGrpcStatus>().map(|s| s.0.code),
            Some(3)
        );
    }
}
