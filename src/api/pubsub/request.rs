//! What single and bulk publish read from the request alike: the pubsub and topic from the
//! path, the body within the size limit, the content type, the `metadata.*` query parameters
//! and the W3C trace context. Extracted in the order axum ran the separate extractors, so the
//! same malformed request is refused the same way.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};

use super::super::state::body::{read, UrlParams};
use super::super::ApiState;
use super::errors;
use crate::pubsub::{PublishError, TraceContext};

/// A publish request before its body is interpreted.
pub(super) struct PublishRequest {
    pub pubsub: String,
    /// Empty when the route has no topic segment; the pubsub layer answers "topic is empty".
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
    pub trace: TraceContext,
}

impl FromRequest<Arc<ApiState>> for PublishRequest {
    type Rejection = Response;

    async fn from_request(req: Request, api: &Arc<ApiState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        // One extractor for the routes with and without `{*topic}`.
        let Path(mut names) = Path::<HashMap<String, String>>::from_request_parts(&mut parts, api)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(params) = Query::<Vec<(String, String)>>::from_request_parts(&mut parts, api)
            .await
            .map_err(IntoResponse::into_response)?;
        let data = read(body, api.max_body)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            pubsub: names.remove("pubsub").unwrap_or_default(),
            topic: names.remove("topic").unwrap_or_default(),
            data,
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            metadata: UrlParams::new(params).metadata,
            trace: trace_context(&parts.headers),
        })
    }
}

/// The answer to a publish call, except a bulk call's partial failure, which the bulk handler
/// answers itself.
pub(super) fn reply(result: Result<(), PublishError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => errors::api_error(err).into_response(),
    }
}

/// The W3C trace context the request came with.
fn trace_context(headers: &HeaderMap) -> TraceContext {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    TraceContext {
        traceparent: get("traceparent"),
        tracestate: get("tracestate"),
    }
}
