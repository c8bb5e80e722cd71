//! Publishing: the one entry point the HTTP and gRPC APIs call. It resolves the component the
//! way daprd does (not configured / empty / not found / empty topic / forbidden), wraps the data
//! in its CloudEvent, hands it to the broker, and records daprd's egress metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::cloudevent::{self, CloudEventError, EventInput, TraceContext};
use super::registry::{PubSubComponent, PubSubs};
use super::{Feature, PublishRequest};

mod error;

pub use error::{FailedEntry, PublishError};

/// One message an app publishes.
#[derive(Debug, Clone)]
pub struct PublishCall {
    pub pubsub: String,
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// Request metadata (`metadata.*` without the prefix).
    pub metadata: HashMap<String, String>,
    pub trace: TraceContext,
}

/// One entry of a bulk publish, its event already in bytes.
#[derive(Debug, Clone)]
pub struct BulkEntry {
    pub entry_id: String,
    pub event: Bytes,
    pub content_type: String,
    /// Entry metadata; wins over the request metadata per key.
    pub metadata: HashMap<String, String>,
}

/// A bulk publish: entries share the component, topic, request metadata and trace parent.
#[derive(Debug, Clone)]
pub struct BulkPublishCall {
    pub pubsub: String,
    pub topic: String,
    pub entries: Vec<BulkEntry>,
    pub metadata: HashMap<String, String>,
    pub trace: TraceContext,
}

impl PubSubs {
    /// Publishes one message to `call.topic` of the component `call.pubsub`.
    pub async fn publish(&self, call: PublishCall) -> Result<(), PublishError> {
        let component = self.publisher(&call.pubsub, &call.topic)?;
        let out = self.envelope(
            component,
            &call.topic,
            (&call.data, call.content_type.as_deref()),
            &call.metadata,
            &call.trace,
        )?;
        let req = PublishRequest {
            topic: call.topic.clone(),
            data: out.data,
            content_type: out.content_type,
            metadata: call.metadata,
        };
        let started = Instant::now();
        let result = component.broker.publish(req).await;
        self.record(component, &call.topic, result.is_ok(), started);
        result.map_err(|source| PublishError::Publish {
            pubsub: call.pubsub,
            topic: call.topic,
            source,
        })
    }

    /// Publishes every entry, each in its own CloudEvent (own child traceparent). Fails as a
    /// whole before anything is sent when the request is invalid; otherwise reports the entries
    /// the broker did not take as [`PublishError::BulkFailed`].
    pub async fn bulk_publish(&self, call: BulkPublishCall) -> Result<(), PublishError> {
        let component = self.publisher(&call.pubsub, &call.topic)?;
        let mut seen = HashSet::new();
        for entry in &call.entries {
            if entry.entry_id.is_empty() {
                return Err(PublishError::BulkEntries {
                    pubsub: call.pubsub.clone(),
                    reason: "entryId is required for all entries".into(),
                });
            }
            if !seen.insert(entry.entry_id.as_str()) {
                return Err(PublishError::BulkEntries {
                    pubsub: call.pubsub.clone(),
                    reason: format!("entryId {} is duplicated", entry.entry_id),
                });
            }
        }
        let mut reqs = Vec::with_capacity(call.entries.len());
        for entry in &call.entries {
            let mut metadata = call.metadata.clone();
            metadata.extend(entry.metadata.clone());
            let out = self.envelope(
                component,
                &call.topic,
                (&entry.event, Some(&entry.content_type)),
                &metadata,
                &call.trace,
            )?;
            reqs.push(PublishRequest {
                topic: call.topic.clone(),
                data: out.data,
                content_type: out.content_type,
                metadata,
            });
        }
        let count = reqs.len();
        let started = Instant::now();
        let failed = component.broker.bulk_publish(reqs).await;
        let failed_at: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
        for i in 0..count {
            self.record(component, &call.topic, !failed_at.contains(&i), started);
        }
        if failed.is_empty() {
            return Ok(());
        }
        let failed = failed
            .into_iter()
            .filter_map(|(i, err)| {
                let entry = call.entries.get(i)?;
                Some(FailedEntry {
                    entry_id: entry.entry_id.clone(),
                    error: err.to_string(),
                })
            })
            .collect();
        Err(PublishError::BulkFailed {
            pubsub: call.pubsub,
            topic: call.topic,
            failed,
        })
    }

    /// The component an app may publish `topic` to, or daprd's refusal.
    fn publisher(&self, pubsub: &str, topic: &str) -> Result<&Arc<PubSubComponent>, PublishError> {
        let app_id = || self.app_id.clone();
        if self.is_empty() {
            return Err(PublishError::NotConfigured {
                pubsub: pubsub.to_owned(),
                app_id: app_id(),
            });
        }
        if pubsub.is_empty() {
            return Err(PublishError::EmptyName { app_id: app_id() });
        }
        let component = self.get(pubsub).ok_or_else(|| PublishError::NotFound {
            pubsub: pubsub.to_owned(),
            app_id: app_id(),
        })?;
        if topic.is_empty() {
            return Err(PublishError::EmptyTopic {
                pubsub: pubsub.to_owned(),
            });
        }
        if !component.scopes.can_publish(&self.app_id, topic) {
            return Err(PublishError::Forbidden {
                pubsub: pubsub.to_owned(),
                topic: topic.to_owned(),
                app_id: app_id(),
            });
        }
        Ok(component)
    }

    fn envelope(
        &self,
        component: &PubSubComponent,
        topic: &str,
        (data, content_type): (&Bytes, Option<&str>),
        metadata: &HashMap<String, String>,
        trace: &TraceContext,
    ) -> Result<cloudevent::Outgoing, PublishError> {
        let input = EventInput {
            app_id: &self.app_id,
            pubsub: &component.name,
            topic,
            data,
            content_type,
            metadata,
            trace,
            broker_has_ttl: component.broker.features().contains(&Feature::MessageTtl),
        };
        cloudevent::build(input).map_err(|err| match err {
            CloudEventError::Metadata(reason) => PublishError::Metadata {
                pubsub: component.name.clone(),
                reason,
            },
            CloudEventError::Invalid(reason) => PublishError::CloudEvent {
                pubsub: component.name.clone(),
                topic: topic.to_owned(),
                reason,
            },
        })
    }

    fn record(&self, component: &PubSubComponent, topic: &str, success: bool, started: Instant) {
        if let Some(metrics) = &self.metrics {
            metrics.pubsub_egress(&component.label, topic, success, started.elapsed());
        }
    }
}
