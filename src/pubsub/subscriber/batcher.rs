//! Bulk subscribe above the broker (daprd `pkg/runtime/pubsub/default_bulksub.go`): brokers
//! call the handler once per message, so concurrent handler calls queue their message here and
//! wait. A batch goes to the app when it holds `maxMessagesCount` messages or when its first
//! message has waited `maxAwaitDurationMs`; each waiting call then resumes with the verdict of
//! its own entry, so every broker acks, redelivers or dead-letters message by message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::postman::{BulkEntry, BulkMessage, Postman, SubscribedMessage, Verdict};
use crate::telemetry::metrics::ComponentMetrics;

/// When a batch is complete.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchLimits {
    pub max_messages: usize,
    pub max_await: Duration,
}

struct Pending {
    msg: SubscribedMessage,
    reply: oneshot::Sender<Verdict>,
}

/// The queue of one bulk subscription. Cheap to clone; the batching task ends when the last
/// clone is dropped, after delivering what it holds.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    pub fn start(
        postman: Arc<dyn Postman>,
        limits: BatchLimits,
        metrics: Arc<ComponentMetrics>,
    ) -> Self {
        let limits = BatchLimits {
            max_messages: limits.max_messages.max(1),
            ..limits
        };
        // Callers are bounded by the consumer's concurrency; the queue only needs one batch.
        let (tx, rx) = mpsc::channel(limits.max_messages);
        tokio::spawn(collect(rx, postman, limits, metrics));
        Self { tx }
    }

    /// Queues `msg` for the next batch and waits for the app's verdict on it.
    pub async fn submit(&self, msg: SubscribedMessage) -> Verdict {
        let (reply, verdict) = oneshot::channel();
        if self.tx.send(Pending { msg, reply }).await.is_err() {
            return Verdict::Retry("the bulk subscription is closed".to_owned());
        }
        verdict
            .await
            .unwrap_or_else(|_| Verdict::Retry("the bulk delivery was abandoned".to_owned()))
    }
}

async fn collect(
    mut rx: mpsc::Receiver<Pending>,
    postman: Arc<dyn Postman>,
    limits: BatchLimits,
    metrics: Arc<ComponentMetrics>,
) {
    let mut flushes = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + limits.max_await;
        let mut batch = Vec::with_capacity(limits.max_messages);
        batch.push(first);
        while batch.len() < limits.max_messages {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(p) => batch.push(p),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Delivered apart so the next batch can fill while the app works on this one.
        flushes.spawn(flush(batch, postman.clone(), metrics.clone()));
        while flushes.try_join_next().is_some() {}
    }
    while flushes.join_next().await.is_some() {}
}

/// Entries that route to different paths go to the app in separate calls, as daprd does.
async fn flush(batch: Vec<Pending>, postman: Arc<dyn Postman>, metrics: Arc<ComponentMetrics>) {
    let mut by_path: Vec<(String, Vec<Pending>)> = Vec::new();
    for p in batch {
        match by_path.iter_mut().find(|(path, _)| *path == p.msg.path) {
            Some((_, group)) => group.push(p),
            None => by_path.push((p.msg.path.clone(), vec![p])),
        }
    }
    join_all(
        by_path
            .into_iter()
            .map(|(path, group)| deliver(path, group, &*postman, &metrics)),
    )
    .await;
}

async fn deliver(
    path: String,
    group: Vec<Pending>,
    postman: &dyn Postman,
    metrics: &ComponentMetrics,
) {
    let Some(first) = group.first() else {
        return;
    };
    let (pubsub_name, topic) = (first.msg.pubsub_name.clone(), first.msg.topic.clone());
    let mut replies = Vec::with_capacity(group.len());
    let mut entries = Vec::with_capacity(group.len());
    for p in group {
        replies.push(p.reply);
        entries.push(BulkEntry {
            entry_id: uuid::Uuid::new_v4().to_string(),
            message: p.msg,
        });
    }
    let batch = BulkMessage {
        metadata: HashMap::from([("pubsubName".to_owned(), pubsub_name.to_string())]),
        pubsub_name: pubsub_name.clone(),
        topic: topic.clone(),
        path,
        entries,
    };
    let started = Instant::now();
    let mut verdicts = postman.deliver_bulk(batch).await;
    let elapsed = started.elapsed();
    // A postman that answered for fewer entries leaves the rest unsettled: redeliver them.
    verdicts.resize_with(replies.len(), || {
        Verdict::Retry("no verdict for the bulk entry".to_owned())
    });
    let mut by_status = [("success", 0u64), ("retry", 0), ("drop", 0)];
    for (reply, verdict) in replies.into_iter().zip(verdicts) {
        if let Some(slot) = by_status
            .iter_mut()
            .find(|(s, _)| *s == verdict.process_status())
        {
            slot.1 += 1;
        }
        // The caller may have given up (its consumer stopped); the broker redelivers then.
        let _ = reply.send(verdict);
    }
    metrics.pubsub_bulk_ingress(&pubsub_name, &topic, &by_status, elapsed);
}

#[cfg(test)]
mod tests;
