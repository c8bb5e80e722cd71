//! `pubsub.redis` against real Redis servers: the broker conformance suite and daprd wire
//! interop on the machine's Redis (127.0.0.1:6379, random stream names, removed afterwards),
//! and a server restart on a `redis-server` of our own.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outrigger::config::{Component, ComponentSource};
use outrigger::pubsub::redis::{open, RedisPubSub};
use outrigger::pubsub::{Handler, Message, PubSub, PubSubError, PublishRequest, SubscribeRequest};
use tokio::sync::mpsc;

const SHARED_REDIS: &str = "127.0.0.1:6379";
const WAIT: Duration = Duration::from_secs(20);

fn component(host: &str, extra: &[(&str, &str)]) -> Component {
    let mut metadata = BTreeMap::from([("redisHost".to_owned(), host.to_owned())]);
    metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Component {
        name: "pubsub".into(),
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

async fn broker(host: &str, extra: &[(&str, &str)]) -> RedisPubSub {
    open(&component(host, extra), "test-app")
        .await
        .expect("open pubsub.redis")
}

fn publish_req(topic: &str, data: impl Into<Bytes>) -> PublishRequest {
    PublishRequest {
        topic: topic.to_owned(),
        data: data.into(),
        content_type: Some("application/json".into()),
        metadata: HashMap::new(),
    }
}

fn subscribe_req(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_owned(),
        metadata: HashMap::new(),
        max_concurrency: 4,
    }
}

fn forwarding() -> (Handler, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(msg);
            Ok(())
        })
    });
    (handler, rx)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Message>, what: &str) -> Message {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("handler channel open")
}

/// Streams named `<prefix>*` on the shared Redis, deleted on drop (also when a test fails).
struct Streams {
    prefix: String,
}

