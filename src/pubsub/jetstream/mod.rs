//! `pubsub.jetstream`: NATS JetStream through `async-nats`, with daprd's component metadata.
//!
//! - Topic = NATS subject. The stream that captures it must exist (daprd does not create streams
//!   either); `streamName` names it, else the one stream whose subjects match is used.
//! - Publish: one JetStream publish, answered by the server's ack. Like daprd, a CloudEvent's `id`
//!   becomes `Nats-Msg-Id`, so the server drops a retried duplicate within its dedup window.
//!   Outrigger also sets a `Content-Type` header, which daprd ignores. Publishing fails at once
//!   while the client is disconnected, and after [`PUBLISH_TIMEOUT`] at most otherwise.
//! - Subscribe: a pull consumer per subscription (`consumer.rs` says how `durableName` and
//!   `queueGroupName` map to consumer groups); ack on handler success, nak (delayed by `ackWait`
//!   when set, as daprd does) on failure; `maxDeliver` and `backOff` are enforced by the server.
//! - Handler concurrency: daprd's `concurrency` mode, `single` by default (one message at a
//!   time); `parallel` allows `SubscribeRequest::max_concurrency`, or, when the subscription sets
//!   none, `maxAckPending` (the server's default, 1000, when unset): the bound on daprd's
//!   goroutine-per-message handlers.
//! - Outrigger extension: subscription metadata `ackWait` overrides the component's for that
//!   subscription's consumer.
//! - Features: none, as daprd's component reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, context::ContextBuilder, message::PublishMessage};
use async_nats::{ConnectOptions, ServerAddr};
use futures_util::future::BoxFuture;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{
    Feature, Handler, PubSub, PubSubError, PublishRequest, SubscribeRequest, Subscription,
};
use crate::config::Component;

mod consume;
mod consumer;
mod metadata;
#[cfg(test)]
mod tests;

use consume::{Consume, Settle, CONTENT_TYPE};
use metadata::{Auth, Concurrency, Settings};

/// Longest a publish waits for the server's ack (and any JetStream API call for its answer).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the first connection may take before `open` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bulk publishes are sent this many at a time, then their acks awaited together: a bound on
/// the acks the client must track at once.
const BULK_CHUNK: usize = 256;
/// nats-server's `MaxAckPending` for a consumer that sets none.
const SERVER_MAX_ACK_PENDING: usize = 1000;

/// A `pubsub.jetstream` component: one NATS connection, shared by publishing and every
/// subscription of the component.
#[derive(Debug)]
pub struct JetStreamPubSub {
    component: String,
    settings: Settings,
    client: async_nats::Client,
    js: jetstream::Context,
    closed: AtomicBool,
    /// Parent of every subscription's stop token, so `close` stops them all.
    shutdown: CancellationToken,
    /// How many consume tasks are running, so `close` can wait for them.
    running: watch::Sender<usize>,
}

/// Counts one consume task as running until dropped, even if the task panics.
struct Running(watch::Sender<usize>);

