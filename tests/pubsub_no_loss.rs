//! No message lost, through whole sidecars: 10,000 messages published over the sidecar HTTP
//! API to a subscriber app that refuses 20 % of deliveries at random, with the subscriber
//! sidecar restarted (graceful stop, a new one with the same app-id) and, for Redis, the Redis
//! server restarted mid-stream. Every required message must be handled successfully at least
//! once; duplicates and losses are counted and printed (`--nocapture`).

#[path = "pubsub_reliability/common.rs"]
#[allow(dead_code)]
mod common;
#[path = "pubsub_jetstream/harness.rs"]
#[allow(dead_code)]
mod harness;
mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use outrigger::sidecar::Sidecar;
use support::{eventually, Mesh};
use tokio::task::JoinHandle;

const TOTAL: u64 = 10_000;
const FAIL_RATE: f64 = 0.2;
/// Concurrent publishes, as a busy app would make them.
const PUBLISHERS: usize = 16;
/// Longest time without progress (publishes, or new messages handled) before a test fails.
const STALL: Duration = Duration::from_secs(30);

/// Waits until `progress` counts `n` published messages (the publishing task is running).
/// The deadline is on progress, not on the total: a loaded machine is slow, a stuck one is not.
async fn published(progress: &Progress, n: usize) {
    let (mut last, mut moved) = (progress.published(), Instant::now());
    while progress.published() < n {
        if progress.published() != last {
            (last, moved) = (progress.published(), Instant::now());
        }
        assert!(
            moved.elapsed() < STALL,
            "publishing stalled at {last} of {n} messages"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A publisher and a subscriber sidecar (in front of the refusing app) over one resources
/// directory, with `TOTAL` messages being published while the test disturbs the run.
struct Run {
    mesh: Mesh,
    flag: [String; 2],
    app: SubscriberApp,
    publisher: Sidecar,
    /// `None` only while it restarts.
    subscriber: Option<Sidecar>,
    progress: Arc<Progress>,
    publishing: JoinHandle<()>,
    _resources: tempfile::TempDir,
}

impl Run {
    async fn start(resources: tempfile::TempDir) -> Self {
        let flag = resources_flag(resources.path());
        let mesh = Mesh::new();
        let app = SubscriberApp::start("orders", FAIL_RATE).await;
        let args = [flag[0].as_str(), flag[1].as_str()];
        let publisher = mesh.sidecar("publisher", None, &args).await;
        let subscriber = mesh.sidecar("no-loss-sub", Some(app.port), &args).await;

        let progress = Arc::new(Progress::default());
        let publishing = tokio::spawn(publish_all(
            Publisher::new(&support::api(&publisher), "orders"),
            0..TOTAL,
            PUBLISHERS,
            progress.clone(),
        ));
        Self {
            mesh,
            flag,
            app,
            publisher,
            subscriber: Some(subscriber),
            progress,
            publishing,
            _resources: resources,
        }
    }

    /// Graceful stop, then a new sidecar with the same app-id.
    async fn restart_subscriber(&mut self) {
        self.subscriber
            .take()
            .expect("subscriber running")
            .stop()
            .await;
        let args = [self.flag[0].as_str(), self.flag[1].as_str()];
        let subscriber = self
            .mesh
            .sidecar("no-loss-sub", Some(self.app.port), &args)
            .await;
        self.subscriber = Some(subscriber);
    }

    async fn publishing_done(&mut self) {
        (&mut self.publishing)
            .await
            .expect("publishing ran to the end");
    }

    async fn stop(self) {
        self.subscriber.expect("subscriber running").stop().await;
        self.publisher.stop().await;
    }
}

fn report(broker: &str, progress: &Progress, ledger: &Ledger, started: Instant) {
    eprintln!(
        "{broker}: published {} ({} publish attempts refused and retried), handled {} distinct, \
         {} duplicates, {} deliveries ({} refused by the app), {:.1}s",
        progress.published(),
        progress.refused.load(Ordering::SeqCst),
        ledger.accepted_count(),
        ledger.duplicates(),
        ledger.attempts.load(Ordering::SeqCst),
        ledger.refused.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
}

/// Redis without persistence forgets everything when it restarts, so the test requires exactly:
/// - every message whose successful publish was *sent* after the restarted server answered
///   (it can only be in the new server), across the later subscriber sidecar restart too;
/// - every message the app accepted before the kill (it was handled: at least once holds).
///
/// Messages published to the old server and not yet handled when it died are lost with its
/// memory; the test counts them. Publishes while Redis is down must fail fast with
/// `ERR_PUBSUB_PUBLISH_MESSAGE`; the publisher retries them, as an app would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_streams_across_sidecar_and_redis_restarts() {
    let started = Instant::now();
    let port = support::unused_port().await;
    let mut server = RedisServer::start(port).await;
    // Quick redelivery keeps the test short; daprd's defaults (60s) would only make it slower.
    let resources = resources(
        "pubsub.redis",
        &[
            ("redisHost", &server.host()),
            ("processingTimeout", "1s"),
            ("redeliverInterval", "200ms"),
            ("concurrency", "32"),
        ],
    );
    let mut run = Run::start(resources).await;
    let (progress, ledger) = (run.progress.clone(), run.app.ledger.clone());

    // Redis goes away a third of the way in.
    published(&progress, 3_000).await;
    let handled_before_kill = ledger.accepted_ids();
    progress.phase.store(1, Ordering::SeqCst);
    server.kill();
    let refused_before = progress.refused.load(Ordering::SeqCst);
    eventually("publishes to fail while Redis is down", || async {
        (progress.refused.load(Ordering::SeqCst) >= refused_before + PUBLISHERS).then_some(())
    })
    .await;
    let _server = RedisServer::start(port).await;
    progress.phase.store(2, Ordering::SeqCst);

    // The subscriber sidecar restarts two thirds of the way in.
    published(&progress, 6_500).await;
    run.restart_subscriber().await;

    run.publishing_done().await;
    let after_restart = progress.sent_from_phase(2);
    let required: HashSet<u64> = after_restart.union(&handled_before_kill).copied().collect();
    assert!(
        after_restart.len() >= 6_000,
        "the restart came too late to mean anything: {} sent after it",
        after_restart.len()
    );
    all_handled("redis", &ledger, &required, STALL).await;

    let lost: Vec<u64> = progress
        .all_sent()
        .difference(&ledger.accepted_ids())
        .copied()
        .collect();
    report("redis", &progress, &ledger, started);
    eprintln!(
        "redis: {} required ({} sent after the Redis restart, {} handled before it), {} lost \
         with the old server's memory",
        required.len(),
        after_restart.len(),
        handled_before_kill.len(),
        lost.len()
    );
    // Only messages the old server held can be lost.
    assert!(
        lost.iter().all(|id| !after_restart.contains(id)),
        "{lost:?}"
    );
    run.stop().await;
}

/// JetStream keeps its messages on disk: every message is required, across a restart of the
/// subscriber sidecar. The durable consumer (`durableName`) keeps the position meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jetstream_across_a_sidecar_restart() {
    let started = Instant::now();
    let (_store, server) = harness::nats(&[]).await;
    harness::create_stream(&server.url(), "NOLOSS", &["orders"]).await;
    let resources = resources(
        "pubsub.jetstream",
        &[
            ("natsURL", &server.url()),
            ("durableName", "no-loss"),
            ("concurrency", "parallel"),
            ("ackWait", "1s"),
            ("maxAckPending", "64"),
        ],
    );
    let mut run = Run::start(resources).await;
    published(&run.progress, 5_000).await;
    run.restart_subscriber().await;
    run.publishing_done().await;

    let required: HashSet<u64> = (0..TOTAL).collect();
    all_handled("jetstream", &run.app.ledger, &required, STALL).await;
    report("jetstream", &run.progress, &run.app.ledger, started);
    assert_eq!(run.progress.refused.load(Ordering::SeqCst), 0);
    run.stop().await;
}

/// The in-memory broker lives in the sidecar, so publisher and subscriber are one sidecar and
/// there is nothing to restart; every message is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_with_random_app_failures() {
    let started = Instant::now();
    let mesh = Mesh::new();
    let app = SubscriberApp::start("orders", FAIL_RATE).await;
    let sidecar = mesh.sidecar("no-loss-mem", Some(app.port), &[]).await;
    support::ready(&sidecar).await;
    // The in-memory broker only delivers what is published after the subscription started, and
    // that happens once the app is reachable: probe (ids past the test's) until one arrives.
    let probe = Publisher::new(&support::api(&sidecar), "orders");
    let mut next_probe = TOTAL;
    eventually("the subscription to start", || {
        next_probe += 1;
        let (probe, ledger, id) = (probe.clone(), app.ledger.clone(), next_probe);
        async move {
            probe.publish(id, None).await.ok()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            (ledger.accepted_count() > 0).then_some(())
        }
    })
    .await;

    let progress = Arc::new(Progress::default());
    publish_all(
        Publisher::new(&support::api(&sidecar), "orders"),
        0..TOTAL,
        PUBLISHERS,
        progress.clone(),
    )
    .await;
    let required: HashSet<u64> = (0..TOTAL).collect();
    all_handled("in-memory", &app.ledger, &required, STALL).await;
    report("in-memory", &progress, &app.ledger, started);
    assert_eq!(progress.refused.load(Ordering::SeqCst), 0);
    sidecar.stop().await;
}
