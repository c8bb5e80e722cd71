//! The task behind one subscription: pull messages, hand each to the handler with at most
//! `limit` in flight, ack or nak by the outcome, and keep going through connection loss.
//!
//! Reconnection: the NATS client reconnects by itself and re-issues the pull request; when the
//! pull stream still breaks (the server restarted and JetStream was not ready yet, the consumer
//! was deleted), this loop looks the consumer up again, or recreates it, with a capped backoff.
//! The server keeps a durable consumer's position, so the loop resumes where it left off and
//! every unacked message comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::consumer;
use crate::pubsub::{Handler, Message};

/// Header Outrigger's publisher sets so a subscriber can restore the content type.
pub(super) const CONTENT_TYPE: &str = "Content-Type";

/// First wait before re-opening a broken pull stream, doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The most messages one pull request asks for: enough to keep parallel handlers busy, while
/// messages waiting in the client for a free slot stay few (their ack wait is running).
const MAX_BATCH: usize = 256;

/// A pull request's lifetime on the server; the client re-issues it when it expires.
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// Everything the consume task needs, moved into it.
pub(super) struct Consume {
    pub js: jetstream::Context,
    pub stream: String,
    /// Kept to recreate the consumer if the server lost it.
    pub config: pull::Config,
    pub topic: String,
    pub handler: Handler,
    pub limit: usize,
    pub settle: Settle,
    pub stop: CancellationToken,
}

/// What to tell the server once the handler is done. daprd's rules: nothing under
/// `ackPolicy: none`; a nak waits `ackWait` before redelivery when one is configured.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settle {
    pub acks: bool,
    pub nak_delay: Option<Duration>,
}

impl Consume {
    /// Runs until `stop` fires, then lets the handler calls already started finish and settle.
    pub async fn run(self, first: PullConsumer) {
        let permits = Arc::new(Semaphore::new(self.limit));
        let mut inflight = JoinSet::new();
        let mut name = first.cached_info().name.clone();
        let mut fresh = Some(first);
        let mut messages: Option<pull::Stream> = None;
        let mut retry = Duration::ZERO;
        let mut last_seen = 0u64;
        loop {
            // Finished deliveries leave the set here, so it never grows past `limit`.
            while inflight.try_join_next().is_some() {}
            let Some(stream) = messages.as_mut() else {
                if !retry.is_zero() {
                    tokio::select! {
                        biased;
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
                match self.open(fresh.take(), &name, last_seen).await {
                    Ok((consumer_name, stream)) => {
                        name = consumer_name;
                        messages = Some(stream);
                    }
                    Err(error) => {
                        retry = next_retry(retry);
                        tracing::warn!(topic = %self.topic, %error, ?retry,
                            "JetStream consumer unavailable; retrying");
                    }
                }
                continue;
            };
            let permit = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed; the loop just ends if it were
                },
            };
            let next = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(msg)) => {
                    retry = Duration::ZERO;
                    if let Ok(info) = msg.info() {
                        last_seen = last_seen.max(info.stream_sequence);
                    }
                    let handler = self.handler.clone();
                    inflight.spawn(deliver(
                        msg,
                        self.topic.clone(),
                        handler,
                        self.settle,
                        permit,
                    ));
                }
                Some(Err(error)) => {
                    retry = next_retry(retry);
                    tracing::warn!(topic = %self.topic, %error, "JetStream pull failed; reopening");
                    messages = None;
                }
                None => {
                    retry = next_retry(retry);
                    messages = None;
                }
            }
        }
        if let (Some(stream), true) = (messages, self.settle.acks) {
            release_buffered(stream).await;
        }
        while let Some(done) = inflight.join_next().await {
            if let Err(error) = done {
                // The message stays unacked and comes back after the ack wait.
                tracing::error!(topic = %self.topic, %error, "pubsub handler panicked");
            }
        }
        if self.config.durable_name.is_none() && self.config.name.is_none() {
            self.delete_ephemeral(&name).await;
        }
    }

    /// An ephemeral consumer belongs to this subscription alone: once it stopped, nobody will
    /// pull from it again, so it goes now rather than when the server's inactivity timer fires
    /// (which still cleans up if this fails, e.g. while NATS is away).
    async fn delete_ephemeral(&self, name: &str) {
        let deleted = tokio::time::timeout(
            RETRY_MAX,
            self.js.delete_consumer_from_stream(name, &self.stream),
        )
        .await;
        if !matches!(deleted, Ok(Ok(_))) {
            tracing::debug!(topic = %self.topic, consumer = name,
                "ephemeral consumer not deleted; the server drops it once inactive");
        }
    }

    /// A pull stream on the first consumer, or on the consumer looked up (or recreated) again.
    async fn open(
        &self,
        fresh: Option<PullConsumer>,
        name: &str,
        last_seen: u64,
    ) -> Result<(String, pull::Stream), String> {
        let consumer = match fresh {
            Some(consumer) => consumer,
            None => consumer::reopen(&self.js, &self.stream, self.config.clone(), name, last_seen)
                .await
                .map_err(|e| e.to_string())?,
        };
        let batch = self.limit.clamp(1, MAX_BATCH);
        let stream = consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| format!("starting to pull: {e}"))?;
        Ok((consumer.cached_info().name.clone(), stream))
    }
}

fn next_retry(current: Duration) -> Duration {
    (current * 2).clamp(RETRY_MIN, RETRY_MAX)
}

/// Messages already pulled into the client but never handed to the handler go back to the
/// server at once, so another member of the group gets them without waiting out the ack wait.
async fn release_buffered(mut stream: pull::Stream) {
    while let Some(Some(Ok(msg))) = stream.next().now_or_never() {
        if let Err(error) = msg.ack_with(AckKind::Nak(None)).await {
            tracing::debug!(%error, "could not nak a buffered message; it returns after the ack wait");
        }
    }
}

/// Hands one message to the handler and settles it; the permit frees a handler slot when done.
async fn deliver(
    msg: jetstream::Message,
    topic: String,
    handler: Handler,
    settle: Settle,
    _permit: OwnedSemaphorePermit,
) {
    let content_type = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE))
        .map(|v| v.as_str().to_owned());
    // daprd's JetStream component passes the message's subject as `Topic`.
    let metadata = HashMap::from([("Topic".to_owned(), msg.subject.to_string())]);
    let outcome = handler(Message {
        topic: topic.clone(),
        data: msg.payload.clone(),
        content_type,
        metadata,
    })
    .await;
    if !settle.acks {
        return;
    }
    let (kind, what) = match &outcome {
        Ok(()) => (AckKind::Ack, "ack"),
        Err(nack) => {
            tracing::debug!(%topic, reason = %nack.0, "handler refused the message; nak");
            (AckKind::Nak(settle.nak_delay), "nak")
        }
    };
    if let Err(error) = msg.ack_with(kind).await {
        // Unsettled: the server redelivers it after the ack wait.
        tracing::warn!(%topic, %error, "JetStream {what} failed");
    }
}
