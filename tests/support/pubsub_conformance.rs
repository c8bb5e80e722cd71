//! One conformance suite every broker must pass. It drives the broker through the `PubSub`
//! trait only; envelopes and delivery to apps are tested at the sidecar level.
//!
//! `open` must return a fresh broker instance for a consumer group (`consumerID`): two instances
//! with the same group share the work, two groups each get every message.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outrigger::pubsub::{Handler, Message, Nack, PubSub, PublishRequest, SubscribeRequest};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

fn publish(topic: &str, data: impl Into<Bytes>) -> PublishRequest {
    PublishRequest {
        topic: topic.to_owned(),
        data: data.into(),
        content_type: Some("application/json".into()),
        metadata: HashMap::new(),
    }
}

fn subscribe(topic: &str) -> SubscribeRequest {
    SubscribeRequest {
        topic: topic.to_owned(),
        metadata: HashMap::new(),
        max_concurrency: 4,
    }
}

/// A handler that forwards every message to a channel and acks it.
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
        .expect("channel open")
}

/// Runs every check; `topic_prefix` keeps runs apart on a shared broker.
pub async fn run<F, Fut, P>(open: F, topic_prefix: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    round_trip(&open, &format!("{topic_prefix}-rt")).await;
    nack_redelivers(&open, &format!("{topic_prefix}-nack")).await;
    consumer_groups(&open, &format!("{topic_prefix}-groups")).await;
    stop_settles_in_flight(&open, &format!("{topic_prefix}-stop")).await;
    bulk_publish(&open, &format!("{topic_prefix}-bulk")).await;
}

async fn round_trip<F, Fut, P>(open: &F, topic: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    let broker = open("group-a".into()).await;
    let (handler, mut rx) = forwarding();
    let sub = broker
        .subscribe(subscribe(topic), handler)
        .await
        .expect("subscribe");
    let mut req = publish(topic, r#"{"n":1}"#);
    req.metadata.insert("custom".into(), "kept".into());
    broker.publish(req).await.expect("publish");
    let msg = recv(&mut rx, "the published message").await;
    assert_eq!(msg.topic, topic);
    assert_eq!(msg.data, r#"{"n":1}"#);
    let binary = Bytes::from_static(&[0, 255, 1, 254]);
    broker
        .publish(publish(topic, binary.clone()))
        .await
        .expect("publish binary");
    assert_eq!(recv(&mut rx, "the binary message").await.data, binary);
    sub.stop().await;
    broker.close().await;
}

async fn nack_redelivers<F, Fut, P>(open: &F, topic: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    let broker = open("group-a".into()).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = {
        let attempts = attempts.clone();
        Arc::new(move |msg: Message| {
            let attempts = attempts.clone();
            let tx = tx.clone();
            Box::pin(async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(Nack("not yet".into()));
                }
                let _ = tx.send(msg);
                Ok(())
            })
        })
    };
    let mut req = subscribe(topic);
    // Brokers that redeliver on a timer should do so quickly in tests.
    req.metadata
        .insert("redeliverInterval".into(), "200ms".into());
    req.metadata
        .insert("processingTimeout".into(), "200ms".into());
    req.metadata.insert("ackWait".into(), "1s".into());
    let sub = broker.subscribe(req, handler).await.expect("subscribe");
    broker
        .publish(publish(topic, "\"again\""))
        .await
        .expect("publish");
    let msg = recv(&mut rx, "the redelivered message").await;
    assert_eq!(msg.data, "\"again\"");
    assert!(attempts.load(Ordering::SeqCst) >= 3);
    sub.stop().await;
    broker.close().await;
}

async fn consumer_groups<F, Fut, P>(open: &F, topic: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    let (a1, a2, b) = (
        open("group-a".into()).await,
        open("group-a".into()).await,
        open("group-b".into()).await,
    );
    let seen: Arc<Mutex<Vec<(&'static str, Bytes)>>> = Arc::default();
    let counting = |name: &'static str| -> Handler {
        let seen = seen.clone();
        Arc::new(move |msg: Message| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().unwrap().push((name, msg.data));
                Ok(())
            })
        })
    };
    let subs = vec![
        a1.subscribe(subscribe(topic), counting("a1"))
            .await
            .expect("subscribe a1"),
        a2.subscribe(subscribe(topic), counting("a2"))
            .await
            .expect("subscribe a2"),
        b.subscribe(subscribe(topic), counting("b"))
            .await
            .expect("subscribe b"),
    ];
    const N: usize = 40;
    for i in 0..N {
        a1.publish(publish(topic, i.to_string()))
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (group_a, group_b) = {
            let seen = seen.lock().unwrap();
            let a: HashSet<Bytes> = seen
                .iter()
                .filter(|(n, _)| *n != "b")
                .map(|(_, d)| d.clone())
                .collect();
            let b: HashSet<Bytes> = seen
                .iter()
                .filter(|(n, _)| *n == "b")
                .map(|(_, d)| d.clone())
                .collect();
            (a.len(), b.len())
        };
        if group_a == N && group_b == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group a saw {group_a}/{N}, group b {group_b}/{N}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for sub in subs {
        sub.stop().await;
    }
    let a_total = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n != "b")
        .count();
    assert_eq!(
        a_total, N,
        "within one consumer group each message is handled once"
    );
    for broker in [a1, a2, b] {
        broker.close().await;
    }
}

async fn stop_settles_in_flight<F, Fut, P>(open: &F, topic: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    let broker = open("group-a".into()).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(AtomicUsize::new(0));
    let handler: Handler = {
        let (started, release, finished) = (started.clone(), release.clone(), finished.clone());
        Arc::new(move |_msg| {
            let (started, release, finished) = (started.clone(), release.clone(), finished.clone());
            Box::pin(async move {
                started.notify_one();
                release.notified().await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
    };
    let sub = broker
        .subscribe(subscribe(topic), handler)
        .await
        .expect("subscribe");
    let in_handler = started.notified();
    broker
        .publish(publish(topic, "\"slow\""))
        .await
        .expect("publish");
    in_handler.await;
    let stopping = tokio::spawn(sub.stop());
    release.notify_one();
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stop returns")
        .expect("stop task");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "stop waits for the in-flight handler"
    );

    // The acked message is not delivered again to a new consumer of the same group.
    let (handler, mut rx) = forwarding();
    let sub = broker
        .subscribe(subscribe(topic), handler)
        .await
        .expect("resubscribe");
    broker
        .publish(publish(topic, "\"next\""))
        .await
        .expect("publish");
    assert_eq!(recv(&mut rx, "the next message").await.data, "\"next\"");
    sub.stop().await;
    broker.close().await;
}

async fn bulk_publish<F, Fut, P>(open: &F, topic: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<P>>,
    P: PubSub,
{
    let broker = open("group-a".into()).await;
    let (handler, mut rx) = forwarding();
    let sub = broker
        .subscribe(subscribe(topic), handler)
        .await
        .expect("subscribe");
    let failed = broker
        .bulk_publish((0..5).map(|i| publish(topic, i.to_string())).collect())
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let mut got = HashSet::new();
    while got.len() < 5 {
        got.insert(recv(&mut rx, "bulk-published messages").await.data);
    }
    sub.stop().await;
    broker.close().await;
}
