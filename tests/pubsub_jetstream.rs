//! `pubsub.jetstream` against a real nats-server with JetStream: each test starts its own server
//! process on a free loopback port with a scratch store directory (the `nats-server` package).
//! This file holds the conformance suite, the server restart and `maxDeliver`; the rest is in
//! `pubsub_jetstream/`.

#[path = "pubsub_jetstream/behaviour.rs"]
mod behaviour;
#[path = "pubsub_jetstream/harness.rs"]
mod harness;
mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use outrigger::pubsub::jetstream::PUBLISH_TIMEOUT;
use outrigger::pubsub::{Handler, Message, Nack, PubSub, PubSubError};

use harness::{broker, create_stream, nats, publish, subscribe, NatsServer};
use support::{eventually, unused_port};

#[tokio::test]
async fn conformance_with_durable_name_groups() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "CONF", &["conf.>"]).await;
    // The suite's consumer group is the durable name; queueGroupName is set too, as daprd's
    // docs recommend, and changes nothing for pull consumers.
    support::pubsub_conformance::run(
        |group| {
            let url = url.clone();
            async move {
                Arc::new(broker(&url, &[("durableName", &group), ("queueGroupName", &group)]).await)
            }
        },
        "conf.durable",
    )
    .await;
}

#[tokio::test]
async fn conformance_with_queue_group_only() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "QUEUE", &["queue.>"]).await;
    support::pubsub_conformance::run(
        |group| {
            let url = url.clone();
            async move { Arc::new(broker(&url, &[("queueGroupName", &group)]).await) }
        },
        "queue.only",
    )
    .await;
}

#[tokio::test]
async fn server_restart_loses_nothing_and_publish_fails_fast_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let port = unused_port().await;
    let mut server = NatsServer::start(port, &store, &[]).await;
    let url = server.url();
    create_stream(&url, "RESTART", &["restart.>"]).await;
    let topic = "restart.orders";
    let broker = broker(&url, &[("durableName", "svc"), ("ackWait", "1s")]).await;

    // While `accepting` is false the handler refuses everything, so messages stay unacked.
    let accepting = Arc::new(AtomicBool::new(true));
    let handled: Arc<Mutex<HashSet<Bytes>>> = Arc::default();
    let handler: Handler = {
        let (accepting, handled) = (accepting.clone(), handled.clone());
        Arc::new(move |msg: Message| {
            let (accepting, handled) = (accepting.clone(), handled.clone());
            Box::pin(async move {
                if !accepting.load(Ordering::SeqCst) {
                    return Err(Nack("not now".into()));
                }
                handled.lock().unwrap().insert(msg.data);
                Ok(())
            })
        })
    };
    let sub = broker
        .subscribe(subscribe(topic, 4), handler)
        .await
        .expect("subscribe");
    let has_all = |names: Vec<String>| {
        let handled = handled.clone();
        move || {
            let done = names
                .iter()
                .all(|n| handled.lock().unwrap().contains(n.as_bytes()));
            async move { done.then_some(()) }
        }
    };
    let before: Vec<String> = (0..5).map(|i| format!("before-{i}")).collect();
    for name in &before {
        broker
            .publish(publish(topic, name.clone()))
            .await
            .expect("publish");
    }
    eventually("messages handled before the restart", has_all(before)).await;

    accepting.store(false, Ordering::SeqCst);
    let unacked: Vec<String> = (0..5).map(|i| format!("unacked-{i}")).collect();
    for name in &unacked {
        broker
            .publish(publish(topic, name.clone()))
            .await
            .expect("publish");
    }
    server.kill();

    let started = Instant::now();
    let err = broker
        .publish(publish(topic, "while-down"))
        .await
        .expect_err("publish while NATS is down");
    assert!(matches!(err, PubSubError::Backend(_)), "{err:?}");
    assert!(
        started.elapsed() <= PUBLISH_TIMEOUT + Duration::from_secs(1),
        "publish took {:?}",
        started.elapsed()
    );

    accepting.store(true, Ordering::SeqCst);
    let _server = NatsServer::start(port, &store, &[]).await;
    eventually(
        "unacked messages redelivered after the restart",
        has_all(unacked),
    )
    .await;
    eventually("publishing works again", || {
        let broker = &broker;
        async move { broker.publish(publish(topic, "after")).await.ok() }
    })
    .await;
    eventually(
        "a message published after the restart",
        has_all(vec!["after".into()]),
    )
    .await;
    sub.stop().await;
    broker.close().await;
}

#[tokio::test]
async fn max_deliver_stops_redelivery() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "POISON", &["poison"]).await;
    let topic = "poison";
    // The server announces a message it gave up on; listen before publishing.
    let admin = async_nats::connect(&url).await.expect("admin connect");
    let consumer = "md-poison"; // <durableName>-<topic>
    let mut gave_up = admin
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.POISON.{consumer}"
        ))
        .await
        .expect("advisory subscription");
    let broker = broker(
        &url,
        &[
            ("durableName", "md"),
            ("maxDeliver", "3"),
            ("ackWait", "200ms"),
        ],
    )
    .await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let handler: Handler = {
        let attempts = attempts.clone();
        Arc::new(move |_msg| {
            attempts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Nack("never".into())) })
        })
    };
    let sub = broker
        .subscribe(subscribe(topic, 1), handler)
        .await
        .expect("subscribe");
    broker
        .publish(publish(topic, "poison"))
        .await
        .expect("publish");
    tokio::time::timeout(Duration::from_secs(20), gave_up.next())
        .await
        .expect("max-deliveries advisory in time")
        .expect("advisory");
    let js = jetstream::new(admin);
    let info = js
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(consumer, "POISON")
        .await
        .expect("consumer")
        .cached_info()
        .clone();
    assert_eq!(info.num_ack_pending, 0, "nothing left to redeliver");
    assert_eq!(info.num_pending, 0);
    sub.stop().await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    broker.close().await;
}
