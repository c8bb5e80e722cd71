//! Delivery to the app through a whole sidecar: bulk subscribe on the embedded in-memory broker
//! (batching, per-entry statuses, dead-lettering, ingress metrics), and subscriptions pausing
//! while the app is unhealthy on Redis (127.0.0.1:6379, a fresh stream name per test).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::Method;
use serde_json::{json, Value};
use support::*;

#[derive(Default)]
struct BulkApp {
    /// Every bulk envelope received, with its content type.
    envelopes: Mutex<Vec<(String, Value)>>,
    /// Successful handlings per `data.id`.
    handled: Mutex<HashMap<String, usize>>,
    /// Attempts per `data.id`.
    attempts: Mutex<HashMap<String, usize>>,
    dead: Mutex<Vec<Value>>,
}

/// `retry` is answered RETRY, `drop` DROP, everything else SUCCESS.
async fn bulk(
    State(app): State<Arc<BulkApp>>,
    headers: HeaderMap,
    Json(envelope): Json<Value>,
) -> Json<Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut statuses = Vec::new();
    for e in envelope["entries"].as_array().into_iter().flatten() {
        let id = e["event"]["data"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let attempt = {
            let mut attempts = app.attempts.lock().unwrap();
            let n = attempts.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let status = match (id.as_str(), attempt) {
            ("drop", _) => "DROP",
            ("retry", _) => "RETRY",
            _ => {
                *app.handled.lock().unwrap().entry(id).or_default() += 1;
                "SUCCESS"
            }
        };
        statuses.push(json!({"entryId": e["entryId"], "status": status}));
    }
    app.envelopes.lock().unwrap().push((content_type, envelope));
    Json(json!({ "statuses": statuses }))
}

async fn start_bulk_app() -> (u16, Arc<BulkApp>) {
    let state = Arc::new(BulkApp::default());
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                Json(json!([
                    {"pubsubname": "pubsub", "topic": "orders", "route": "/bulk",
                     "deadLetterTopic": "poison",
                     "bulkSubscribe": {"enabled": true, "maxMessagesCount": 4, "maxAwaitDurationMs": 300}},
                    {"pubsubname": "pubsub", "topic": "poison", "route": "/dead"}
                ]))
            }),
        )
        .route("/bulk", post(bulk))
        .route(
            "/dead",
            post(|State(app): State<Arc<BulkApp>>, Json(event): Json<Value>| async move {
                app.dead.lock().unwrap().push(event);
                StatusCode::OK
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, state)
}

async fn publish(api: &str, pubsub: &str, topic: &str, data: Value) {
    let url = format!("{api}/v1.0/publish/{pubsub}/{topic}");
    let res = send(
        Method::POST,
        &url,
        &[("content-type", "application/json")],
        Body::from(data.to_string()),
    )
    .await
    .expect("publish request");
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{:?}", res.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_subscribe_batches_and_settles_each_entry_through_the_sidecar() {
    let mesh = Mesh::new();
    let (port, app) = start_bulk_app().await;
    let sidecar = mesh.sidecar("bulk-app", Some(port), &[]).await;
    ready(&sidecar).await;
    let h = api(&sidecar);

    // The in-memory broker keeps nothing for topics nobody subscribes to yet: publish a probe
    // until the subscription is up.
    eventually("the subscription is up", || async {
        publish(&h, "pubsub", "orders", json!({"id": "probe"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.handled
            .lock()
            .unwrap()
            .contains_key("probe")
            .then_some(())
    })
    .await;
    let before = app.envelopes.lock().unwrap().len();

    let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    for id in &ids {
        publish(&h, "pubsub", "orders", json!({ "id": id })).await;
    }
    publish(&h, "pubsub", "orders", json!({"id": "retry"})).await;
    publish(&h, "pubsub", "orders", json!({"id": "drop"})).await;

    eventually("every message handled", || async {
        let handled = app.handled.lock().unwrap();
        ids.iter().all(|id| handled.contains_key(id)).then_some(())
    })
    .await;
    // With a dead-letter topic and no resiliency policy, daprd gives up on a retried entry at
    // once: it is dead-lettered like a dropped one, and neither comes back.
    eventually(
        "the dropped and the retried entry on the dead-letter topic",
        || async {
            let mut dead: Vec<String> = app
                .dead
                .lock()
                .unwrap()
                .iter()
                .map(|e| e["data"]["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            dead.sort();
            (dead == ["drop", "retry"]).then_some(())
        },
    )
    .await;
    assert_eq!(app.attempts.lock().unwrap()["drop"], 1);
    assert_eq!(app.attempts.lock().unwrap()["retry"], 1);

    let envelopes = app.envelopes.lock().unwrap()[before..].to_vec();
    assert!(
        envelopes
            .iter()
            .any(|(_, e)| e["entries"].as_array().unwrap().len() > 1),
        "messages published together arrive together"
    );
    for (content_type, e) in &envelopes {
        assert_eq!(content_type, "application/json");
        assert_eq!(e["type"], "com.dapr.event.sent.bulk");
        assert_eq!(e["topic"], "orders");
        assert_eq!(e["pubsubname"], "pubsub");
        assert!(e["id"].as_str().is_some_and(|id| !id.is_empty()));
        let entries = e["entries"].as_array().unwrap();
        assert!(
            !entries.is_empty() && entries.len() <= 4,
            "maxMessagesCount"
        );
        for entry in entries {
            assert_eq!(entry["contentType"], "application/cloudevents+json");
            assert_eq!(entry["event"]["topic"], "orders");
            assert_eq!(entry["event"]["source"], "bulk-app");
        }
    }

    let url = format!("http://{}/", sidecar.metrics_addr.expect("metrics enabled"));
    let text = eventually("ingress metrics", || async {
        let res = send(Method::GET, &url, &[], Body::empty()).await.ok()?;
        let text = String::from_utf8(res.body.to_vec()).ok()?;
        text.contains("dapr_component_pubsub_ingress_count{")
            .then_some(text)
    })
    .await;
    let has = |prefix: &str, labels: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(prefix) && labels.iter().all(|want| l.contains(want)))
    };
    assert!(has(
        "dapr_component_pubsub_ingress_bulk_count{",
        &[
            r#"app_id="bulk-app""#,
            r#"component="pubsub""#,
            r#"topic="orders""#
        ]
    ));
    assert!(has(
        "dapr_component_pubsub_ingress_bulk_event_count{",
        &[r#"process_status="drop""#, r#"topic="orders""#]
    ));
    assert!(has(
        "dapr_component_pubsub_ingress_bulk_latencies_bucket{",
        &[r#"topic="orders""#]
    ));
    // The dead-letter topic is an ordinary subscription: per-message series.
    assert!(has(
        "dapr_component_pubsub_ingress_count{",
        &[
            r#"namespace="default""#,
            r#"process_status="success""#,
            r#"status="success""#,
            r#"topic="poison""#
        ]
    ));
    assert!(has(
        "dapr_component_pubsub_ingress_latencies_bucket{",
        &[r#"topic="poison""#]
    ));
    sidecar.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Pause while unhealthy

const REDIS: &str = "127.0.0.1:6379";

#[derive(Default)]
struct FlakyApp {
    healthy: AtomicBool,
    /// Health probes answered while unhealthy.
    failed_probes: AtomicUsize,
    received: Mutex<Vec<String>>,
}

async fn start_flaky_app(topic: String) -> (u16, Arc<FlakyApp>) {
    let state = Arc::new(FlakyApp::default());
    state.healthy.store(true, Ordering::SeqCst);
    let router =
        Router::new()
            .route(
                "/dapr/subscribe",
                get(move || {
                    let topic = topic.clone();
                    async move {
                        Json(json!([{"pubsubname": "redis-ps", "topic": topic, "route": "/in"}]))
                    }
                }),
            )
            .route(
                "/healthz",
                get(|State(app): State<Arc<FlakyApp>>| async move {
                    if app.healthy.load(Ordering::SeqCst) {
                        StatusCode::OK
                    } else {
                        app.failed_probes.fetch_add(1, Ordering::SeqCst);
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }),
            )
            .route(
                "/in",
                post(
                    |State(app): State<Arc<FlakyApp>>, Json(event): Json<Value>| async move {
                        let id = event["data"]["id"].as_str().unwrap_or_default().to_owned();
                        app.received.lock().unwrap().push(id);
                        StatusCode::OK
                    },
                ),
            )
            .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, state)
}

/// Deletes the test's stream from the shared Redis, also when the test fails.
struct Stream(String);

impl Drop for Stream {
    fn drop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(format!("redis://{REDIS}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&self.0).query(&mut conn);
        }
    }
}

/// (entries in the stream, entries the consumer group has read but not acked).
async fn stream_state(topic: &str, group: &str) -> (i64, i64) {
    let mut conn = redis::Client::open(format!("redis://{REDIS}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let len: i64 = redis::cmd("XLEN")
        .arg(topic)
        .query_async(&mut conn)
        .await
        .unwrap();
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(topic)
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap();
    let pending = match pending {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    };
    (len, pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_pause_while_the_app_is_unhealthy_and_lose_nothing() {
    let topic = format!("outrigger-health-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Stream(topic.clone());
    let app_id = "health-app";
    let resources = tempfile::tempdir().unwrap();
    write(
        resources.path(),
        "redis.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: redis-ps\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: {REDIS}\n  - name: redeliverInterval\n    value: 100ms\n  - name: processingTimeout\n    value: 1s\n"
        ),
    );
    let (port, app) = start_flaky_app(topic.clone()).await;
    let mesh = Mesh::new();
    let path = resources.path().display().to_string();
    let sidecar = mesh
        .sidecar(
            app_id,
            Some(port),
            &[
                "--resources-path",
                &path,
                "--enable-app-health-check",
                "--app-health-probe-interval",
                "1",
                "--app-health-probe-timeout",
                "500",
                "--app-health-threshold",
                "1",
            ],
        )
        .await;
    ready(&sidecar).await;
    let h = api(&sidecar);

    // The unhealthy phase must start from a running consumer.
    eventually("the subscription is up", || async {
        publish(&h, "redis-ps", &topic, json!({"id": "probe"})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.received
            .lock()
            .unwrap()
            .iter()
            .any(|id| id == "probe")
            .then_some(())
    })
    .await;

    // Everything published so far is delivered and acked before the app turns unhealthy, so
    // what follows concerns only the messages published while it is.
    eventually("the probes settled", || async {
        let (len, pending) = stream_state(&topic, app_id).await;
        let delivered = app.received.lock().unwrap().len();
        (pending == 0 && usize::try_from(len).ok() == Some(delivered)).then_some(())
    })
    .await;
    app.healthy.store(false, Ordering::SeqCst);
    // Two failed probes: the first flips the sidecar to unhealthy, the second comes a whole
    // interval later, by when the subscription has long been paused.
    eventually("the sidecar saw the app unhealthy", || async {
        (app.failed_probes.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let before = app.received.lock().unwrap().len();
    let (len_before, _) = stream_state(&topic, app_id).await;
    let ids: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    for id in &ids {
        publish(&h, "redis-ps", &topic, json!({ "id": id })).await;
    }
    // Two more probe intervals with the app unhealthy: nothing is delivered, and nothing is
    // even fetched from the stream (a running consumer would leave the nacked reads pending).
    let probes = app.failed_probes.load(Ordering::SeqCst);
    eventually("two more failed probes", || async {
        (app.failed_probes.load(Ordering::SeqCst) >= probes + 2).then_some(())
    })
    .await;
    assert_eq!(
        app.received.lock().unwrap().len(),
        before,
        "nothing delivered while unhealthy"
    );
    let (len, pending) = stream_state(&topic, app_id).await;
    assert_eq!(len, len_before + 5, "the messages wait in the stream");
    assert_eq!(
        pending, 0,
        "no message was fetched while the app was unhealthy"
    );

    app.healthy.store(true, Ordering::SeqCst);
    eventually(
        "every message delivered once the app is healthy",
        || async {
            let received = app.received.lock().unwrap();
            ids.iter().all(|id| received.contains(id)).then_some(())
        },
    )
    .await;
    eventually("every message acked", || async {
        (stream_state(&topic, app_id).await.1 == 0).then_some(())
    })
    .await;
    sidecar.stop().await;
}
