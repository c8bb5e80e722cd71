//! Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`) on `--dapr-grpc-port`. One file per building
//! block translates protobuf into calls on the same entry points the HTTP API uses; `server`
//! puts the service, reflection and the fallback for other services behind one edge (API
//! token, message size, metrics) and serves it.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::ApiState;
use crate::proto::common::InvokeResponse;
use crate::proto::runtime::dapr_server::Dapr;
use crate::proto::runtime::{
    BulkPublishRequest, BulkPublishResponse, DeleteBulkStateRequest, DeleteStateRequest,
    ExecuteStateTransactionRequest, GetBulkStateRequest, GetBulkStateResponse, GetMetadataRequest,
    GetMetadataResponse, GetStateRequest, GetStateResponse, InvokeServiceRequest,
    PublishEventRequest, QueryStateRequest, QueryStateResponse, SaveStateRequest,
    SetMetadataRequest, ShutdownRequest, SubscribeTopicEventsRequestAlpha1,
};

mod errors;
mod invoke;
mod metadata;
mod pubsub;
mod server;
mod state;
mod subscribe_stream;

pub use server::{router, serve, unknown_service, GrpcSettings};
pub use subscribe_stream::{StreamingSubscription, StreamingSubscriptions};

/// The `Dapr` service over the sidecar's building blocks.
#[derive(Clone)]
pub struct DaprApi {
    api: Arc<ApiState>,
}

impl DaprApi {
    pub fn new(api: Arc<ApiState>) -> Self {
        Self { api }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn empty(result: Result<(), Status>) -> Reply<()> {
    result.map(Response::new)
}

#[tonic::async_trait]
impl Dapr for DaprApi {
    async fn invoke_service(&self, req: Request<InvokeServiceRequest>) -> Reply<InvokeResponse> {
        invoke::invoke(&self.api, req).await
    }

    async fn get_state(&self, req: Request<GetStateRequest>) -> Reply<GetStateResponse> {
        state::get(&self.api, req).await
    }

    async fn get_bulk_state(
        &self,
        req: Request<GetBulkStateRequest>,
    ) -> Reply<GetBulkStateResponse> {
        state::bulk_get(&self.api, req).await
    }

    async fn save_state(&self, req: Request<SaveStateRequest>) -> Reply<()> {
        empty(state::save(&self.api, req).await)
    }

    async fn query_state_alpha1(
        &self,
        req: Request<QueryStateRequest>,
    ) -> Reply<QueryStateResponse> {
        state::query(&self.api, req).await
    }

    async fn delete_state(&self, req: Request<DeleteStateRequest>) -> Reply<()> {
        empty(state::delete(&self.api, req).await)
    }

    async fn delete_bulk_state(&self, req: Request<DeleteBulkStateRequest>) -> Reply<()> {
        empty(state::bulk_delete(&self.api, req).await)
    }

    async fn execute_state_transaction(
        &self,
        req: Request<ExecuteStateTransactionRequest>,
    ) -> Reply<()> {
        empty(state::transaction(&self.api, req).await)
    }

    async fn publish_event(&self, req: Request<PublishEventRequest>) -> Reply<()> {
        empty(pubsub::publish(&self.api, req).await)
    }

    async fn bulk_publish_event_alpha1(
        &self,
        req: Request<BulkPublishRequest>,
    ) -> Reply<BulkPublishResponse> {
        pubsub::bulk_publish(&self.api, req).await
    }

    async fn bulk_publish_event(
        &self,
        req: Request<BulkPublishRequest>,
    ) -> Reply<BulkPublishResponse> {
        pubsub::bulk_publish(&self.api, req).await
    }

    type SubscribeTopicEventsAlpha1Stream = subscribe_stream::EventStream;

    async fn subscribe_topic_events_alpha1(
        &self,
        req: Request<Streaming<SubscribeTopicEventsRequestAlpha1>>,
    ) -> Reply<Self::SubscribeTopicEventsAlpha1Stream> {
        subscribe_stream::subscribe(self.api.clone(), req).await
    }

    async fn get_metadata(&self, _: Request<GetMetadataRequest>) -> Reply<GetMetadataResponse> {
        Ok(Response::new(metadata::get(&self.api)))
    }

    async fn set_metadata(&self, req: Request<SetMetadataRequest>) -> Reply<()> {
        let req = req.into_inner();
        metadata::set_metadata(&self.api, req.key, req.value);
        Ok(Response::new(()))
    }

    async fn shutdown(&self, _: Request<ShutdownRequest>) -> Reply<()> {
        metadata::shutdown(&self.api);
        Ok(Response::new(()))
    }
}
