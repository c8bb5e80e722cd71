//! `SubscribeTopicEventsAlpha1`: a streaming subscription. The first request names the
//! component and topic; the sidecar answers `initial_response`, starts a consumer on the broker,
//! sends each message as an `event_message` and settles it when the app answers
//! `event_processed` with the same id: SUCCESS acks, RETRY leaves it for redelivery, DROP acks
//! (after handing it to the dead-letter topic when one is set). Closing the stream stops the
//! consumer; whatever was not acknowledged stays with the broker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::super::pubsub::errors::api_error;
use super::super::ApiState;
use super::errors::status;
use crate::proto::runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as RequestType;
use crate::proto::runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as ResponseType;
use crate::proto::runtime::topic_event_response::TopicEventResponseStatus;
use crate::proto::runtime::{
    SubscribeTopicEventsRequestAlpha1, SubscribeTopicEventsRequestInitialAlpha1,
    SubscribeTopicEventsResponseAlpha1, SubscribeTopicEventsResponseInitialAlpha1,
    TopicEventRequest,
};
use crate::pubsub::{
    Handler, Message, Nack, PubSubComponent, PublishError, PublishRequest, SubscribeRequest,
};

/// Messages that may wait for the app's answer at once on one stream.
const IN_FLIGHT: usize = 32;

/// CloudEvent attributes that have their own `TopicEventRequest` field; every other attribute
/// travels in `extensions`.
const OWN_FIELDS: [&str; 7] = [
    "id",
    "source",
    "datacontenttype",
    "type",
    "specversion",
    "data",
    "data_base64",
];

pub type EventStream = ReceiverStream<Result<SubscribeTopicEventsResponseAlpha1, Status>>;

/// One open streaming subscription, as metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingSubscription {
    pub pubsub: String,
    pub topic: String,
    pub metadata: HashMap<String, String>,
    pub dead_letter_topic: Option<String>,
}

/// The streaming subscriptions open on this sidecar.
#[derive(Debug, Default)]
pub struct StreamingSubscriptions {
    active: Mutex<Vec<(u64, StreamingSubscription)>>,
    next: AtomicU64,
}