impl Running {
    fn new(count: &watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Connects to NATS for `component`. Fails when the metadata cannot work (the error names the
/// key) or the server cannot be reached, as daprd's component init does.
pub async fn open(component: &Component, app_id: &str) -> Result<JetStreamPubSub, PubSubError> {
    let settings = Settings::parse(&component.metadata)?;
    if let Some(name) = &settings.durable_name {
        consumer::check_name("durableName", name)?;
    }
    if let Some(name) = &settings.queue_group_name {
        consumer::check_name("queueGroupName", name)?;
    }
    for key in &settings.push_only {
        tracing::warn!(component = %component.name, key,
            "metadata key only applies to daprd's push consumers; Outrigger's pull consumers ignore it");
    }
    // nats.go, which daprd uses, accepts a comma-separated list of servers.
    let servers = settings
        .nats_url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| PubSubError::Config(format!("natsURL `{s}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = connect_options(&settings)?;
    let client = options.connect(servers).await.map_err(|e| {
        PubSubError::Backend(format!(
            "cannot connect to NATS at {}: {e}",
            settings.nats_url
        ))
    })?;
    let builder = ContextBuilder::new();
    let js = match (&settings.domain, &settings.api_prefix) {
        (Some(domain), _) => builder
            .domain(domain)
            .timeout(PUBLISH_TIMEOUT)
            .build(client.clone()),
        (None, Some(prefix)) => builder
            .api_prefix(prefix)
            .timeout(PUBLISH_TIMEOUT)
            .build(client.clone()),
        (None, None) => builder.timeout(PUBLISH_TIMEOUT).build(client.clone()),
    };
    tracing::debug!(component = %component.name, app_id, url = %settings.nats_url,
        "connected to NATS JetStream");
    Ok(JetStreamPubSub {
        component: component.name.clone(),
        settings,
        client,
        js,
        closed: AtomicBool::new(false),
        shutdown: CancellationToken::new(),
        running: watch::Sender::new(0),
    })
}

fn connect_options(settings: &Settings) -> Result<ConnectOptions, PubSubError> {
    let options = ConnectOptions::new()
        .name(&settings.connection_name)
        .connection_timeout(CONNECT_TIMEOUT)
        // Never give up: the consumers resume once the server is back.
        .max_reconnects(None);
    Ok(match &settings.auth {
        Auth::None => options,
        Auth::Token(token) => options.token(token.clone()),
        Auth::ClientCert { cert, key } => options.add_client_certificate(cert.clone(), key.clone()),
        // async-nats signs the server's nonce with the seed, given as a credentials file's text.
        Auth::Jwt { jwt, seed } => options
            .credentials(&format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ))
            .map_err(|e| PubSubError::Config(format!("jwt/seedKey: {e}")))?,
    })
}

/// The CloudEvent `id` of a JSON payload, used as `Nats-Msg-Id` like daprd does.
fn cloud_event_id(data: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Event>(data).ok()?.id? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id),
        _ => None,
    }
}

fn outbound(req: &PublishRequest) -> PublishMessage {
    let mut msg = PublishMessage::build().payload(req.data.clone());
    if let Some(ct) = &req.content_type {
        msg = msg.header(CONTENT_TYPE, ct.as_str());
    }
    if let Some(id) = cloud_event_id(&req.data) {
        msg = msg.message_id(id);
    }
    msg
}

impl JetStreamPubSub {
    /// Fails fast instead of queueing a publish in the client while it reconnects: the caller
    /// gets `ERR_PUBSUB_PUBLISH_MESSAGE` now, not a late ack timeout.
    fn ready(&self) -> Result<(), PubSubError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PubSubError::Backend(format!(
                "pubsub {} is closed",
                self.component
            )));
        }
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(PubSubError::Backend(format!(
                "not connected to NATS at {} ({state})",
                self.settings.nats_url
            ))),
        }
    }

    async fn send(
        &self,
        req: &PublishRequest,
    ) -> Result<jetstream::context::PublishAckFuture, PubSubError> {
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.js.send_publish(req.topic.clone(), outbound(req)),
        )
        .await
        {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(publish_error(&req.topic, e)),
            Err(_) => Err(publish_timeout(&req.topic)),
        }
    }
}

fn publish_error(topic: &str, e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Backend(format!("publishing to {topic}: {e}"))
}

fn publish_timeout(topic: &str) -> PubSubError {
    PubSubError::Backend(format!(
        "publishing to {topic}: no ack from NATS within {PUBLISH_TIMEOUT:?}"
    ))
}

async fn await_ack(
    topic: &str,
    ack: jetstream::context::PublishAckFuture,
) -> Result<(), PubSubError> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, ack).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(publish_error(topic, e)),
        Err(_) => Err(publish_timeout(topic)),
    }
}

