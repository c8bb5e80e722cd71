//! The subscriber's delivery engine against the machine's Redis (127.0.0.1:6379, random stream
//! names, removed afterwards) and a real HTTP test app: discovery, routing, the app's answers,
//! dead-lettering, raw payloads, expiry, trace context, scopes, shutdown, and no loss under
//! random app failures.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use outrigger::app_channel::{AppChannel, AppChannelSettings};
use outrigger::config::{BulkSubscribe, Component, ComponentSource, Subscription};
use outrigger::pubsub::redis::open;
use outrigger::pubsub::routing::RuleSpec;
use outrigger::pubsub::subscriber::postman::HttpPostman;
use outrigger::pubsub::subscriber::{RunningSubscriber, Subscriber, SubscriberContext};
use outrigger::pubsub::{PubSub, PubSubComponent, PubSubs, PublishRequest};
use outrigger::telemetry::metrics::{ComponentMetrics, SidecarMetrics};
use serde_json::{json, Value};
use support::eventually;
use tokio::net::TcpListener;
use tokio::sync::Notify;

const REDIS: &str = "127.0.0.1:6379";
const APP_ID: &str = "sub-app";
const PUBSUB: &str = "redis-ps";

// ---------------------------------------------------------------------------------------------
// Test app

/// One request the app received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    /// `data.id` of the CloudEvent, the tests' message identity.
    fn id(&self) -> String {
        self.json()["data"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

type Behaviour = Box<dyn Fn(&Received, usize) -> (StatusCode, String) + Send + Sync>;

struct AppState {
    received: Mutex<Vec<Received>>,
    /// Answer for a delivery, given how many times this `data.id` arrived before.
    behaviour: Behaviour,
    /// `GET /dapr/subscribe` answer; `None` = 404.
    subscribe: Option<Value>,
    /// When set, deliveries wait for it (to hold one in flight).
    gate: Option<Arc<Notify>>,
}

#[derive(Clone)]
struct TestApp(Arc<AppState>);

impl TestApp {
    async fn start(
        subscribe: Option<Value>,
        gate: Option<Arc<Notify>>,
        behaviour: Behaviour,
    ) -> (Self, u16) {
        let app = Self(Arc::new(AppState {
            received: Mutex::new(Vec::new()),
            behaviour,
            subscribe,
            gate,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let port = listener.local_addr().expect("addr").port();
        let router = Router::new().fallback(serve).with_state(app.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (app, port)
    }

    fn received(&self) -> Vec<Received> {
        self.0.received.lock().expect("lock").clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    fn count(&self, id: &str) -> usize {
        self.received().iter().filter(|r| r.id() == id).count()
    }
}

async fn serve(State(app): State<TestApp>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET && path == "/dapr/subscribe" {
        return match &app.0.subscribe {
            Some(v) => axum::Json(v.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let rec = Received {
        path,
        headers: parts.headers,
        body,
    };
    let before = {
        let mut all = app.0.received.lock().expect("lock");
        let id = rec.id();
        let before = all
            .iter()
            .filter(|r| r.id() == id && r.path == rec.path)
            .count();
        all.push(rec.clone());
        before
    };
    if let Some(gate) = &app.0.gate {
        gate.notified().await;
    }
    let (status, body) = (app.0.behaviour)(&rec, before);
    (status, body).into_response()
}

fn ok() -> Behaviour {
    Box::new(|_, _| (StatusCode::OK, String::new()))
}

// ---------------------------------------------------------------------------------------------
// Broker and subscriber

/// Streams named `<prefix>*` on the shared Redis, deleted on drop (also when a test fails).
struct Streams {
    prefix: String,
}

impl Streams {
    fn new(what: &str) -> Self {
        Self {
            prefix: format!("outrigger-sub-{what}-{}", uuid::Uuid::new_v4().simple()),
        }
    }
    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(format!("redis://{REDIS}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        let keys: Vec<String> = redis::Commands::scan_match(&mut conn, format!("{}*", self.prefix))
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

fn component(extra: &[(&str, &str)]) -> Component {
    let mut metadata = BTreeMap::from([
        ("redisHost".to_owned(), REDIS.to_owned()),
        // Fast redelivery of nacked messages, so retries show up within the test deadline.
        ("redeliverInterval".to_owned(), "100ms".to_owned()),
        ("processingTimeout".to_owned(), "300ms".to_owned()),
    ]);
    metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Component {
        name: PUBSUB.into(),
        type_name: "pubsub.redis".into(),
        version: "v1".into(),
        ignore_errors: false,
        metadata,
        scopes: Vec::new(),
        source: ComponentSource::Embedded,
        namespace: None,
        init_timeout: None,
        secret_store: None,
    }
}

async fn pubsubs(extra: &[(&str, &str)]) -> (Arc<PubSubs>, Arc<dyn PubSub>) {
    let c = component(extra);
    let broker: Arc<dyn PubSub> = Arc::new(open(&c, APP_ID).await.expect("open pubsub.redis"));
    let set = PubSubs::new([PubSubComponent::new(c, broker.clone())]);
    (Arc::new(set), broker)
}

fn channel(port: u16) -> Arc<AppChannel> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(SidecarMetrics::new(&mut registry, APP_ID));
    Arc::new(AppChannel::new(
        AppChannelSettings {
            address: "127.0.0.1".into(),
            port,
            h2c: false,
            grpc: None,
            max_concurrency: None,
            app_api_token: None,
            health: None,
        },
        metrics,
    ))
}

fn subscription(topic: &str, default: &str) -> Subscription {
    Subscription {
        name: format!("sub-{topic}"),
        pubsub_name: PUBSUB.into(),
        topic: topic.into(),
        rules: Vec::new(),
        default_route: Some(default.into()),
        dead_letter_topic: None,
        metadata: BTreeMap::new(),
        bulk_subscribe: BulkSubscribe::default(),
        scopes: Vec::new(),
        source: ComponentSource::Embedded,
    }
}

async fn start(
    pubsubs: &Arc<PubSubs>,
    port: u16,
    declarative: &[Subscription],
    discover: bool,
) -> RunningSubscriber {
    let app = channel(port);
    let ctx = SubscriberContext {
        app_id: APP_ID.to_owned(),
        pubsubs: pubsubs.clone(),
        postman: Arc::new(HttpPostman::new(app.clone())),
        metrics: Arc::new(ComponentMetrics::new(
            &mut prometheus_client::registry::Registry::default(),
            APP_ID,
            "default",
        )),
    };
    Subscriber::start(ctx, &app, declarative, discover)
        .await
        .expect("start subscriber")
}

/// A CloudEvent as a publisher sidecar would write it, `data.id` = `id`.
fn event(topic: &str, id: &str, extra: Value) -> Bytes {
    let mut ce = json!({
        "id": uuid::Uuid::new_v4().to_string(), "source": "pub-app", "type": "com.dapr.event.sent",
        "specversion": "1.0", "datacontenttype": "application/json", "topic": topic,
        "pubsubname": PUBSUB, "data": { "id": id },
    });
    if let (Some(ce), Value::Object(extra)) = (ce.as_object_mut(), extra) {
        for (k, v) in extra {
            match (k.as_str(), v) {
                ("data", Value::Object(fields)) => {
                    if let Some(data) = ce.get_mut("data").and_then(Value::as_object_mut) {
                        data.extend(fields);
                    }
                }
                (_, v) => {
                    ce.insert(k, v);
                }
            }
        }
    }
    Bytes::from(ce.to_string())
}

async fn publish(broker: &Arc<dyn PubSub>, topic: &str, data: Bytes) {
    broker
        .publish(PublishRequest {
            topic: topic.into(),
            data,
            content_type: Some("application/cloudevents+json".into()),
            metadata: HashMap::new(),
        })
        .await
        .expect("publish");
}

/// Messages delivered to the group but not acked yet.
async fn pending(topic: &str) -> i64 {
    let mut conn = redis::Client::open(format!("redis://{REDIS}/"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(topic)
        .arg(APP_ID)
        .query_async(&mut conn)
        .await
        .expect("XPENDING");
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

async fn all_acked(topic: &str) {
    eventually(&format!("every message of {topic} acked"), || async {
        (pending(topic).await == 0).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_decide_ack_retry_and_drop() {
    let streams = Streams::new("answers");
    let topic = streams.topic("t");
    let (ps, broker) = pubsubs(&[]).await;
    let behaviour: Behaviour = Box::new(|rec, before| {
        let (status, body) = match (rec.id().as_str(), before) {
            ("success", _) => (200, r#"{"status":"SUCCESS"}"#),
            ("retry-once", 0) => (200, r#"{"status":"RETRY"}"#),
            ("500-once", 0) => (500, ""),
            ("unknown-once", 0) => (200, r#"{"status":"LATER"}"#),
            ("drop", _) => (200, r#"{"status":"DROP"}"#),
            ("404", _) => (404, ""),
            (_, _) => (200, "plain text is a success"),
        };
        (
            StatusCode::from_u16(status).expect("status"),
            body.to_owned(),
        )
    });
    let (app, port) = TestApp::start(None, None, behaviour).await;
    let sub = start(&ps, port, &[subscription(&topic, "/orders")], true).await;
    for id in [
        "success",
        "retry-once",
        "500-once",
        "unknown-once",
        "drop",
        "404",
    ] {
        publish(&broker, &topic, event(&topic, id, json!({}))).await;
    }
    eventually("the retried messages come back and succeed", || async {
        (app.count("retry-once") == 2
            && app.count("500-once") == 2
            && app.count("unknown-once") == 2)
            .then_some(())
    })
    .await;
    all_acked(&topic).await;
    assert_eq!(app.count("success"), 1);
    assert_eq!(app.count("drop"), 1, "DROP is acked, not redelivered");
    assert_eq!(app.count("404"), 1, "404 is acked, not redelivered");
    let first = &app.received()[0];
    assert_eq!(
        first.headers["content-type"],
        "application/cloudevents+json"
    );
    assert_eq!(first.headers["pubsubname"], PUBSUB);
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_topic_receives_the_original_message() {
    let streams = Streams::new("dlq");
    let (topic, dlq) = (streams.topic("t"), streams.topic("poison"));
    let (ps, broker) = pubsubs(&[]).await;
    let behaviour: Behaviour = Box::new(|rec, _| match (rec.path.as_str(), rec.id().as_str()) {
        ("/dead", _) => (StatusCode::OK, String::new()),
        (_, "drop") => (StatusCode::OK, r#"{"status":"DROP"}"#.to_owned()),
        (_, "404") => (StatusCode::NOT_FOUND, String::new()),
        _ => (StatusCode::OK, String::new()),
    });
    let (app, port) = TestApp::start(None, None, behaviour).await;
    let mut main = subscription(&topic, "/orders");
    main.dead_letter_topic = Some(dlq.clone());
    let sub = start(&ps, port, &[main, subscription(&dlq, "/dead")], false).await;
    let dropped = event(
        &topic,
        "drop",
        json!({"data": {"note": "keep me byte for byte"}}),
    );
    publish(&broker, &topic, dropped.clone()).await;
    publish(&broker, &topic, event(&topic, "404", json!({}))).await;
    publish(&broker, &topic, event(&topic, "fine", json!({}))).await;
    let dead = eventually("both dropped messages on the dead-letter topic", || async {
        let dead = app.on("/dead");
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let by_id: HashMap<String, &Received> = dead.iter().map(|r| (r.id(), r)).collect();
    assert_eq!(
        by_id["drop"].body, dropped,
        "the original bytes, not a new envelope"
    );
    assert!(by_id.contains_key("404"));
    all_acked(&topic).await;
    all_acked(&dlq).await;
    assert!(app.on("/dead").iter().all(|r| r.id() != "fine"));
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_rules_choose_the_path_and_trace_context_reaches_the_app() {
    let streams = Streams::new("routes");
    let topic = streams.topic("t");
    let (ps, broker) = pubsubs(&[]).await;
    let (app, port) = TestApp::start(None, None, ok()).await;
    let mut s = subscription(&topic, "/other");
    s.rules = vec![
        RuleSpec {
            match_expr: r#"event.type == "order.a""#.into(),
            path: "/a".into(),
        },
        RuleSpec {
            match_expr: r#"has(event.data.amount) && event.data.amount > 100 && event.source.startsWith("pub")"#
                .into(),
            path: "/big".into(),
        },
    ];
    let sub = start(&ps, port, &[s], false).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    publish(
        &broker,
        &topic,
        event(
            &topic,
            "a",
            json!({"type": "order.a", "traceparent": tp, "tracestate": "k=v"}),
        ),
    )
    .await;
    publish(
        &broker,
        &topic,
        event(&topic, "big", json!({"data": {"amount": 500}})),
    )
    .await;
    publish(
        &broker,
        &topic,
        event(&topic, "small", json!({"data": {"amount": 5}})),
    )
    .await;
    publish(&broker, &topic, event(&topic, "none", json!({}))).await;
    eventually("four deliveries", || async {
        (app.received().len() == 4).then_some(())
    })
    .await;
    let path_of = |id: &str| {
        app.received()
            .into_iter()
            .find(|r| r.id() == id)
            .map(|r| r.path)
            .expect("delivered")
    };
    assert_eq!(path_of("a"), "/a");
    assert_eq!(path_of("big"), "/big");
    assert_eq!(path_of("small"), "/other");
    assert_eq!(path_of("none"), "/other");
    let a = app.on("/a").remove(0);
    let got = a.headers["traceparent"].to_str().expect("ascii");
    assert!(
        got.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && got.ends_with("-01"),
        "the CE's trace continues in the delivery: {got}"
    );
    assert_eq!(a.headers["tracestate"], "k=v");
    all_acked(&topic).await;
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_rule_acks_and_drops() {
    let streams = Streams::new("nomatch");
    let topic = streams.topic("t");
    let (ps, broker) = pubsubs(&[]).await;
    let (app, port) = TestApp::start(None, None, ok()).await;
    let mut s = subscription(&topic, "");
    s.default_route = None;
    s.rules = vec![RuleSpec {
        match_expr: r#"event.data.id == "wanted""#.into(),
        path: "/wanted".into(),
    }];
    let sub = start(&ps, port, &[s], false).await;
    publish(&broker, &topic, event(&topic, "unwanted", json!({}))).await;
    publish(&broker, &topic, event(&topic, "wanted", json!({}))).await;
    eventually("the wanted event", || async {
        (app.count("wanted") == 1).then_some(())
    })
    .await;
    all_acked(&topic).await;
    assert_eq!(app.count("unwanted"), 0);
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_payload_is_wrapped_and_expired_messages_are_dropped() {
    let streams = Streams::new("raw");
    let (raw_topic, topic) = (streams.topic("raw"), streams.topic("ttl"));
    let (ps, broker) = pubsubs(&[]).await;
    let (app, port) = TestApp::start(None, None, ok()).await;
    let mut raw = subscription(&raw_topic, "/raw");
    raw.metadata.insert("rawPayload".into(), "true".into());
    let sub = start(&ps, port, &[raw, subscription(&topic, "/ttl")], false).await;

    let tp = "00-11111111111111111111111111111111-2222222222222222-01";
    broker
        .publish(PublishRequest {
            topic: raw_topic.clone(),
            data: Bytes::from_static(b"\x00not json\xff"),
            content_type: Some("application/octet-stream".into()),
            metadata: HashMap::from([("traceparent".to_owned(), tp.to_owned())]),
        })
        .await
        .expect("publish raw");
    publish(
        &broker,
        &topic,
        event(
            &topic,
            "expired",
            json!({"expiration": "2001-01-01T00:00:00Z"}),
        ),
    )
    .await;
    publish(
        &broker,
        &topic,
        event(
            &topic,
            "fresh",
            json!({"expiration": "2999-01-01T00:00:00Z"}),
        ),
    )
    .await;

    let rec = eventually("the raw delivery", || async {
        app.on("/raw").into_iter().next()
    })
    .await;
    assert_eq!(rec.headers["content-type"], "application/cloudevents+json");
    let ce = rec.json();
    assert_eq!(ce["datacontenttype"], "application/octet-stream");
    assert_eq!(ce["source"], "Dapr");
    assert_eq!(ce["type"], "com.dapr.event.sent");
    assert_eq!(ce["topic"], raw_topic.as_str());
    assert_eq!(ce["pubsubname"], PUBSUB);
    assert_eq!(ce["traceparent"], tp);
    let data = base64::engine::general_purpose::STANDARD
        .decode(ce["data_base64"].as_str().expect("data_base64"))
        .expect("base64");
    assert_eq!(data, b"\x00not json\xff");

    eventually("the fresh event", || async {
        (app.count("fresh") == 1).then_some(())
    })
    .await;
    all_acked(&topic).await;
    assert_eq!(
        app.count("expired"),
        0,
        "an expired event never reaches the app"
    );
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programmatic_and_declarative_both_run_within_scopes() {
    let streams = Streams::new("discovery");
    let (prog, decl, forbidden) = (
        streams.topic("prog"),
        streams.topic("decl"),
        streams.topic("forbidden"),
    );
    let scopes = format!("{APP_ID}={prog},{decl}");
    let (ps, broker) = pubsubs(&[("subscriptionScopes", &scopes)]).await;
    let answer = json!([
        {"pubsubname": PUBSUB, "topic": prog, "routes": {"rules": [{"match": "event.data.id == \"r\"", "path": "/rule"}], "default": "/prog"}},
        {"pubsubname": PUBSUB, "topic": forbidden, "route": "/forbidden"},
        {"pubsubname": "no-such-pubsub", "topic": prog, "route": "/nowhere"},
        {"pubsubname": PUBSUB, "topic": decl, "route": "/shadowed"},
        {"pubsubname": PUBSUB, "topic": prog, "routes": {"rules": [{"match": "event.type ==", "path": "/bad"}]}},
    ]);
    let (app, port) = TestApp::start(Some(answer), None, ok()).await;
    let sub = start(&ps, port, &[subscription(&decl, "/decl")], true).await;
    let mut topics: Vec<_> = sub.subscriptions().map(|s| s.topic.clone()).collect();
    topics.sort();
    let mut want = vec![decl.clone(), prog.clone()];
    want.sort();
    assert_eq!(
        topics, want,
        "scopes, unknown components and duplicates filtered"
    );
    for (t, id) in [(&prog, "p"), (&prog, "r"), (&decl, "d"), (&forbidden, "f")] {
        publish(&broker, t, event(t, id, json!({}))).await;
    }
    eventually("deliveries on both subscriptions", || async {
        (app.on("/prog").len() == 1 && app.on("/rule").len() == 1 && app.on("/decl").len() == 1)
            .then_some(())
    })
    .await;
    assert!(app.on("/forbidden").is_empty() && app.on("/shadowed").is_empty());
    sub.stop().await;

    // An app without /dapr/subscribe (404) has no programmatic subscriptions.
    let (_app, port) = TestApp::start(None, None, ok()).await;
    let sub = start(&ps, port, &[], true).await;
    assert_eq!(sub.subscriptions().count(), 0);
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_an_in_flight_delivery_finish_and_acks_it() {
    let streams = Streams::new("stop");
    let topic = streams.topic("t");
    // The broker abandons a handler call after processingTimeout; give the held one room.
    let (ps, broker) = pubsubs(&[("processingTimeout", "30s")]).await;
    let gate = Arc::new(Notify::new());
    let (app, port) = TestApp::start(None, Some(gate.clone()), ok()).await;
    let sub = start(&ps, port, &[subscription(&topic, "/t")], false).await;
    publish(&broker, &topic, event(&topic, "slow", json!({}))).await;
    eventually("the delivery in flight", || async {
        (app.count("slow") == 1).then_some(())
    })
    .await;
    let mut stopping = tokio::spawn(sub.stop());
    // stop() must wait for the app's answer, not abandon the delivery.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut stopping)
            .await
            .is_err(),
        "stop returned while a delivery was in flight"
    );
    gate.notify_one();
    tokio::time::timeout(support::DEADLINE, stopping)
        .await
        .expect("stop finishes once the app answered")
        .expect("stop task");
    assert_eq!(
        pending(&topic).await,
        0,
        "the accepted message was acked before stop returned"
    );
    assert_eq!(app.count("slow"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_app_failures_lose_nothing() {
    const TOTAL: usize = 500;
    let streams = Streams::new("chaos");
    let topic = streams.topic("t");
    let (ps, broker) = pubsubs(&[("concurrency", "32")]).await;
    let successes: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let ok_count = successes.clone();
    let behaviour: Behaviour = Box::new(move |rec, _| {
        let roll: f64 = rand::random();
        if roll < 0.1 {
            return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
        if roll < 0.2 {
            return (StatusCode::OK, r#"{"status":"RETRY"}"#.to_owned());
        }
        *ok_count.lock().expect("lock").entry(rec.id()).or_default() += 1;
        (StatusCode::OK, r#"{"status":"SUCCESS"}"#.to_owned())
    });
    let (app, port) = TestApp::start(None, None, behaviour).await;
    let sub = start(&ps, port, &[subscription(&topic, "/t")], false).await;
    for i in 0..TOTAL {
        publish(&broker, &topic, event(&topic, &format!("m{i}"), json!({}))).await;
    }
    eventually("every message handled successfully", || async {
        (successes.lock().expect("lock").len() == TOTAL).then_some(())
    })
    .await;
    all_acked(&topic).await;
    sub.stop().await;
    let ok = successes.lock().expect("lock").clone();
    let duplicates: usize = ok.values().map(|n| n - 1).sum();
    let deliveries = app.received().len();
    println!(
        "random failures: {TOTAL} messages, {deliveries} deliveries, {} failed attempts, \
         {duplicates} duplicate successes",
        deliveries - TOTAL - duplicates
    );
    assert!((0..TOTAL).all(|i| ok.contains_key(&format!("m{i}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_event_is_rebuilt_from_ce_metadata_and_routed() {
    let streams = Streams::new("binary");
    let topic = streams.topic("t");
    let (ps, broker) = pubsubs(&[]).await;
    let (app, port) = TestApp::start(None, None, ok()).await;
    let mut s = subscription(&topic, "/other");
    s.rules = vec![RuleSpec {
        match_expr: r#"event.type == "order.created" && event.source == "shop""#.into(),
        path: "/created".into(),
    }];
    let sub = start(&ps, port, &[s], false).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // Redis carries no content type of its own: it travels as the `content-type` metadata key,
    // as daprd's Redis component does.
    let metadata = HashMap::from(
        [
            ("content-type", "application/octet-stream"),
            ("ce_id", "evt-1"),
            ("ce_source", "shop"),
            ("ce_type", "order.created"),
            ("ce_specversion", "1.0"),
            ("ce_traceparent", tp),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    broker
        .publish(PublishRequest {
            topic: topic.clone(),
            data: Bytes::from_static(b"\x01\x02binary"),
            content_type: None,
            metadata,
        })
        .await
        .expect("publish");
    let rec = eventually("the binary-mode delivery", || async {
        app.on("/created").into_iter().next()
    })
    .await;
    let ce = rec.json();
    assert_eq!(ce["id"], "evt-1");
    assert_eq!(ce["source"], "shop");
    assert_eq!(ce["type"], "order.created");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["datacontenttype"], "application/octet-stream");
    let data = base64::engine::general_purpose::STANDARD
        .decode(ce["data_base64"].as_str().expect("data_base64"))
        .expect("base64");
    assert_eq!(data, b"\x01\x02binary");
    let got = rec.headers["traceparent"].to_str().expect("ascii");
    assert!(got.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    all_acked(&topic).await;
    assert!(app.on("/other").is_empty());
    sub.stop().await;
}

/// Answers a bulk envelope with SUCCESS for every entry.
fn bulk_ok() -> Behaviour {
    Box::new(|rec, _| {
        let statuses: Vec<Value> = rec.json()["entries"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| json!({"entryId": e["entryId"], "status": "SUCCESS"}))
                    .collect()
            })
            .unwrap_or_default();
        (StatusCode::OK, json!({ "statuses": statuses }).to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_subscribe_batches_routes_per_entry_and_acks_each_message() {
    const TOTAL: usize = 12;
    let streams = Streams::new("bulk");
    let (topic, raw_topic) = (streams.topic("t"), streams.topic("raw"));
    // Redis caps handler calls at its `concurrency` (room for a whole batch here) and abandons
    // a call after `processingTimeout`, which must leave room for `maxAwaitDurationMs`.
    let (ps, broker) = pubsubs(&[("concurrency", "20"), ("processingTimeout", "2s")]).await;
    let (app, port) = TestApp::start(None, None, bulk_ok()).await;
    let bulk = BulkSubscribe {
        enabled: true,
        max_messages_count: 5,
        max_await: Duration::from_millis(300),
    };
    let mut s = subscription(&topic, "/b");
    s.rules = vec![RuleSpec {
        match_expr: r#"event.data.kind == "a""#.into(),
        path: "/a".into(),
    }];
    s.bulk_subscribe = bulk;
    let mut raw = subscription(&raw_topic, "/raw");
    raw.metadata.insert("rawPayload".into(), "true".into());
    raw.bulk_subscribe = bulk;
    let sub = start(&ps, port, &[s, raw], false).await;

    for i in 0..TOTAL {
        let kind = if i % 2 == 0 { "a" } else { "b" };
        let data = json!({"data": {"kind": kind}});
        publish(&broker, &topic, event(&topic, &format!("m{i}"), data)).await;
    }
    broker
        .publish(PublishRequest {
            topic: raw_topic.clone(),
            data: Bytes::from_static(b"\x00raw"),
            content_type: None,
            metadata: HashMap::new(),
        })
        .await
        .expect("publish raw");

    let posts = eventually("every message delivered in bulk", || async {
        let posts: Vec<Received> = app
            .received()
            .into_iter()
            .filter(|r| r.path != "/raw")
            .collect();
        let entries: usize = posts
            .iter()
            .map(|r| r.json()["entries"].as_array().map_or(0, Vec::len))
            .sum();
        (entries == TOTAL).then_some(posts)
    })
    .await;
    all_acked(&topic).await;
    assert!(
        posts.len() < TOTAL,
        "messages were batched: {} calls",
        posts.len()
    );
    for post in &posts {
        assert_eq!(post.headers["content-type"], "application/json");
        let body = post.json();
        assert_eq!(body["type"], "com.dapr.event.sent.bulk");
        assert_eq!(body["topic"], topic.as_str());
        assert_eq!(body["pubsubname"], PUBSUB);
        let entries = body["entries"].as_array().expect("entries");
        assert!(entries.len() <= 5, "maxMessagesCount respected");
        let want_kind = if post.path == "/a" { "a" } else { "b" };
        for e in entries {
            assert_eq!(e["contentType"], "application/cloudevents+json");
            assert_eq!(
                e["event"]["data"]["kind"], want_kind,
                "each call carries only the entries routed to its path"
            );
            assert!(e["entryId"].as_str().is_some_and(|id| !id.is_empty()));
        }
    }

    let raw_post = eventually("the raw bulk delivery", || async {
        app.on("/raw").into_iter().next()
    })
    .await;
    let entry = &raw_post.json()["entries"][0];
    assert_eq!(entry["contentType"], "application/octet-stream");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(entry["event"].as_str().expect("base64 string"))
        .expect("base64");
    assert_eq!(payload, b"\x00raw");
    all_acked(&raw_topic).await;
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_entry_statuses_decide_each_message() {
    let streams = Streams::new("bulkstatus");
    let (topic, dl_topic, dlq) = (
        streams.topic("t"),
        streams.topic("with-dlq"),
        streams.topic("poison"),
    );
    let (ps, broker) = pubsubs(&[("concurrency", "20"), ("processingTimeout", "2s")]).await;
    // Per entry, by `data.id`: `retry*` answers RETRY and `unlisted` gets no status the first
    // time; `drop` is dropped; everything else succeeds. The dead-letter topic is delivered
    // one by one.
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counts = seen.clone();
    let behaviour: Behaviour = Box::new(move |rec, _| {
        if rec.path == "/dead" {
            return (StatusCode::OK, String::new());
        }
        let mut counts = counts.lock().expect("lock");
        let mut statuses = Vec::new();
        for e in rec.json()["entries"].as_array().into_iter().flatten() {
            let id = e["event"]["data"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let n = counts.entry(id.clone()).or_default();
            *n += 1;
            let status = match (id.as_str(), *n) {
                ("drop", _) => "DROP",
                (r, 1) if r.starts_with("retry") => "RETRY",
                ("unlisted", 1) => continue,
                _ => "SUCCESS",
            };
            statuses.push(json!({"entryId": e["entryId"], "status": status}));
        }
        (StatusCode::OK, json!({ "statuses": statuses }).to_string())
    });
    let (app, port) = TestApp::start(None, None, behaviour).await;
    let bulk = BulkSubscribe {
        enabled: true,
        max_messages_count: 10,
        max_await: Duration::from_millis(200),
    };
    let mut plain = subscription(&topic, "/bulk");
    plain.bulk_subscribe = bulk;
    let mut with_dlq = subscription(&dl_topic, "/bulk");
    with_dlq.dead_letter_topic = Some(dlq.clone());
    with_dlq.bulk_subscribe = bulk;
    let subs = [plain, with_dlq, subscription(&dlq, "/dead")];
    let sub = start(&ps, port, &subs, false).await;
    for id in ["ok", "retry", "unlisted"] {
        publish(&broker, &topic, event(&topic, id, json!({}))).await;
    }
    for id in ["drop", "retry-dlq"] {
        publish(&broker, &dl_topic, event(&dl_topic, id, json!({}))).await;
    }
    eventually("failed entries redelivered until they succeed", || async {
        let counts = seen.lock().expect("lock").clone();
        (counts.get("retry") == Some(&2) && counts.get("unlisted") == Some(&2)).then_some(())
    })
    .await;
    // With a dead-letter topic and no resiliency policy a retried entry is dead-lettered at
    // once (daprd gives up at once), like a dropped one.
    eventually("dropped and retried entries dead-lettered", || async {
        let mut ids: Vec<String> = app.on("/dead").iter().map(Received::id).collect();
        ids.sort();
        (ids == ["drop", "retry-dlq"]).then_some(())
    })
    .await;
    all_acked(&topic).await;
    all_acked(&dl_topic).await;
    all_acked(&dlq).await;
    assert_eq!(seen.lock().expect("lock").get("ok"), Some(&1), "acked once");
    assert_eq!(
        seen.lock().expect("lock").get("drop"),
        Some(&1),
        "not redelivered"
    );
    sub.stop().await;
}
