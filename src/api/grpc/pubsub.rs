//! The publish RPCs: protobuf in, the publishing entry point of [`PubSubs`] out, the same error
//! mapping as the HTTP publish routes.
//!
//! [`PubSubs`]: crate::pubsub::PubSubs

use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::super::pubsub::errors::api_error;
use super::super::ApiState;
use super::errors::status;
use crate::proto::runtime::{
    BulkPublishRequest, BulkPublishResponse, BulkPublishResponseFailedEntry, PublishEventRequest,
};
use crate::pubsub::{BulkEntry, BulkPublishCall, PublishCall, PublishError, TraceContext};

/// The W3C trace context the call came with.
fn trace_context(metadata: &MetadataMap) -> TraceContext {
    let get = |name: &str| {
        metadata
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    TraceContext {
        traceparent: get("traceparent"),
        tracestate: get("tracestate"),
    }
}

pub(super) async fn publish(
    api: &ApiState,
    req: Request<PublishEventRequest>,
) -> Result<(), Status> {
    let trace = trace_context(req.metadata());
    let req = req.into_inner();
    let call = PublishCall {
        pubsub: req.pubsub_name,
        topic: req.topic,
        data: req.data,
        content_type: Some(req.data_content_type).filter(|ct| !ct.is_empty()),
        metadata: req.metadata,
        trace,
    };
    api.pubsubs
        .publish(call)
        .await
        .map_err(|err| status(api_error(err)))
}

/// Entries the broker refused come back in `failedEntries` with an OK status, which is what the
/// SDKs read; an invalid request fails as a whole.
pub(super) async fn bulk_publish(
    api: &ApiState,
    req: Request<BulkPublishRequest>,
) -> Result<Response<BulkPublishResponse>, Status> {
    let trace = trace_context(req.metadata());
    let req = req.into_inner();
    let call = BulkPublishCall {
        pubsub: req.pubsub_name,
        topic: req.topic,
        entries: req
            .entries
            .into_iter()
            .map(|e| BulkEntry {
                entry_id: e.entry_id,
                event: e.event,
                content_type: e.content_type,
                metadata: e.metadata,
            })
            .collect(),
        metadata: req.metadata,
        trace,
    };
    match api.pubsubs.bulk_publish(call).await {
        Ok(()) => Ok(Response::new(BulkPublishResponse::default())),
        Err(PublishError::BulkFailed { failed, .. }) => Ok(Response::new(BulkPublishResponse {
            failed_entries: failed
                .into_iter()
                .map(|f| BulkPublishResponseFailedEntry {
                    entry_id: f.entry_id,
                    error: f.error,
                })
                .collect(),
        })),
        Err(err) => Err(status(api_error(err))),
    }
}