impl Streams {
    fn new(what: &str) -> Self {
        Self {
            prefix: format!("outrigger-test-{what}-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(format!("redis://{SHARED_REDIS}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        // SCAN, not KEYS: the shared Redis may hold much more than our streams.
        let keys: Vec<String> = redis::Commands::scan_match(&mut conn, format!("{}*", self.prefix))
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

async fn raw(host: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{host}/"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let streams = Streams::new("conformance");
    support::pubsub_conformance::run(
        |group| async move { Arc::new(broker(SHARED_REDIS, &[("consumerID", &group)]).await) },
        &streams.prefix,
    )
    .await;
}

/// daprd and Outrigger sidecars share streams: what one writes the other reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daprd_wire_format_both_ways() {
    let streams = Streams::new("interop");
    let topic = format!("{}-orders", streams.prefix);
    let mut conn = raw(SHARED_REDIS).await;

    // Written before anyone subscribed: the group starts at 0, so it is still delivered.
    let _: String = redis::cmd("XADD")
        .arg(&topic)
        .arg("*")
        .arg("data")
        .arg(r#"{"early":true}"#)
        .query_async(&mut conn)
        .await
        .expect("raw XADD");

    let pubsub = broker(SHARED_REDIS, &[("consumerID", "interop-group")]).await;
    let (handler, mut rx) = forwarding();
    let sub = pubsub
        .subscribe(subscribe_req(&topic), handler)
        .await
        .expect("subscribe");
    assert_eq!(
        recv(&mut rx, "the early raw message").await.data,
        r#"{"early":true}"#
    );

    // As daprd writes it: a data field and the metadata JSON.
    let _: String = redis::cmd("XADD")
        .arg(&topic)
        .arg("*")
        .arg("data")
        .arg(&[1u8, 2, 255][..])
        .arg("metadata")
        .arg(r#"{"rawPayload":"true"}"#)
        .query_async(&mut conn)
        .await
        .expect("raw XADD with metadata");
    let msg = recv(&mut rx, "the raw message with metadata").await;
    assert_eq!(msg.topic, topic);
    assert_eq!(msg.data, Bytes::from_static(&[1, 2, 255]));
    assert_eq!(
        msg.metadata.get("rawPayload").map(String::as_str),
        Some("true")
    );

    // daprd's naming: consumerID is the group and the consumer name within it.
    let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&topic)
        .arg("interop-group")
        .query_async(&mut conn)
        .await
        .expect("XINFO CONSUMERS");
    let names: Vec<String> = consumers
        .iter()
        .filter_map(|c| match c.get("name") {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["interop-group"]);
    sub.stop().await;

    // What we publish is what daprd reads: fields `data` and `metadata`.
    let wire_topic = format!("{}-published", streams.prefix);
    let mut req = publish_req(&wire_topic, r#"{"n":1}"#);
    req.metadata.insert("ttlInSeconds".into(), "30".into());
    pubsub.publish(req).await.expect("publish");
    pubsub
        .publish(publish_req(&wire_topic, "plain"))
        .await
        .expect("publish without metadata");
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(&wire_topic)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let fields: Vec<Vec<String>> = entries
        .into_iter()
        .map(|(_, f)| {
            f.into_iter()
                .map(|b| String::from_utf8(b).expect("utf8"))
                .collect()
        })
        .collect();
    assert_eq!(
        fields,
        [
            vec!["data", r#"{"n":1}"#, "metadata", r#"{"ttlInSeconds":"30"}"#],
            vec!["data", "plain"],
        ]
    );
    pubsub.close().await;
}

#[tokio::test]
async fn unreachable_redis_fails_open_within_dial_timeout() {
    let port = support::unused_port().await;
    let started = Instant::now();
    let err = open(
        &component(&format!("127.0.0.1:{port}"), &[("dialTimeout", "1s")]),
        "test-app",
    )
    .await
    .expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(
        matches!(&err, PubSubError::Backend(m) if m.contains(&port.to_string())),
        "{err}"
    );
}

/// A `redis-server` of our own, without persistence, killed on drop.
struct RedisServer {
    child: Child,
}

impl RedisServer {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let server = Self { child };
        let host = format!("127.0.0.1:{port}");
        support::eventually("our redis-server to answer", || async {
            let client = redis::Client::open(format!("redis://{host}/")).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            (pong == "PONG").then_some(())
        })
        .await;
        server
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Without persistence a restarted Redis is empty: messages published before the restart and
/// not yet acked are gone with its memory. What is guaranteed: publishes fail fast while it is
/// away, and afterwards the consumer reconnects by itself, recreates its group, and new messages
/// flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_recovers_after_redis_restart() {
    let port = support::unused_port().await;
    let host = format!("127.0.0.1:{port}");
    let mut server = RedisServer::start(port).await;
    let pubsub = broker(&host, &[("consumerID", "restart-group")]).await;
    let (handler, mut rx) = forwarding();
    let sub = pubsub
        .subscribe(subscribe_req("restart-topic"), handler)
        .await
        .expect("subscribe");
    for i in 0..3 {
        pubsub
            .publish(publish_req("restart-topic", format!("before-{i}")))
            .await
            .expect("publish before the restart");
    }
    for _ in 0..3 {
        recv(&mut rx, "messages before the restart").await;
    }

    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let err = pubsub
            .publish(publish_req("restart-topic", "while-down"))
            .await
            .expect_err("publish while redis is down");
        assert!(matches!(err, PubSubError::Backend(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
    }

    let _server = RedisServer::start(port).await;
    // The first publish may still meet the dead connection; the shared one reconnects by itself.
    support::eventually("publish after the restart", || async {
        pubsub
            .publish(publish_req("restart-topic", "after"))
            .await
            .ok()
    })
    .await;
    let msg = recv(&mut rx, "the message published after the restart").await;
    assert_eq!(msg.data, "after");

    sub.stop().await;
    pubsub.close().await;
}

/// `stop` releases the reader's blocked `XREADGROUP`, so a message published right after it is
/// not handed to a reader that is gone (where it would wait `processingTimeout` for a reclaim):
/// it stays unread in the group and the next subscription gets it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_the_blocked_read() {
    let port = support::unused_port().await;
    let host = format!("127.0.0.1:{port}");
    let _server = RedisServer::start(port).await;
    let mut conn = raw(&host).await;
    let pubsub = broker(
        &host,
        &[("consumerID", "stop-group"), ("readTimeout", "10s")],
    )
    .await;
    let (handler, mut rx) = forwarding();
    let sub = pubsub
        .subscribe(subscribe_req("stop-topic"), handler)
        .await
        .expect("subscribe");
    support::eventually("the reader to block in XREADGROUP", || {
        let mut conn = conn.clone();
        async move {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .ok()?;
            clients
                .lines()
                .any(|l| l.contains("cmd=xreadgroup") && l.contains("flags=b"))
                .then_some(())
        }
    })
    .await;

    let started = Instant::now();
    sub.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop waited for the 10s BLOCK: {:?}",
        started.elapsed()
    );
    pubsub
        .publish(publish_req("stop-topic", "after-stop"))
        .await
        .expect("publish");
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("stop-topic")
        .arg("stop-group")
        .query_async(&mut conn)
        .await
        .expect("XPENDING");
    assert_eq!(pending.first(), Some(&redis::Value::Int(0)), "{pending:?}");
    assert!(rx.try_recv().is_err(), "nothing is handled after stop");

    let (handler, mut rx) = forwarding();
    let sub = pubsub
        .subscribe(subscribe_req("stop-topic"), handler)
        .await
        .expect("resubscribe");
    let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("delivered at once, not after processingTimeout")
        .expect("channel open");
    assert_eq!(msg.data, "after-stop");
    sub.stop().await;
    pubsub.close().await;
}

/// A handler call that outlives `processingTimeout` is abandoned, not acked, and the message is
/// redelivered (daprd cancels the handler's context at that deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_is_abandoned_and_the_message_redelivered() {
    let streams = Streams::new("hung");
    let topic = format!("{}-t", streams.prefix);
    let pubsub = broker(SHARED_REDIS, &[("consumerID", "hung-group")]).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = {
        let calls = calls.clone();
        Arc::new(move |msg: Message| {
            let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            let tx = tx.clone();
            Box::pin(async move {
                if first {
                    std::future::pending::<()>().await;
                }
                let _ = tx.send(msg);
                Ok(())
            })
        })
    };
    let mut req = subscribe_req(&topic);
    req.metadata
        .insert("processingTimeout".into(), "300ms".into());
    req.metadata
        .insert("redeliverInterval".into(), "100ms".into());
    let sub = pubsub.subscribe(req, handler).await.expect("subscribe");
    pubsub
        .publish(publish_req(&topic, "stuck"))
        .await
        .expect("publish");
    assert_eq!(recv(&mut rx, "the redelivered message").await.data, "stuck");
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    sub.stop().await;
    pubsub.close().await;
}

/// Handler calls never exceed the smaller of the subscription's `max_concurrency` and the
/// component's `concurrency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_concurrency_is_bounded() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let streams = Streams::new("bounded");
    let topic = format!("{}-t", streams.prefix);
    let pubsub = broker(
        SHARED_REDIS,
        &[("consumerID", "bounded-group"), ("concurrency", "3")],
    )
    .await;
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = {
        let (running, peak) = (running.clone(), peak.clone());
        Arc::new(move |msg: Message| {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Hold the slot a little so calls overlap if the bound allowed it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(msg);
                Ok(())
            })
        })
    };
    let mut req = subscribe_req(&topic);
    req.max_concurrency = 2;
    let sub = pubsub.subscribe(req, handler).await.expect("subscribe");
    let failed = pubsub
        .bulk_publish(
            (0..12)
                .map(|i| publish_req(&topic, i.to_string()))
                .collect(),
        )
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    for _ in 0..12 {
        recv(&mut rx, "every message").await;
    }
    assert!(peak.load(Ordering::SeqCst) <= 2, "peak {peak:?}");
    sub.stop().await;
    pubsub.close().await;
}
