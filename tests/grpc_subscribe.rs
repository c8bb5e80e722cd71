//! Streaming subscriptions (`SubscribeTopicEventsAlpha1`) on a whole sidecar: SUCCESS, RETRY and
//! DROP (to the dead-letter topic), metadata listing, refusals, and closing the stream, on the
//! in-memory broker and on Redis on the machine (fresh stream and consumer group names, deleted
//! afterwards), where an unanswered message comes back to the next stream.

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use outrigger::proto::runtime::dapr_client::DaprClient;
use outrigger::proto::runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as Req;
use outrigger::proto::runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as Resp;
use outrigger::proto::runtime::topic_event_response::TopicEventResponseStatus as Verdict;
use outrigger::proto::runtime::{
    GetMetadataRequest, PublishEventRequest, PubsubSubscriptionType,
    SubscribeTopicEventsRequestAlpha1, SubscribeTopicEventsRequestInitialAlpha1,
    SubscribeTopicEventsRequestProcessedAlpha1, SubscribeTopicEventsResponseAlpha1,
    TopicEventRequest, TopicEventResponse,
};
use support::grpc::{self, component, next_cloud_event, tap, Fixture};
use support::{eventually, write, Api, DEADLINE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

fn resources(redis_consumer: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "pubsub.yaml",
        &component("pubsub", "pubsub.in-memory", " []"),
    );
    write(
        dir.path(),
        "scoped.yaml",
        &component(
            "scoped",
            "pubsub.in-memory",
            "\n  - name: subscriptionScopes\n    value: \"alpha=ok\"",
        ),
    );
    write(
        dir.path(),
        "redis.yaml",
        &component(
            "redispubsub",
            "pubsub.redis",
            &format!(
                "\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: consumerID\n    value: {redis_consumer}\n  - name: redeliverInterval\n    value: 200ms\n  - name: processingTimeout\n    value: 1s"
            ),
        ),
    );
    dir
}

async fn start() -> Fixture {
    let consumer = format!("grpc-sub-{}", uuid::Uuid::new_v4().simple());
    grpc::start(resources(&consumer), &[], None, None).await
}

type Outbox = mpsc::Sender<SubscribeTopicEventsRequestAlpha1>;

fn initial(
    pubsub: &str,
    topic: &str,
    dead_letter: Option<&str>,
) -> SubscribeTopicEventsRequestAlpha1 {
    SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(Req::InitialRequest(
            SubscribeTopicEventsRequestInitialAlpha1 {
                pubsub_name: pubsub.into(),
                topic: topic.into(),
                metadata: HashMap::new(),
                dead_letter_topic: dead_letter.map(str::to_owned),
            },
        )),
    }
}

/// Opens a stream; `Ok` once the sidecar sent `initial_response`.
async fn open(
    client: &mut DaprClient<Channel>,
    pubsub: &str,
    topic: &str,
    dead_letter: Option<&str>,
) -> Result<(Outbox, Streaming<SubscribeTopicEventsResponseAlpha1>), Status> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(initial(pubsub, topic, dead_letter)).await.unwrap();
    let mut events = client
        .subscribe_topic_events_alpha1(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = events.message().await?.expect("initial response");
    assert!(matches!(
        first.subscribe_topic_events_response_type,
        Some(Resp::InitialResponse(_))
    ));
    Ok((tx, events))
}

