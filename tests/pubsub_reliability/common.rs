//! What the whole-sidecar pub/sub reliability tests share: a `redis-server` of the test's own, a
//! subscriber app that fails on purpose and keeps a ledger of what it accepted, a publisher that
//! publishes through a sidecar's HTTP API and retries like an app would, and component files.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support;

/// The route every test subscription delivers to.
pub const ROUTE: &str = "/msg";
/// A publish that fails must say so within this (the broker is away: fail fast, do not queue).
pub const FAIL_FAST: Duration = Duration::from_secs(5);

/// A `redis-server` of our own, without persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let server = Self { child, port };
        let url = format!("redis://127.0.0.1:{port}/");
        support::eventually("our redis-server to answer", || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            (pong == "PONG").then_some(())
        })
        .await;
        server
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `pubsub.yaml`, a Component named `pubsub`, into a fresh resources directory.
pub fn resources(type_name: &str, metadata: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: {type_name}\n  version: v1\n  metadata:\n"
    );
    for (name, value) in metadata {
        yaml.push_str(&format!("  - name: {name}\n    value: \"{value}\"\n"));
    }
    support::write(dir.path(), "pubsub.yaml", &yaml);
    dir
}

pub fn resources_flag(dir: &Path) -> [String; 2] {
    ["--resources-path".to_owned(), dir.display().to_string()]
}

/// What the subscriber app saw, by message id (`data.id` of the CloudEvent).
#[derive(Default)]
pub struct Ledger {
    /// Successful deliveries per id; more than one is a duplicate.
    accepted: Mutex<HashMap<u64, u32>>,
    /// Every delivery attempt, failed on purpose or not.
    pub attempts: AtomicUsize,
    pub refused: AtomicUsize,
    /// The `traceparent` header of the first accepted delivery of each id.
    traceparents: Mutex<HashMap<u64, String>>,
    /// When each id was first accepted, in ms since the Unix epoch, next to its send time.
    latencies_ms: Mutex<Vec<f64>>,
}

impl Ledger {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn accepted_ids(&self) -> HashSet<u64> {
        Self::lock(&self.accepted).keys().copied().collect()
    }

    pub fn accepted_count(&self) -> usize {
        Self::lock(&self.accepted).len()
    }

    pub fn times_accepted(&self, id: u64) -> u32 {
        Self::lock(&self.accepted).get(&id).copied().unwrap_or(0)
    }

    /// Accepted deliveries beyond the first of each id.
    pub fn duplicates(&self) -> u64 {
        Self::lock(&self.accepted)
            .values()
            .map(|n| u64::from(n - 1))
            .sum()
    }

    pub fn traceparent(&self, id: u64) -> Option<String> {
        Self::lock(&self.traceparents).get(&id).cloned()
    }

    /// Publish-to-handler latencies of first deliveries, sorted.
    pub fn latencies_ms(&self) -> Vec<f64> {
        let mut all = Self::lock(&self.latencies_ms).clone();
        all.sort_by(f64::total_cmp);
        all
    }
}

/// An app subscribed to `topic` on the component `pubsub`: it refuses (HTTP 500) a delivery with
/// probability `fail_rate` and records every one it accepts.
pub struct SubscriberApp {
    pub port: u16,
    pub ledger: Arc<Ledger>,
}

struct AppState {
    ledger: Arc<Ledger>,
    fail_rate: f64,
}

impl SubscriberApp {
    pub async fn start(topic: &str, fail_rate: f64) -> Self {
        let ledger = Arc::new(Ledger::default());
        let subscriptions = json!([{ "pubsubname": "pubsub", "topic": topic, "route": ROUTE }]);
        let state = Arc::new(AppState {
            ledger: ledger.clone(),
            fail_rate,
        });
        let router = Router::new()
            .route(
                "/dapr/subscribe",
                get(move || {
                    let subscriptions = subscriptions.clone();
                    async move { Json(subscriptions) }
                }),
            )
            .route(ROUTE, post(deliver))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { port, ledger }
    }
}

async fn deliver(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(event): Json<Value>,
) -> StatusCode {
    let ledger = &app.ledger;
    ledger.attempts.fetch_add(1, Ordering::Relaxed);
    let Some(id) = event["data"]["id"].as_u64() else {
        return StatusCode::BAD_REQUEST;
    };
    if rand::random::<f64>() < app.fail_rate {
        ledger.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let first = {
        let mut accepted = Ledger::lock(&ledger.accepted);
        let n = accepted.entry(id).or_insert(0);
        *n += 1;
        *n == 1
    };
    if first {
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            Ledger::lock(&ledger.traceparents).insert(id, tp.to_owned());
        }
        if let Some(sent) = event["data"]["sentMs"].as_f64() {
            Ledger::lock(&ledger.latencies_ms).push(now_ms() - sent);
        }
    }
    StatusCode::OK
}

pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// A failed publish attempt, as the app saw it.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub body: String,
    pub elapsed: Duration,
}

/// Publishes `{"id": n}` messages through one sidecar's HTTP API on one pooled client.
#[derive(Clone)]
pub struct Publisher {
    url: String,
    client: Client<HttpConnector, Body>,
}

impl Publisher {
    pub fn new(sidecar_api: &str, topic: &str) -> Self {
        Self {
            url: format!("{sidecar_api}/v1.0/publish/pubsub/{topic}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// One attempt: Ok on 204, else what came back and how long it took.
    pub async fn publish(&self, id: u64, traceparent: Option<&str>) -> Result<(), Refusal> {
        let body = json!({ "id": id, "sentMs": now_ms() }).to_string();
        let mut req = http::Request::post(&self.url).header("content-type", "application/json");
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let req = req.body(Body::from(body)).expect("request");
        let started = Instant::now();
        let refusal = |status, body: String| Refusal {
            status,
            body,
            elapsed: started.elapsed(),
        };
        let res = match self.client.request(req).await {
            Ok(res) => res,
            Err(e) => return Err(refusal(StatusCode::BAD_GATEWAY, e.to_string())),
        };
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        Err(refusal(status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Counters and marks shared between a publishing run and the test driving it.
#[derive(Default)]
pub struct Progress {
    /// Messages whose publish returned 204.
    pub published: AtomicUsize,
    /// Failed attempts (each was retried).
    pub refused: AtomicUsize,
    /// A phase number the test advances (e.g. "broker down", "broker back"); each message
    /// records the phase at which its successful attempt was sent.
    pub phase: AtomicU8,
    sent_in_phase: Mutex<HashMap<u64, u8>>,
}

impl Progress {
    pub fn published(&self) -> usize {
        self.published.load(Ordering::SeqCst)
    }

    /// Ids whose successful publish was sent in `phase` or later.
    pub fn sent_from_phase(&self, phase: u8) -> HashSet<u64> {
        Ledger::lock(&self.sent_in_phase)
            .iter()
            .filter(|(_, p)| **p >= phase)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn all_sent(&self) -> HashSet<u64> {
        Ledger::lock(&self.sent_in_phase).keys().copied().collect()
    }
}

/// Publishes every id in `ids`, `concurrency` at a time, retrying each failed attempt as an app
/// would. Every failure must be fast and carry daprd's publish error code.
pub async fn publish_all(
    publisher: Publisher,
    ids: std::ops::Range<u64>,
    concurrency: usize,
    progress: Arc<Progress>,
) {
    use futures_util::StreamExt;
    futures_util::stream::iter(ids)
        .for_each_concurrent(concurrency, |id| {
            let (publisher, progress) = (publisher.clone(), progress.clone());
            async move {
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    let phase = progress.phase.load(Ordering::SeqCst);
                    match publisher.publish(id, None).await {
                        Ok(()) => {
                            Ledger::lock(&progress.sent_in_phase).insert(id, phase);
                            progress.published.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Err(refusal) => {
                            assert_refused_fast(&refusal);
                            progress.refused.fetch_add(1, Ordering::SeqCst);
                            assert!(
                                Instant::now() < give_up,
                                "message {id} never published: {refusal:?}"
                            );
                            // As an app would: wait a little before trying again.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        })
        .await;
}

/// A refused publish must be daprd's: HTTP 500 with `ERR_PUBSUB_PUBLISH_MESSAGE`, and quick.
pub fn assert_refused_fast(refusal: &Refusal) {
    assert_eq!(
        refusal.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{refusal:?}"
    );
    let body: Value = serde_json::from_str(&refusal.body).unwrap_or_default();
    assert_eq!(
        body["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE",
        "{refusal:?}"
    );
    assert!(refusal.elapsed < FAIL_FAST, "{refusal:?}");
}

/// Polls until `ledger` accepted every id in `required`, or panics naming how many are missing
/// once no new message was handled for `stall` (progress, not a total, bounds a loaded machine).
pub async fn all_handled(what: &str, ledger: &Ledger, required: &HashSet<u64>, stall: Duration) {
    let (mut last, mut moved) = (usize::MAX, Instant::now());
    loop {
        let accepted = ledger.accepted_ids();
        let missing = required.difference(&accepted).count();
        if missing == 0 {
            return;
        }
        if missing != last {
            (last, moved) = (missing, Instant::now());
        }
        assert!(
            moved.elapsed() < stall,
            "{what}: {missing} of {} required messages never handled, e.g. {:?}",
            required.len(),
            required.difference(&accepted).take(10).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
