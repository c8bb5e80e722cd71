//! `pubsub.in-memory`: a broker inside the process, as daprd's in-memory pub/sub. Every
//! consumer group (`consumerID`) subscribed to a topic gets each message published after it
//! subscribed; within a group the subscriptions compete for messages. A nacked message comes
//! back after a capped backoff until it is acked or its group has no subscription left, which
//! is what daprd's in-memory broker does under its default resiliency policy.
//!
//! Nothing is persisted: the bus lives as long as the sidecar that built it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    Feature, Handler, Message, PubSub, PubSubError, PublishRequest, SubscribeRequest, Subscription,
};

mod topic;

#[cfg(test)]
mod tests;

/// First redelivery delay after a nack; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Handler calls at once when the subscription sets no bound (`max_concurrency` 0). daprd hands
/// each in-memory message to its own goroutine; a bound keeps a burst from opening thousands of
/// app connections, and is far above what one app answers in parallel.
const DEFAULT_CONCURRENCY: usize = 100;

/// The shared medium of one or more [`MemoryPubSub`] instances: subscriptions by topic pattern
/// and consumer group. The registry holds groups weakly, so a group disappears with its last
/// subscription and messages published afterwards are not queued for nobody.
#[derive(Debug, Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<String, HashMap<String, Weak<Group>>>>,
}

impl MemoryBus {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Hands `msg` to every live group whose pattern matches its topic.
    fn publish(&self, msg: Message) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.retain(|pattern, groups| {
            groups.retain(|_, group| group.strong_count() > 0);
            if topic::matches(pattern, &msg.topic) {
                for group in groups.values().filter_map(Weak::upgrade) {
                    group.push(Delivery {
                        msg: msg.clone(),
                        attempt: 0,
                    });
                }
            }
            !groups.is_empty()
        });
    }

    /// The group `consumer_id` on `pattern`, created when no subscription of it is running.
    fn join(&self, pattern: &str, consumer_id: &str) -> Arc<Group> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let groups = topics.entry(pattern.to_owned()).or_default();
        if let Some(group) = groups.get(consumer_id).and_then(Weak::upgrade) {
            return group;
        }
        let group = Arc::new(Group::new());
        groups.insert(consumer_id.to_owned(), Arc::downgrade(&group));
        group
    }
}

/// One consumer group on one topic pattern: a queue its subscriptions take turns reading.
#[derive(Debug)]
struct Group {
    tx: mpsc::UnboundedSender<Delivery>,
    /// Shared by the group's subscriptions; whoever holds the lock takes the next message.
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivery>>,
}

impl Group {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    fn push(&self, delivery: Delivery) {
        // The receiver lives as long as the group, which the caller holds.
        let _ = self.tx.send(delivery);
    }

    async fn next(&self) -> Option<Delivery> {
        self.rx.lock().await.recv().await
    }
}

#[derive(Debug)]
struct Delivery {
    msg: Message,
    /// How many times the message was nacked so far.
    attempt: u32,
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF)
}

/// One `pubsub.in-memory` component instance: a bus and the consumer group it subscribes as.
#[derive(Debug)]
pub struct MemoryPubSub {
    bus: Arc<MemoryBus>,
    consumer_id: String,
    /// Parent of every subscription's stop token; cancelled by `close`.
    closed: CancellationToken,
}

impl Default for MemoryPubSub {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPubSub {
    /// A broker on a bus of its own.
    pub fn new() -> Self {
        Self::with_bus(MemoryBus::new(), "")
    }

    /// A broker on a shared bus: instances with the same `consumer_id` compete for messages,
    /// different ones each get every message.
    pub fn with_bus(bus: Arc<MemoryBus>, consumer_id: impl Into<String>) -> Self {
        Self {
            bus,
            consumer_id: consumer_id.into(),
            closed: CancellationToken::new(),
        }
    }

    fn start(&self, req: SubscribeRequest, handler: Handler) -> Subscription {
        let group = self.bus.join(&req.topic, &self.consumer_id);
        let stop = self.closed.child_token();
        let slots = match req.max_concurrency {
            0 => DEFAULT_CONCURRENCY,
            n => n,
        };
        let slots = Arc::new(Semaphore::new(slots));
        let task = tokio::spawn(consume(group, handler, slots, stop.clone()));
        Subscription::new(stop, task)
    }
}

/// Takes messages from the group while a handler slot is free; on stop, waits for the handler
/// calls already started, so each one is settled (acked, or queued again) before returning.
async fn consume(
    group: Arc<Group>,
    handler: Handler,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let mut in_flight = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            delivery = group.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        while in_flight.try_join_next().is_some() {}
        let handler = handler.clone();
        let retry_to = Arc::downgrade(&group);
        in_flight.spawn(async move {
            let outcome = handler(delivery.msg.clone()).await;
            drop(permit);
            if outcome.is_err() {
                redeliver(retry_to, delivery);
            }
        });
    }
    while in_flight.join_next().await.is_some() {}
}

/// Queues a nacked message again after its backoff, unless its group is gone by then (every
/// subscription of it stopped), in which case nobody is left to receive it.
fn redeliver(group: Weak<Group>, delivery: Delivery) {
    let delay = backoff(delivery.attempt);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(group) = group.upgrade() {
            group.push(Delivery {
                msg: delivery.msg,
                attempt: delivery.attempt.saturating_add(1),
            });
        }
    });
}

impl PubSub for MemoryPubSub {
    fn type_name(&self) -> &'static str {
        "pubsub.in-memory"
    }

    /// As daprd's in-memory component: `+`/`#` topic wildcards, no native message TTL.
    fn features(&self) -> &'static [Feature] {
        &[Feature::SubscribeWildcards]
    }

    fn publish(&self, req: PublishRequest) -> BoxFuture<'_, Result<(), PubSubError>> {
        Box::pin(async move {
            if self.closed.is_cancelled() {
                return Err(PubSubError::Backend("in-memory pubsub is closed".into()));
            }
            self.bus.publish(Message {
                topic: req.topic,
                data: req.data,
                content_type: req.content_type,
                metadata: req.metadata,
            });
            Ok(())
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        Box::pin(async move {
            if self.closed.is_cancelled() {
                return Err(PubSubError::Backend("in-memory pubsub is closed".into()));
            }
            Ok(self.start(req, handler))
        })
    }

    /// Stops every subscription; each settles its in-flight messages on its own.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.closed.cancel() })
    }
}