async fn next_event(
    events: &mut Streaming<SubscribeTopicEventsResponseAlpha1>,
) -> TopicEventRequest {
    let msg = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("an event in time")
        .expect("stream healthy")
        .expect("stream open");
    match msg.subscribe_topic_events_response_type {
        Some(Resp::EventMessage(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn answer(outbox: &Outbox, id: &str, verdict: Verdict) {
    outbox
        .send(SubscribeTopicEventsRequestAlpha1 {
            subscribe_topic_events_request_type: Some(Req::EventProcessed(
                SubscribeTopicEventsRequestProcessedAlpha1 {
                    id: id.into(),
                    status: Some(TopicEventResponse {
                        status: verdict.into(),
                    }),
                },
            )),
        })
        .await
        .unwrap();
}

async fn publish(client: &mut DaprClient<Channel>, pubsub: &str, topic: &str, data: &str) {
    client
        .publish_event(PublishEventRequest {
            pubsub_name: pubsub.into(),
            topic: topic.into(),
            data: Bytes::from(data.to_owned()),
            data_content_type: "text/plain".into(),
            metadata: HashMap::new(),
        })
        .await
        .expect("publish");
}

async fn streaming_topics(client: &mut DaprClient<Channel>) -> Vec<String> {
    let md = client
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    md.subscriptions
        .into_iter()
        .filter(|s| s.r#type == i32::from(PubsubSubscriptionType::Streaming))
        .map(|s| s.topic)
        .collect()
}

#[tokio::test]
async fn success_retry_drop_and_close() {
    let mut f = start().await;
    let (outbox, mut events) = open(&mut f.client, "pubsub", "orders", Some("orders-dead"))
        .await
        .expect("subscribed");
    assert_eq!(streaming_topics(&mut f.client).await, ["orders"]);
    let http = Api::new(&f.sidecar).get("/v1.0/metadata").await.json();
    assert_eq!(http["subscriptions"][0]["type"], "STREAMING");
    assert_eq!(http["subscriptions"][0]["pubsubname"], "pubsub");
    assert_eq!(http["subscriptions"][0]["deadLetterTopic"], "orders-dead");

    // One stream per topic.
    let err = open(&mut f.client, "pubsub", "orders", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    publish(&mut f.client, "pubsub", "orders", "a").await;
    let first = next_event(&mut events).await;
    assert_eq!(first.data, Bytes::from_static(b"a"));
    assert_eq!(
        (first.topic.as_str(), first.pubsub_name.as_str()),
        ("orders", "pubsub")
    );
    assert_eq!(first.data_content_type, "text/plain");
    assert_eq!(first.source, "alpha");
    assert!(first
        .extensions
        .as_ref()
        .unwrap()
        .fields
        .contains_key("traceparent"));
    answer(&outbox, &first.id, Verdict::Retry).await;
    let again = next_event(&mut events).await;
    assert_eq!(again.id, first.id, "RETRY redelivers the same message");
    answer(&outbox, &again.id, Verdict::Success).await;

    let (dead_sub, mut dead) = tap(&f.sidecar, "pubsub", "orders-dead").await;
    publish(&mut f.client, "pubsub", "orders", "b").await;
    let dropped = next_event(&mut events).await;
    assert_eq!(dropped.data, Bytes::from_static(b"b"));
    answer(&outbox, &dropped.id, Verdict::Drop).await;
    let ce = next_cloud_event(&mut dead).await;
    assert_eq!(ce["id"], dropped.id.as_str());

    // Half-closing the request stream ends the subscription and the response stream.
    drop(outbox);
    let end = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("stream ends in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let client = f.client.clone();
    eventually("the subscription leaves metadata", || {
        let mut client = client.clone();
        async move { streaming_topics(&mut client).await.is_empty().then_some(()) }
    })
    .await;
    // The topic is free again.
    let (_outbox, _events) = open(&mut f.client, "pubsub", "orders", None)
        .await
        .expect("resubscribed");
    dead_sub.stop().await;
    f.sidecar.stop().await;
}

#[tokio::test]
async fn refusals() {
    let mut f = start().await;
    let err = open(&mut f.client, "nope", "t", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "pubsub nope is not found");
    let err = open(&mut f.client, "scoped", "secret", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = open(&mut f.client, "pubsub", "", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(streaming_topics(&mut f.client).await.is_empty());
    f.sidecar.stop().await;
}

#[tokio::test]
async fn unanswered_messages_come_back_after_the_stream_closes() {
    let mut f = start().await;
    let topic = format!("grpc-stream-{}", uuid::Uuid::new_v4().simple());
    let (outbox, mut events) = open(&mut f.client, "redispubsub", &topic, None)
        .await
        .expect("subscribed");
    publish(&mut f.client, "redispubsub", &topic, "keep me").await;
    let unanswered = next_event(&mut events).await;
    drop(outbox);
    drop(events);
    let client = f.client.clone();
    eventually("the first stream is gone", || {
        let mut client = client.clone();
        async move { streaming_topics(&mut client).await.is_empty().then_some(()) }
    })
    .await;

    let (outbox, mut events) = open(&mut f.client, "redispubsub", &topic, None)
        .await
        .expect("subscribed again");
    let back = next_event(&mut events).await;
    assert_eq!(back.id, unanswered.id);
    assert_eq!(back.data, Bytes::from_static(b"keep me"));
    answer(&outbox, &back.id, Verdict::Success).await;
    drop(outbox);
    drop(events);
    f.sidecar.stop().await;

    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&topic)
        .query_async(&mut conn)
        .await
        .unwrap();
}