impl StreamingSubscriptions {
    pub fn list(&self) -> Vec<StreamingSubscription> {
        self.lock().iter().map(|(_, s)| s.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, StreamingSubscription)>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `sub` for as long as the returned guard lives; one stream per component and
    /// topic, as daprd allows.
    fn register(self: &Arc<Self>, sub: StreamingSubscription) -> Result<Registered, Status> {
        let mut active = self.lock();
        if active
            .iter()
            .any(|(_, s)| s.pubsub == sub.pubsub && s.topic == sub.topic)
        {
            return Err(Status::already_exists(format!(
                "already subscribed to pubsub {:?} topic {:?}",
                sub.pubsub, sub.topic
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        active.push((id, sub));
        Ok(Registered {
            id,
            registry: self.clone(),
        })
    }
}

/// Removes its subscription from the registry when dropped.
struct Registered {
    id: u64,
    registry: Arc<StreamingSubscriptions>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().retain(|(id, _)| *id != self.id);
    }
}

/// Answers waiting for the app, by event id.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<i32>>>>;

pub(super) async fn subscribe(
    api: Arc<ApiState>,
    req: Request<Streaming<SubscribeTopicEventsRequestAlpha1>>,
) -> Result<Response<EventStream>, Status> {
    let mut inbound = req.into_inner();
    let initial = match inbound
        .message()
        .await?
        .and_then(|m| m.subscribe_topic_events_request_type)
    {
        Some(RequestType::InitialRequest(initial)) => initial,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of a subscription must be an initial request",
            ))
        }
    };
    let component = component(&api, &initial)?.clone();
    let registered = api.streaming.register(StreamingSubscription {
        pubsub: initial.pubsub_name.clone(),
        topic: initial.topic.clone(),
        metadata: initial.metadata.clone(),
        dead_letter_topic: initial.dead_letter_topic.clone(),
    })?;

    let (tx, rx) = mpsc::channel(IN_FLIGHT + 1);
    let initial_response = SubscribeTopicEventsResponseAlpha1 {
        subscribe_topic_events_response_type: Some(ResponseType::InitialResponse(
            SubscribeTopicEventsResponseInitialAlpha1 {},
        )),
    };
    // Queued before the consumer starts, so it is the first message the app reads.
    let _ = tx.send(Ok(initial_response)).await;

    let closed = CancellationToken::new();
    let pending: Pending = Arc::default();
    let forward = Arc::new(Forward {
        to_app: tx.downgrade(),
        pending: pending.clone(),
        closed: closed.clone(),
        component: component.clone(),
        topic: initial.topic.clone(),
        dead_letter_topic: initial.dead_letter_topic.filter(|t| !t.is_empty()),
    });
    let handler: Handler = Arc::new(move |msg: Message| {
        let forward = forward.clone();
        Box::pin(async move { forward.deliver(msg).await })
    });
    let subscription = component
        .broker
        .subscribe(
            SubscribeRequest {
                topic: initial.topic.clone(),
                metadata: initial.metadata,
                max_concurrency: IN_FLIGHT,
            },
            handler,
        )
        .await
        .map_err(|e| {
            Status::internal(format!(
                "failed to subscribe to topic {} in pubsub {}: {e}",
                initial.topic, initial.pubsub_name
            ))
        })?;

    let stopping = api.lifecycle.stopping().clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = inbound.message() => next,
                () = stopping.cancelled() => break,
            };
            match next {
                Ok(Some(msg)) => {
                    if let Some(RequestType::EventProcessed(done)) =
                        msg.subscribe_topic_events_request_type
                    {
                        let answer = pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&done.id);
                        if let Some(answer) = answer {
                            let _ = answer.send(done.status.map_or(0, |s| s.status));
                        }
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Deliveries still waiting are nacked, then the consumer stops; the stream to the app
        // ends when the last sender (ours) goes.
        closed.cancel();
        subscription.stop().await;
        drop(registered);
        drop(tx);
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// The component a subscription may use, or the error publishing would give for it.
fn component<'a>(
    api: &'a ApiState,
    initial: &SubscribeTopicEventsRequestInitialAlpha1,
) -> Result<&'a Arc<PubSubComponent>, Status> {
    let app_id = || api.app_id.clone();
    let pubsub = &initial.pubsub_name;
    let refuse = |err: PublishError| status(api_error(err));
    if api.pubsubs.is_empty() {
        return Err(refuse(PublishError::NotConfigured {
            pubsub: pubsub.clone(),
            app_id: app_id(),
        }));
    }
    if pubsub.is_empty() {
        return Err(refuse(PublishError::EmptyName { app_id: app_id() }));
    }
    let component = api.pubsubs.get(pubsub).ok_or_else(|| {
        refuse(PublishError::NotFound {
            pubsub: pubsub.clone(),
            app_id: app_id(),
        })
    })?;
    if initial.topic.is_empty() {
        return Err(refuse(PublishError::EmptyTopic {
            pubsub: pubsub.clone(),
        }));
    }
    if !component.scopes.can_subscribe(&api.app_id, &initial.topic) {
        return Err(refuse(PublishError::Forbidden {
            pubsub: pubsub.clone(),
            topic: initial.topic.clone(),
            app_id: app_id(),
        }));
    }
    Ok(component)
}

/// Hands broker messages to the app over the stream and waits for its verdict.
struct Forward {
    /// Weak, so that the stream ends when the subscription task lets go of it, whatever the
    /// broker does with the handler.
    to_app: mpsc::WeakSender<Result<SubscribeTopicEventsResponseAlpha1, Status>>,
    pending: Pending,
    closed: CancellationToken,
    component: Arc<PubSubComponent>,
    topic: String,
    dead_letter_topic: Option<String>,
}

impl Forward {
    async fn deliver(&self, msg: Message) -> Result<(), Nack> {
        let event = topic_event(&msg, &self.component.name, &self.topic);
        let id = event.id.clone();
        let (answer_tx, answer_rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), answer_tx);
        let out = SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(ResponseType::EventMessage(event)),
        };
        let sent = match self.to_app.upgrade() {
            Some(to_app) => to_app.send(Ok(out)).await.is_ok(),
            None => false,
        };
        if !sent {
            self.forget(&id);
            return Err(Nack("the subscription stream is closed".to_owned()));
        }
        let answer = tokio::select! {
            answer = answer_rx => answer.ok(),
            () = self.closed.cancelled() => None,
        };
        let Some(answer) = answer else {
            self.forget(&id);
            return Err(Nack(
                "the subscription stream closed before the app answered".to_owned(),
            ));
        };
        match TopicEventResponseStatus::try_from(answer) {
            Ok(TopicEventResponseStatus::Success) => Ok(()),
            Ok(TopicEventResponseStatus::Drop) => self.drop_message(msg).await,
            Ok(TopicEventResponseStatus::Retry) => Err(Nack("the app asked to retry".to_owned())),
            Err(_) => Err(Nack(format!("unknown status {answer} from the app"))),
        }
    }

    fn forget(&self, id: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Acks a dropped message; with a dead-letter topic, only once it was published there.
    async fn drop_message(&self, msg: Message) -> Result<(), Nack> {
        let Some(dlq) = &self.dead_letter_topic else {
            tracing::warn!(topic = %self.topic, "message dropped by the app");
            return Ok(());
        };
        let req = PublishRequest {
            topic: dlq.clone(),
            data: msg.data,
            content_type: msg.content_type,
            metadata: msg.metadata,
        };
        self.component
            .broker
            .publish(req)
            .await
            .map_err(|e| Nack(format!("dead-letter publish failed: {e}")))
    }
}