impl PubSub for JetStreamPubSub {
    fn type_name(&self) -> &'static str {
        "pubsub.jetstream"
    }

    fn features(&self) -> &'static [Feature] {
        &[]
    }

    fn publish(&self, req: PublishRequest) -> BoxFuture<'_, Result<(), PubSubError>> {
        Box::pin(async move {
            self.ready()?;
            let ack = self.send(&req).await?;
            await_ack(&req.topic, ack).await
        })
    }

    /// Like daprd: send every message first, then wait for their acks together, so one slow
    /// ack does not hold up the rest.
    fn bulk_publish(&self, reqs: Vec<PublishRequest>) -> BoxFuture<'_, Vec<(usize, PubSubError)>> {
        Box::pin(async move {
            let mut failed = Vec::new();
            if let Err(e) = self.ready() {
                let msg = e.to_string();
                return (0..reqs.len())
                    .map(|i| (i, PubSubError::Backend(msg.clone())))
                    .collect();
            }
            let mut index = 0;
            for chunk in reqs.chunks(BULK_CHUNK) {
                let mut pending = Vec::with_capacity(chunk.len());
                for req in chunk {
                    match self.send(req).await {
                        Ok(ack) => pending.push((index, req.topic.as_str(), ack)),
                        Err(e) => failed.push((index, e)),
                    }
                    index += 1;
                }
                let acks = futures_util::future::join_all(
                    pending
                        .into_iter()
                        .map(|(i, topic, ack)| async move { (i, await_ack(topic, ack).await) }),
                )
                .await;
                failed.extend(
                    acks.into_iter()
                        .filter_map(|(i, r)| r.err().map(|e| (i, e))),
                );
            }
            failed.sort_by_key(|(i, _)| *i);
            failed
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(PubSubError::Backend(format!(
                    "pubsub {} is closed",
                    self.component
                )));
            }
            let ack_wait = self.settings.ack_wait_for(&req.metadata)?;
            let stream =
                consumer::stream_for(&self.js, self.settings.stream_name.as_deref(), &req.topic)
                    .await?;
            let config = consumer::config(&self.settings, &req.topic, ack_wait);
            // Created before returning, so a message published once `subscribe` returns is
            // seen even with deliverPolicy `new`, and a bad configuration fails here.
            let first = consumer::create(&self.js, &stream, config.clone()).await?;
            let limit = match self.settings.concurrency {
                Concurrency::Single => 1,
                // Unbounded by the subscription: as many as daprd's parallel handlers can have,
                // which is what the server lets be unacked at once.
                Concurrency::Parallel => match req.max_concurrency {
                    0 => self
                        .settings
                        .max_ack_pending
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .unwrap_or(SERVER_MAX_ACK_PENDING),
                    n => n,
                }
                .min(Semaphore::MAX_PERMITS),
            };
            let stop = self.shutdown.child_token();
            let consume = Consume {
                js: self.js.clone(),
                stream,
                config,
                topic: req.topic,
                handler,
                limit,
                settle: Settle {
                    acks: self.settings.ack_policy != jetstream::consumer::AckPolicy::None,
                    nak_delay: ack_wait,
                },
                stop: stop.clone(),
            };
            let running = Running::new(&self.running);
            let task = tokio::spawn(async move {
                let _running = running;
                consume.run(first).await;
            });
            Ok(Subscription::new(stop, task))
        })
    }

    /// Stops every subscription still running (in-flight messages settle first), then flushes
    /// and closes the connection.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            self.shutdown.cancel();
            let _ = self.running.subscribe().wait_for(|n| *n == 0).await;
            // Bounded: a flush cannot complete while the server is away.
            let _ = tokio::time::timeout(PUBLISH_TIMEOUT, self.client.flush()).await;
            if let Err(error) = self.client.drain().await {
                tracing::debug!(component = %self.component, %error, "closing the NATS connection");
            }
        })
    }
}
