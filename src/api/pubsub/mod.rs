//! `POST|PUT /v1.0/publish/{pubsub}/{topic...}` and bulk publish: HTTP in, [`PubSubs`] calls
//! out. The topic is the rest of the path, so it may contain `/`.
//!
//! [`PubSubs`]: crate::pubsub::PubSubs

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use axum::Router;

use super::ApiState;
use crate::pubsub::PublishCall;
use request::PublishRequest;

mod bulk;
pub(super) mod errors;
mod request;

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1.0/publish/{pubsub}/{*topic}", both(publish))
        // chi's wildcard also matches nothing: these answer "topic is empty".
        .route("/v1.0/publish/{pubsub}", both(publish))
        .route("/v1.0/publish/{pubsub}/", both(publish))
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            both(bulk::publish),
        )
        .route("/v1.0/publish/bulk/{pubsub}/{*topic}", both(bulk::publish))
        .route("/v1.0-alpha1/publish/bulk/{pubsub}", both(bulk::publish))
        .route("/v1.0/publish/bulk/{pubsub}", both(bulk::publish))
}

fn both<H, T>(handler: H) -> MethodRouter<Arc<ApiState>>
where
    H: axum::handler::Handler<T, Arc<ApiState>> + Clone,
    T: 'static,
{
    post(handler.clone()).put(handler)
}

async fn publish(State(api): State<Arc<ApiState>>, req: PublishRequest) -> Response {
    let call = PublishCall {
        pubsub: req.pubsub,
        topic: req.topic,
        data: req.data,
        content_type: req.content_type,
        metadata: req.metadata,
        trace: req.trace,
    };
    request::reply(api.pubsubs.publish(call).await)
}