/// The `TopicEventRequest` daprd builds from a CloudEvent (reference §2.7, gRPC delivery). A
/// message that is not a CloudEvent (a raw payload) is sent as its bytes.
fn topic_event(msg: &Message, pubsub: &str, topic: &str) -> TopicEventRequest {
    let Ok(mut ce) = serde_json::from_slice::<Map<String, Value>>(&msg.data) else {
        return TopicEventRequest {
            id: uuid::Uuid::new_v4().to_string(),
            spec_version: "1.0".to_owned(),
            r#type: "com.dapr.event.sent".to_owned(),
            data_content_type: msg
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            data: msg.data.clone(),
            topic: topic.to_owned(),
            pubsub_name: pubsub.to_owned(),
            ..Default::default()
        };
    };
    let text = |ce: &Map<String, Value>, key: &str| {
        ce.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = text(&ce, "datacontenttype");
    let data = event_data(&ce, &content_type);
    let mut event = TopicEventRequest {
        id: text(&ce, "id"),
        source: text(&ce, "source"),
        r#type: text(&ce, "type"),
        spec_version: text(&ce, "specversion"),
        data_content_type: content_type,
        data,
        topic: topic.to_owned(),
        pubsub_name: pubsub.to_owned(),
        path: String::new(),
        extensions: None,
    };
    if event.id.is_empty() {
        event.id = uuid::Uuid::new_v4().to_string();
    }
    for key in OWN_FIELDS {
        ce.remove(key);
    }
    event.extensions = Some(prost_types::Struct {
        fields: ce.into_iter().map(|(k, v)| (k, to_proto(v))).collect(),
    });
    event
}

/// `data_base64` decoded; a string under a non-JSON content type as its text; any other `data`
/// as JSON text.
fn event_data(ce: &Map<String, Value>, content_type: &str) -> Bytes {
    if let Some(Value::String(b64)) = ce.get("data_base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .unwrap_or_default();
    }
    match ce.get("data") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if !content_type.contains("json") => Bytes::from(s.clone()),
        Some(other) => Bytes::from(serde_json::to_vec(other).unwrap_or_default()),
    }
}

fn to_proto(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_proto).collect(),
        }),
        Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, to_proto(v)))
                .collect::<BTreeMap<_, _>>(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: &str) -> Message {
        Message {
            topic: "orders".into(),
            data: Bytes::from(data.to_owned()),
            content_type: Some("application/cloudevents+json".into()),
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn cloudevent_fields_and_extensions() {
        let ev = topic_event(
            &message(
                r#"{"id":"1","source":"app","type":"t","specversion":"1.0","datacontenttype":"application/json","data":{"a":1},"topic":"orders","traceparent":"00-x","custom":"c"}"#,
            ),
            "ps",
            "orders",
        );
        assert_eq!(ev.id, "1");
        assert_eq!(ev.source, "app");
        assert_eq!(ev.data, Bytes::from_static(br#"{"a":1}"#));
        assert_eq!(ev.pubsub_name, "ps");
        let ext = ev.extensions.unwrap().fields;
        assert!(ext.contains_key("traceparent") && ext.contains_key("custom"));
        assert!(!ext.contains_key("data") && !ext.contains_key("id"));
    }

    #[test]
    fn text_and_base64_data() {
        let text = topic_event(
            &message(r#"{"id":"1","datacontenttype":"text/plain","data":"hi"}"#),
            "ps",
            "t",
        );
        assert_eq!(text.data, Bytes::from_static(b"hi"));
        let b64 = topic_event(
            &message(
                r#"{"id":"2","datacontenttype":"application/octet-stream","data_base64":"AAE="}"#,
            ),
            "ps",
            "t",
        );
        assert_eq!(b64.data, Bytes::from_static(&[0, 1]));
        let raw = topic_event(&message("not json"), "ps", "t");
        assert_eq!(raw.data, Bytes::from_static(b"not json"));
        assert!(!raw.id.is_empty());
    }

    #[test]
    fn one_stream_per_topic() {
        let registry = Arc::new(StreamingSubscriptions::default());
        let sub = StreamingSubscription {
            pubsub: "ps".into(),
            topic: "t".into(),
            metadata: HashMap::new(),
            dead_letter_topic: None,
        };
        let first = registry.register(sub.clone()).unwrap();
        assert!(registry.register(sub.clone()).is_err());
        assert_eq!(registry.list(), vec![sub.clone()]);
        drop(first);
        assert!(registry.list().is_empty());
        assert!(registry.register(sub).is_ok());
    }
}
