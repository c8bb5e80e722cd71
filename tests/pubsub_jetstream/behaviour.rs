//! Concurrency, handover, errors, auth, message metadata, ack policy and consumer recreation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use outrigger::pubsub::jetstream::{open, PUBLISH_TIMEOUT};
use outrigger::pubsub::{Handler, Nack, PubSub, PubSubError};
use tokio::sync::watch;

use crate::harness::{
    broker, component, create_stream, holding, nats, publish, recording, subscribe, Holding,
};
use crate::support::{eventually, unused_port};

#[tokio::test]
async fn parallel_concurrency_is_bounded_by_max_concurrency() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "PAR", &["par"]).await;
    let broker = broker(&url, &[("durableName", "p"), ("concurrency", "parallel")]).await;
    for i in 0..9 {
        broker
            .publish(publish("par", i.to_string()))
            .await
            .expect("publish");
    }
    let (release_tx, release_rx) = watch::channel(false);
    let Holding {
        handler,
        now,
        max,
        done,
    } = holding(release_rx);
    let sub = broker
        .subscribe(subscribe("par", 3), handler)
        .await
        .expect("subscribe");
    eventually("three messages in the handler at once", || {
        let held = now.load(Ordering::SeqCst);
        async move { (held == 3).then_some(()) }
    })
    .await;
    release_tx.send_replace(true);
    eventually("all nine handled", || {
        let n = done.lock().unwrap().len();
        async move { (n == 9).then_some(()) }
    })
    .await;
    assert_eq!(
        max.load(Ordering::SeqCst),
        3,
        "never more than max_concurrency"
    );
    sub.stop().await;
    broker.close().await;
}

#[tokio::test]
async fn single_concurrency_is_daprds_default_and_keeps_order() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "SINGLE", &["single"]).await;
    let broker = broker(&url, &[("durableName", "s")]).await;
    let sent: Vec<Bytes> = (0..6).map(|i| Bytes::from(i.to_string())).collect();
    for data in &sent {
        broker
            .publish(publish("single", data.clone()))
            .await
            .expect("publish");
    }
    // Released from the start: each call still gets a moment in which a second one could
    // overlap if the consumer allowed it.
    let (_release_tx, release_rx) = watch::channel(true);
    let Holding {
        handler: inner,
        max,
        done,
        ..
    } = holding(release_rx);
    let handler: Handler = Arc::new(move |msg| {
        let inner = inner.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            inner(msg).await
        })
    });
    let sub = broker
        .subscribe(subscribe("single", 8), handler)
        .await
        .expect("subscribe");
    let want = sent.len();
    eventually("all handled", || {
        let n = done.lock().unwrap().len();
        async move { (n == want).then_some(()) }
    })
    .await;
    assert_eq!(max.load(Ordering::SeqCst), 1);
    assert_eq!(*done.lock().unwrap(), sent, "published order");
    sub.stop().await;
    broker.close().await;
}

