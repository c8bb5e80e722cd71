//! `POST|PUT /v1.0/publish/{pubsub}/{topic...}` and bulk publish: HTTP in, [`PubSubs`] calls
//! out. The topic is the rest of the path, so it may contain `/`.
//!
//! [`PubSubs`]: crate::pubsub::PubSubs

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Router;
use http::{header, HeaderMap, StatusCode};

use super::state::body::{read, UrlParams};
use super::ApiState;
use crate::pubsub::{PublishCall, TraceContext};

mod bulk;
pub(super) mod errors;

type Params = Query<Vec<(String, String)>>;

pub fn routes() -> Router<Arc<ApiState>> {
    let bulk = || post(bulk::publish).put(bulk::publish);
    let bulk_no_topic = || post(bulk::publish_no_topic).put(bulk::publish_no_topic);
    Router::new()
        .route("/v1.0/publish/{pubsub}/{*topic}", both(publish))
        // chi's wildcard also matches nothing: these answer "topic is empty".
        .route("/v1.0/publish/{pubsub}", both(publish_no_topic))
        .route("/v1.0/publish/{pubsub}/", both(publish_no_topic))
        .route("/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}", bulk())
        .route("/v1.0/publish/bulk/{pubsub}/{*topic}", bulk())
        .route("/v1.0-alpha1/publish/bulk/{pubsub}", bulk_no_topic())
        .route("/v1.0/publish/bulk/{pubsub}", bulk_no_topic())
}

fn both<H, T>(handler: H) -> MethodRouter<Arc<ApiState>>
where
    H: axum::handler::Handler<T, Arc<ApiState>> + Clone,
    T: 'static,
{
    post(handler.clone()).put(handler)
}

/// The W3C trace context the request came with.
pub(super) fn trace_context(headers: &HeaderMap) -> TraceContext {
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

async fn publish(
    api: State<Arc<ApiState>>,
    Path((pubsub, topic)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    publish_to(api, pubsub, topic, params, headers, body).await
}

async fn publish_no_topic(
    api: State<Arc<ApiState>>,
    Path(pubsub): Path<String>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    publish_to(api, pubsub, String::new(), params, headers, body).await
}

async fn publish_to(
    State(api): State<Arc<ApiState>>,
    pubsub: String,
    topic: String,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let data = match read(body, api.max_body).await {
        Ok(data) => data,
        Err(err) => return err.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let call = PublishCall {
        pubsub,
        topic,
        data,
        content_type,
        metadata: UrlParams::new(params).metadata,
        trace: trace_context(&headers),
    };
    match api.pubsubs.publish(call).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => errors::api_error(err).into_response(),
    }
}
