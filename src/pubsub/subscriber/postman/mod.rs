//! The delivery seam (daprd `pkg/runtime/subscription/postman`): hands one processed message,
//! or a batch of them, to the app and says for each what the app decided. The subscriber does
//! everything before (CloudEvent, expiry, route) and after (ack, redelivery, dead-letter) once
//! for every transport; a postman only speaks the app's protocol. [`HttpPostman`] POSTs to the
//! app's routes; gRPC apps (`AppCallback.OnTopicEvent`) and streaming subscriptions get postmen
//! of their own behind the same trait.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

pub(super) mod grpc;
mod http;

pub use self::grpc::GrpcPostman;
pub use self::http::HttpPostman;

/// What the app decided for one message (or one bulk entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Processed: ack it.
    Success,
    /// Redeliver (daprd: retriable error). The string says why, for logs.
    Retry(String),
    /// Do not redeliver: ack it, dead-letter it when the subscription has a dead-letter topic.
    Drop(Dropped),
}

/// Why a message is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: String,
    /// The app itself asked for the drop (`DROP` status), or no route wanted the event. daprd
    /// records these with ingress metric `status` `success`: the app did what it meant to.
    pub deliberate: bool,
}

impl Verdict {
    pub fn drop(reason: impl Into<String>) -> Self {
        Self::Drop(Dropped {
            reason: reason.into(),
            deliberate: false,
        })
    }

    pub fn deliberate_drop(reason: impl Into<String>) -> Self {
        Self::Drop(Dropped {
            reason: reason.into(),
            deliberate: true,
        })
    }

    /// daprd's `process_status` label: `success`, `retry` or `drop`.
    pub fn process_status(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry(_) => "retry",
            Self::Drop(_) => "drop",
        }
    }

    /// daprd's ingress `status` label: the process status, except `success` for a drop the app
    /// (or routing) chose on purpose.
    pub fn status_label(&self) -> &'static str {
        match self {
            Self::Drop(Dropped {
                deliberate: true, ..
            }) => "success",
            other => other.process_status(),
        }
    }
}

/// One message ready for the app: ingress processing is done and the route is chosen.
#[derive(Debug, Clone)]
pub struct SubscribedMessage {
    pub pubsub_name: Arc<str>,
    pub topic: Arc<str>,
    /// The matched route (an HTTP path; gRPC apps get it as `TopicEventRequest.path`).
    pub path: String,
    /// The CloudEvent, parsed (or synthesized for raw payloads and binary-mode messages).
    pub event: Map<String, Value>,
    /// The CloudEvent JSON as it goes to the app: the broker's bytes untouched when they were
    /// a JSON CloudEvent, the serialized synthesized event otherwise.
    pub body: Bytes,
    /// The message was a raw payload (`rawPayload` subscription): bulk deliveries carry the
    /// original bytes instead of the CloudEvent.
    pub raw: Option<Bytes>,
    /// The broker's content type for the message, if it had one.
    pub content_type: Option<String>,
    /// Broker metadata carried with the message (and `pubsubName`).
    pub metadata: HashMap<String, String>,
}

/// Messages of one topic, to one route, delivered in one call (bulk subscribe).
#[derive(Debug, Clone)]
pub struct BulkMessage {
    pub pubsub_name: Arc<str>,
    pub topic: Arc<str>,
    pub path: String,
    /// Bulk-level metadata (daprd sends the bulk message's own metadata with the envelope).
    pub metadata: HashMap<String, String>,
    pub entries: Vec<BulkEntry>,
}

/// One message of a [`BulkMessage`].
#[derive(Debug, Clone)]
pub struct BulkEntry {
    /// Unique within the batch; the app answers per entry id.
    pub entry_id: String,
    pub message: SubscribedMessage,
}

/// Hands messages to the app. Object-safe so the sidecar picks the transport at runtime.
pub trait Postman: Send + Sync + 'static {
    /// Delivers one message and reads the app's verdict.
    fn deliver(&self, msg: SubscribedMessage) -> BoxFuture<'_, Verdict>;

    /// Delivers a batch; returns one verdict per entry, in the order of `batch.entries`.
    fn deliver_bulk(&self, batch: BulkMessage) -> BoxFuture<'_, Vec<Verdict>>;
}