#[tokio::test]
async fn a_new_member_of_the_group_gets_messages_right_after_another_stops() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "HANDOVER", &["handover"]).await;
    // The default ack wait (30s) is far longer than the deadline below: a message lost to the
    // stopped subscriber's pull request would only come back after it.
    let first = broker(&url, &[("durableName", "h")]).await;
    let (handler, _) = recording();
    let idle = first
        .subscribe(subscribe("handover", 4), handler)
        .await
        .expect("subscribe");
    idle.stop().await;
    first.close().await;

    let second = broker(&url, &[("durableName", "h")]).await;
    let (handler, seen) = recording();
    let sub = second
        .subscribe(subscribe("handover", 4), handler)
        .await
        .expect("subscribe");
    second
        .publish(publish("handover", "hello"))
        .await
        .expect("publish");
    let started = Instant::now();
    eventually("the message at the new subscriber", || {
        let got = seen.lock().unwrap().len();
        async move { (got == 1).then_some(()) }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    sub.stop().await;
    second.close().await;
}

#[tokio::test]
async fn missing_stream_is_a_clear_error_and_outrigger_does_not_create_one() {
    let (_dir, server) = nats(&[]).await;
    let broker = broker(&server.url(), &[("durableName", "x")]).await;
    let (handler, _) = recording();
    match broker.subscribe(subscribe("nowhere", 1), handler).await {
        Err(PubSubError::Config(msg)) => assert!(msg.contains("no JetStream stream"), "{msg}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    let started = Instant::now();
    let err = broker
        .publish(publish("nowhere", "x"))
        .await
        .expect_err("nothing captures the subject");
    assert!(matches!(err, PubSubError::Backend(_)), "{err:?}");
    assert!(started.elapsed() <= PUBLISH_TIMEOUT + Duration::from_secs(1));
    broker.close().await;
}

#[tokio::test]
async fn token_auth_and_unreachable_servers() {
    let (_dir, server) = nats(&["--auth", "s3cret"]).await;
    let url = server.url();
    match open(&component(&url, &[]), "app").await {
        Err(PubSubError::Backend(msg)) => assert!(msg.contains("cannot connect"), "{msg}"),
        other => panic!("expected a backend error, got {:?}", other.map(|_| ())),
    }
    let authed = broker(&url, &[("token", "s3cret")]).await;
    authed.close().await;

    let nobody = format!("nats://127.0.0.1:{}", unused_port().await);
    match open(&component(&nobody, &[]), "app").await {
        Err(PubSubError::Backend(_)) => {}
        other => panic!("expected a backend error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn received_messages_carry_subject_and_content_type() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "META", &["meta.>"]).await;
    let broker = broker(&url, &[]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(msg);
            Ok(())
        })
    });
    let sub = broker
        .subscribe(subscribe("meta.a", 1), handler)
        .await
        .expect("subscribe");
    broker
        .publish(publish("meta.a", "x"))
        .await
        .expect("publish");
    let msg = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(msg.topic, "meta.a");
    assert_eq!(msg.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        msg.metadata.get("Topic").map(String::as_str),
        Some("meta.a")
    );
    sub.stop().await;
    broker.close().await;
}

#[tokio::test]
async fn ack_policy_none_delivers_once_even_when_the_handler_fails() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "NONE", &["none"]).await;
    let broker = broker(&url, &[("durableName", "n"), ("ackPolicy", "none")]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let handler: Handler = {
        let calls = calls.clone();
        Arc::new(move |_msg| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Nack("refused".into())) })
        })
    };
    let sub = broker
        .subscribe(subscribe("none", 1), handler)
        .await
        .expect("subscribe");
    for i in 0..2 {
        broker
            .publish(publish("none", i.to_string()))
            .await
            .expect("publish");
    }
    eventually("both delivered", || {
        let n = calls.load(Ordering::SeqCst);
        async move { (n >= 2).then_some(()) }
    })
    .await;
    // The server tracks nothing to redeliver: with no acks, a delivery is final.
    let js = jetstream::new(async_nats::connect(&url).await.expect("admin connect"));
    let info = js
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>("n-none", "NONE")
        .await
        .expect("consumer")
        .cached_info()
        .clone();
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0));
    sub.stop().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    broker.close().await;
}

#[tokio::test]
async fn a_deleted_consumer_is_recreated_under_a_running_subscription() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "GONE", &["gone"]).await;
    let broker = broker(&url, &[("durableName", "g")]).await;
    let (handler, seen) = recording();
    let sub = broker
        .subscribe(subscribe("gone", 1), handler)
        .await
        .expect("subscribe");
    let has = |what: &'static str| {
        let seen = seen.clone();
        move || {
            let found = seen.lock().unwrap().iter().any(|d| d == what);
            async move { found.then_some(()) }
        }
    };
    broker
        .publish(publish("gone", "first"))
        .await
        .expect("publish");
    eventually("the first message", has("first")).await;
    let js = jetstream::new(async_nats::connect(&url).await.expect("admin connect"));
    js.delete_consumer_from_stream("g-gone", "GONE")
        .await
        .expect("delete consumer");
    broker
        .publish(publish("gone", "second"))
        .await
        .expect("publish");
    eventually("a message after the consumer was deleted", has("second")).await;
    sub.stop().await;
    broker.close().await;
}

#[tokio::test]
async fn without_durable_or_queue_group_every_subscriber_gets_everything() {
    let (_dir, server) = nats(&[]).await;
    let url = server.url();
    create_stream(&url, "EPH", &["eph"]).await;
    let (one, two) = (broker(&url, &[]).await, broker(&url, &[]).await);
    let (handler_one, seen_one) = recording();
    let (handler_two, seen_two) = recording();
    let subs = [
        one.subscribe(subscribe("eph", 1), handler_one)
            .await
            .expect("subscribe one"),
        two.subscribe(subscribe("eph", 1), handler_two)
            .await
            .expect("subscribe two"),
    ];
    for i in 0..3 {
        one.publish(publish("eph", i.to_string()))
            .await
            .expect("publish");
    }
    eventually("both subscribers saw all three", || {
        let n = (
            seen_one.lock().unwrap().len(),
            seen_two.lock().unwrap().len(),
        );
        async move { (n == (3, 3)).then_some(()) }
    })
    .await;
    let js = jetstream::new(async_nats::connect(&url).await.expect("admin connect"));
    let consumers = || async {
        let mut stream = js.get_stream("EPH").await.expect("stream");
        stream
            .info()
            .await
            .expect("stream info")
            .state
            .consumer_count
    };
    assert_eq!(consumers().await, 2);
    for sub in subs {
        sub.stop().await;
    }
    // Ephemeral consumers belong to their subscription and go with it.
    assert_eq!(consumers().await, 0);
    one.close().await;
    two.close().await;
}
