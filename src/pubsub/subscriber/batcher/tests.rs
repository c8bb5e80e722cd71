use std::sync::Mutex;

use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture};
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};

use super::*;

/// Answers each entry with the verdict named in its event (`"answer"`), and keeps every batch.
#[derive(Default)]
struct ByEventPostman {
    batches: Mutex<Vec<BulkMessage>>,
}

impl Postman for ByEventPostman {
    fn deliver(&self, _msg: SubscribedMessage) -> BoxFuture<'_, Verdict> {
        Box::pin(async { Verdict::Retry("bulk only".into()) })
    }

    fn deliver_bulk(&self, batch: BulkMessage) -> BoxFuture<'_, Vec<Verdict>> {
        let verdicts = batch
            .entries
            .iter()
            .map(|e| match e.message.event["answer"].as_str() {
                Some("SUCCESS") => Verdict::Success,
                Some("DROP") => Verdict::deliberate_drop("asked"),
                _ => Verdict::Retry("asked".into()),
            })
            .collect();
        self.batches.lock().expect("lock").push(batch);
        Box::pin(async move { verdicts })
    }
}

fn message(path: &str, answer: &str) -> SubscribedMessage {
    let event: Map<String, Value> = json!({"answer": answer})
        .as_object()
        .expect("object")
        .clone();
    SubscribedMessage {
        pubsub_name: Arc::from("ps"),
        topic: Arc::from("t"),
        path: path.to_owned(),
        body: Bytes::from(Value::Object(event.clone()).to_string()),
        event,
        raw: None,
        content_type: None,
        metadata: HashMap::new(),
    }
}

fn batcher(postman: &Arc<ByEventPostman>, max_messages: usize, max_await: Duration) -> Batcher {
    let metrics = Arc::new(ComponentMetrics::new(&mut Registry::default(), "app", "ns"));
    Batcher::start(
        postman.clone(),
        BatchLimits {
            max_messages,
            max_await,
        },
        metrics,
    )
}

#[tokio::test]
async fn a_full_batch_goes_at_once() {
    let postman = Arc::new(ByEventPostman::default());
    // The time trigger is far away: only the size trigger can deliver within the test.
    let b = batcher(&postman, 3, Duration::from_secs(3600));
    let verdicts = tokio::time::timeout(
        Duration::from_secs(10),
        join_all((0..3).map(|_| b.submit(message("/p", "SUCCESS")))),
    )
    .await
    .expect("delivered when the batch is full");
    assert!(verdicts.iter().all(|v| *v == Verdict::Success));
    let batches = postman.batches.lock().expect("lock");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entries.len(), 3);
}

#[tokio::test]
async fn a_partial_batch_goes_after_the_wait() {
    let postman = Arc::new(ByEventPostman::default());
    let wait = Duration::from_millis(150);
    let b = batcher(&postman, 100, wait);
    let started = Instant::now();
    let verdicts = join_all((0..2).map(|_| b.submit(message("/p", "SUCCESS")))).await;
    assert!(started.elapsed() >= wait, "not before maxAwaitDuration");
    assert_eq!(verdicts, vec![Verdict::Success, Verdict::Success]);
    let batches = postman.batches.lock().expect("lock");
    assert_eq!(batches.len(), 1, "both in one batch");
    assert_eq!(batches[0].entries.len(), 2);
}

#[tokio::test]
async fn each_caller_gets_its_own_entry_verdict_and_paths_split_the_batch() {
    let postman = Arc::new(ByEventPostman::default());
    let b = batcher(&postman, 4, Duration::from_secs(3600));
    let verdicts = join_all([
        b.submit(message("/a", "SUCCESS")),
        b.submit(message("/b", "DROP")),
        b.submit(message("/a", "RETRY")),
        b.submit(message("/b", "SUCCESS")),
    ])
    .await;
    assert_eq!(verdicts[0], Verdict::Success);
    assert!(matches!(verdicts[1], Verdict::Drop(_)));
    assert!(matches!(verdicts[2], Verdict::Retry(_)));
    assert_eq!(verdicts[3], Verdict::Success);
    let batches = postman.batches.lock().expect("lock");
    let mut shape: Vec<(String, usize)> = batches
        .iter()
        .map(|b| (b.path.clone(), b.entries.len()))
        .collect();
    shape.sort();
    assert_eq!(shape, vec![("/a".to_owned(), 2), ("/b".to_owned(), 2)]);
    let ids: std::collections::HashSet<&str> = batches
        .iter()
        .flat_map(|b| b.entries.iter().map(|e| e.entry_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 4, "entry ids are unique");
    assert!(batches.iter().all(|b| b.metadata["pubsubName"] == "ps"));
}
