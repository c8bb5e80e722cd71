//! The pub/sub building block. [`PubSub`] is what a broker implements (memory, Redis Streams,
//! NATS JetStream): publish bytes to a topic, and run a consumer that hands each message to a
//! [`Handler`] and acks it only when the handler succeeded. Envelopes (CloudEvents), routing and
//! delivery to the app live above the broker and are written once for all of them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod cloudevent;
mod error;
mod factory;
pub mod jetstream;
pub mod memory;
mod publish;
pub mod redis;
pub mod registry;
pub mod routing;
pub mod scopes;
pub mod subscriber;

pub use cloudevent::TraceContext;
pub use error::PubSubError;
pub use factory::{open, OpenError};
pub use publish::{BulkEntry, BulkPublishCall, FailedEntry, PublishCall, PublishError};
pub use registry::{InitError, PubSubComponent, PubSubs, PubSubsContext};
pub use scopes::TopicScopes;

/// What a broker can do, as daprd reports it in metadata (`capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// The broker expires messages itself (`ttlInSeconds`), so no `expiration` is stamped.
    MessageTtl,
    SubscribeWildcards,
    BulkPublish,
}

impl Feature {
    /// daprd's feature string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageTtl => "MESSAGE_TTL",
            Self::SubscribeWildcards => "SUBSCRIBE_WILDCARDS",
            Self::BulkPublish => "BULK_PUBSUB",
        }
    }
}

/// One message to publish. `data` is what goes on the wire (usually a CloudEvent JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// Request metadata (`metadata.*`), passed to the broker; brokers carry what they can.
    pub metadata: HashMap<String, String>,
}

/// A consumer to start on one topic.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    /// Subscription metadata (from the Subscription / `/dapr/subscribe` item).
    pub metadata: HashMap<String, String>,
    /// How many messages may be with the handler at once.
    pub max_concurrency: usize,
}

/// One message as received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// Broker metadata carried with the message (e.g. the publish metadata, a message id).
    pub metadata: HashMap<String, String>,
}

/// The handler refused the message: it stays unacked and the broker redelivers it later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message not processed: {0}")]
pub struct Nack(pub String);

/// Called once per delivered message. `Ok` acks it; `Err` leaves it for redelivery.
pub type Handler = Arc<dyn Fn(Message) -> BoxFuture<'static, Result<(), Nack>> + Send + Sync>;

/// A running consumer. Dropping it does not stop it; call [`Subscription::stop`].
#[derive(Debug)]
pub struct Subscription {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Subscription {
    /// `task` must stop fetching when `stop` fires, let the handler calls already started finish
    /// (acking or nacking each), and then return.
    pub fn new(stop: CancellationToken, task: JoinHandle<()>) -> Self {
        Self { stop, task }
    }

    /// Stops fetching, waits for in-flight messages to be settled, and returns. Anything not
    /// acked stays with the broker for redelivery.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A broker. Publishing must fail fast when the broker is away; consumers must reconnect by
/// themselves and resume where they left off.
pub trait PubSub: Send + Sync + 'static {
    /// The daprd component type, e.g. `pubsub.redis`.
    fn type_name(&self) -> &'static str;

    fn features(&self) -> &'static [Feature];

    fn publish(&self, req: PublishRequest) -> BoxFuture<'_, Result<(), PubSubError>>;

    /// Publishes several messages; the default publishes them one by one and reports the
    /// index and error of each one that failed.
    fn bulk_publish(&self, reqs: Vec<PublishRequest>) -> BoxFuture<'_, Vec<(usize, PubSubError)>> {
        Box::pin(async move {
            let mut failed = Vec::new();
            for (i, req) in reqs.into_iter().enumerate() {
                if let Err(err) = self.publish(req).await {
                    failed.push((i, err));
                }
            }
            failed
        })
    }

    /// Starts a consumer for `req.topic` that calls `handler` for each message.
    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>>;

    /// Releases connections and background tasks.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
