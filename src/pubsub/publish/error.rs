//! What publishing answers when it fails, in daprd's words (`pkg/api/errors/pubsub.go`); the
//! APIs map each variant to status codes and error details.

use super::super::PubSubError;

/// One bulk entry the broker did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub entry_id: String,
    pub error: String,
}

/// A failed publish.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No pub/sub component is loaded at all.
    #[error("pubsub {pubsub} is not configured")]
    NotConfigured { pubsub: String, app_id: String },
    #[error("pubsub name is empty")]
    EmptyName { app_id: String },
    #[error("pubsub {pubsub} is not found")]
    NotFound { pubsub: String, app_id: String },
    #[error("topic is empty in pubsub {pubsub}")]
    EmptyTopic { pubsub: String },
    /// Topic scoping (`publishingScopes`, `allowedTopics`, `protectedTopics`) refused it.
    #[error("topic {topic} is not allowed for app id {app_id}")]
    Forbidden {
        pubsub: String,
        topic: String,
        app_id: String,
    },
    /// Request metadata that cannot be read, e.g. `rawPayload=maybe`.
    #[error("failed deserializing metadata: {reason}")]
    Metadata { pubsub: String, reason: String },
    /// An `application/cloudevents+json` body that is not a JSON object.
    #[error("cannot create cloudevent")]
    CloudEvent {
        pubsub: String,
        topic: String,
        reason: String,
    },
    /// Bulk entries without an `entryId`, or with one used twice.
    #[error("{reason}")]
    BulkEntries { pubsub: String, reason: String },
    /// The broker refused or could not be reached.
    #[error("error when publishing to topic {topic} in pubsub {pubsub}: {source}")]
    Publish {
        pubsub: String,
        topic: String,
        #[source]
        source: PubSubError,
    },
    /// Some bulk entries were not published (the others were).
    #[error("error when publishing to topic {topic} in pubsub {pubsub}: {} entries failed", failed.len())]
    BulkFailed {
        pubsub: String,
        topic: String,
        failed: Vec<FailedEntry>,
    },
}
