//! Pub/sub across several whole sidecars: replicas of one app-id compete for a topic's messages
//! while different app-ids each get all of them (Redis Streams and NATS JetStream), the trace
//! context of a publish reaches the handler behind another sidecar, and a Redis server that goes
//! away makes publishes fail fast and the consumers come back by themselves.

#[path = "pubsub_reliability/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "pubsub_jetstream/harness.rs"]
#[allow(dead_code)]
mod harness;
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use outrigger::sidecar::Sidecar;
use support::{eventually, Mesh};

const MESSAGES: u64 = 300;

/// Publishes ids `0..MESSAGES` (none refused: the broker is up all along).
async fn publish_range(publisher: &Sidecar, topic: &str) {
    let progress = Arc::new(Progress::default());
    publish_all(
        Publisher::new(&support::api(publisher), topic),
        0..MESSAGES,
        4,
        progress.clone(),
    )
    .await;
    assert_eq!(progress.published(), MESSAGES as usize);
}

/// Two replicas of `workers` and one `auditor` subscribe; `publisher` publishes. The replicas
/// split the topic (each gets some, together all, none gets what the other got: no app fails,
/// so nothing is redelivered); the auditor gets everything.
async fn split_and_fan_out(
    mesh: &Mesh,
    workers_flags: &[&str],
    auditor_flags: &[&str],
    subscribed: impl AsyncFn(),
) {
    let (w1, w2, auditor) = (
        SubscriberApp::start("orders", 0.0).await,
        SubscriberApp::start("orders", 0.0).await,
        SubscriberApp::start("orders", 0.0).await,
    );
    let publisher = mesh.sidecar("publisher", None, workers_flags).await;
    let sidecars = [
        mesh.sidecar("workers", Some(w1.port), workers_flags).await,
        mesh.sidecar("workers", Some(w2.port), workers_flags).await,
        mesh.sidecar("auditor", Some(auditor.port), auditor_flags)
            .await,
    ];
    subscribed().await;
    publish_range(&publisher, "orders").await;

    let all: HashSet<u64> = (0..MESSAGES).collect();
    all_handled("the auditor", &auditor.ledger, &all, support::DEADLINE).await;
    eventually("the workers to handle every message", || async {
        let got: HashSet<u64> = w1
            .ledger
            .accepted_ids()
            .union(&w2.ledger.accepted_ids())
            .copied()
            .collect();
        (got == all).then_some(())
    })
    .await;
    let (one, two) = (w1.ledger.accepted_ids(), w2.ledger.accepted_ids());
    eprintln!(
        "workers split {MESSAGES} messages {} / {}; the auditor got {}",
        one.len(),
        two.len(),
        auditor.ledger.accepted_count()
    );
    assert!(
        !one.is_empty() && !two.is_empty(),
        "one replica got nothing"
    );
    assert_eq!(one.intersection(&two).count(), 0, "a message went to both");
    assert_eq!(auditor.ledger.duplicates(), 0);
    for sidecar in sidecars {
        sidecar.stop().await;
    }
    publisher.stop().await;
}

/// Waits until `n` readers block in `XREADGROUP` on `host`: every sidecar's consumer is up.
async fn redis_readers(host: &str, n: usize) {
    let client = redis::Client::open(format!("redis://{host}/")).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    eventually("every consumer to block in XREADGROUP", || {
        let mut conn = conn.clone();
        async move {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .ok()?;
            let blocked = clients
                .lines()
                .filter(|l| l.contains("cmd=xreadgroup"))
                .count();
            (blocked >= n).then_some(())
        }
    })
    .await;
}

/// daprd's default `consumerID` is the app-id: the consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_replicas_split_and_apps_each_get_all() {
    let server = RedisServer::start(support::unused_port().await).await;
    let host = server.host();
    let resources = resources("pubsub.redis", &[("redisHost", &host)]);
    let flag = resources_flag(resources.path());
    let flag = [flag[0].as_str(), flag[1].as_str()];
    split_and_fan_out(&Mesh::new(), &flag, &flag, async || {
        redis_readers(&host, 3).await
    })
    .await;
}

