use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::*;

fn request(topic: &str) -> PublishRequest {
    PublishRequest {
        topic: topic.to_owned(),
        data: Bytes::from_static(b"x"),
        content_type: None,
        metadata: HashMap::new(),
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    assert_eq!(backoff(0), FIRST_BACKOFF);
    assert_eq!(backoff(1), FIRST_BACKOFF * 2);
    assert_eq!(backoff(40), MAX_BACKOFF);
}

#[tokio::test]
async fn concurrency_is_bounded_and_wildcards_deliver() {
    let broker = MemoryPubSub::new();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handler: Handler = {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        Arc::new(move |_msg| {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
    };
    let sub = broker
        .subscribe(
            SubscribeRequest {
                topic: "orders/+".into(),
                metadata: HashMap::new(),
                max_concurrency: 2,
            },
            handler,
        )
        .await
        .unwrap();
    for _ in 0..10 {
        broker.publish(request("orders/eu")).await.unwrap();
    }
    broker.publish(request("other")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while done.load(Ordering::SeqCst) < 10 {
        assert!(tokio::time::Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sub.stop().await;
    assert_eq!(done.load(Ordering::SeqCst), 10);
    assert!(peak.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn messages_before_subscribing_are_not_kept() {
    let broker = MemoryPubSub::new();
    broker.publish(request("t")).await.unwrap();
    assert!(broker
        .bus
        .topics
        .lock()
        .unwrap()
        .values()
        .all(|g| g.is_empty()));
    broker.close().await;
    assert!(broker.publish(request("t")).await.is_err());
}