/// JetStream has no app-id default (daprd's neither): replicas share a consumer through the
/// `durableName` their app's component names, and another app names another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jetstream_replicas_split_and_apps_each_get_all() {
    let (_store, server) = harness::nats(&[]).await;
    harness::create_stream(&server.url(), "CONSUMERS", &["orders"]).await;
    let url = server.url();
    let component = |durable| {
        resources(
            "pubsub.jetstream",
            &[
                ("natsURL", &url),
                ("durableName", durable),
                ("concurrency", "parallel"),
            ],
        )
    };
    let (workers, auditor) = (component("workers"), component("auditor"));
    let (wf, af) = (
        resources_flag(workers.path()),
        resources_flag(auditor.path()),
    );
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("connect"));
    split_and_fan_out(
        &Mesh::new(),
        &[wf[0].as_str(), wf[1].as_str()],
        &[af[0].as_str(), af[1].as_str()],
        async || {
            // Both consumers exist once each app's sidecar subscribed; the workers' replicas
            // pull from the same one.
            eventually("both durable consumers", || {
                let js = js.clone();
                async move {
                    let mut stream = js.get_stream("CONSUMERS").await.ok()?;
                    let info = stream.info().await.ok()?;
                    (info.state.consumer_count == 2).then_some(())
                }
            })
            .await;
        },
    )
    .await;
}

/// The `traceparent` an app publishes with reaches the subscriber app's handler behind another
/// sidecar, with the same trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_crosses_sidecars() {
    let server = RedisServer::start(support::unused_port().await).await;
    let resources = resources("pubsub.redis", &[("redisHost", &server.host())]);
    let flag = resources_flag(resources.path());
    let flag = [flag[0].as_str(), flag[1].as_str()];
    let mesh = Mesh::new();
    let app = SubscriberApp::start("traced", 0.0).await;
    let publisher = mesh.sidecar("publisher", None, &flag).await;
    let subscriber = mesh.sidecar("traced-sub", Some(app.port), &flag).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    Publisher::new(&support::api(&publisher), "traced")
        .publish(7, Some(&traceparent))
        .await
        .expect("publish");
    let delivered = eventually("the traced message", || async { app.ledger.traceparent(7) }).await;
    let fields: Vec<&str> = delivered.split('-').collect();
    assert_eq!(fields.len(), 4, "{delivered}");
    assert_eq!(fields[1], trace_id, "{delivered}");
    subscriber.stop().await;
    publisher.stop().await;
}

/// Through the sidecars: with Redis gone a publish fails fast with daprd's error, and once Redis
/// is back the subscriber sidecar's consumer reconnects by itself and new messages arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_fails_publishes_fast_and_consumers_reconnect() {
    let port = support::unused_port().await;
    let mut server = RedisServer::start(port).await;
    let resources = resources("pubsub.redis", &[("redisHost", &server.host())]);
    let flag = resources_flag(resources.path());
    let flag = [flag[0].as_str(), flag[1].as_str()];
    let mesh = Mesh::new();
    let app = SubscriberApp::start("outage", 0.0).await;
    let publisher = mesh.sidecar("publisher", None, &flag).await;
    let subscriber = mesh.sidecar("outage-sub", Some(app.port), &flag).await;
    let publish = Publisher::new(&support::api(&publisher), "outage");

    publish.publish(1, None).await.expect("publish while up");
    eventually("the first message", || async {
        (app.ledger.times_accepted(1) > 0).then_some(())
    })
    .await;

    server.kill();
    for attempt in 0..3 {
        let refusal = publish
            .publish(100 + attempt, None)
            .await
            .expect_err("publish while Redis is down");
        assert_refused_fast(&refusal);
    }

    let _server = RedisServer::start(port).await;
    // The publisher's connection comes back on its own; the first attempt may still meet the
    // dead one.
    eventually("a publish after the restart", || async {
        publish.publish(2, None).await.ok()
    })
    .await;
    eventually("the message published after the restart", || async {
        (app.ledger.times_accepted(2) > 0).then_some(())
    })
    .await;
    for id in [100, 101, 102] {
        assert_eq!(
            app.ledger.times_accepted(id),
            0,
            "refused publish {id} delivered"
        );
    }
    subscriber.stop().await;
    publisher.stop().await;
}
