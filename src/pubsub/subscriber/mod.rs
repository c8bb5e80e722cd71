//! The delivery engine: from subscriptions (declarative `Subscription` resources and the app's
//! `GET /dapr/subscribe`) to one broker consumer per (component, topic), each message processed
//! (CloudEvent, expiry, route), POSTed to the app, and acked, redelivered or dropped according
//! to the app's answer. At-least-once: a message is acked only when the app accepted it, the
//! app said to drop it, or it was handed to the dead-letter topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::app_channel::AppChannel;
use crate::config::Subscription as SubscriptionResource;
use crate::pubsub::{
    Handler, Message, Nack, PubSubError, PubSubs, PublishRequest, SubscribeRequest, Subscription,
};
use crate::telemetry::metrics::ComponentMetrics;

mod batcher;
mod binary_mode;
mod discovery;
mod health;
mod ingress;
mod plan;
pub mod postman;
mod settle;

use batcher::{BatchLimits, Batcher};
pub use health::pause_while_unhealthy;
use ingress::Ingress;
pub use plan::SubscriptionKind;
use plan::{Plan, Spec};
use postman::{Postman, SubscribedMessage, Verdict};
use settle::Settlement;

/// daprd gives a dead-letter publish 30 s before the message goes back to the broker.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// The broker refused to start a consumer. The consumers already started were stopped.
    #[error("cannot subscribe to topic `{topic}` of pub/sub `{pubsub}`: {source}")]
    Subscribe {
        pubsub: String,
        topic: String,
        source: PubSubError,
    },
}

/// A topic being consumed, as the metadata API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSubscription {
    pub pubsub_name: String,
    pub topic: String,
    pub dead_letter_topic: Option<String>,
    /// The rule paths in evaluation order (the catch-all last).
    pub paths: Vec<String>,
    /// The rules as written, `(match, path)`, in evaluation order (the catch-all's match is
    /// empty).
    pub rules: Vec<(String, String)>,
    pub metadata: std::collections::HashMap<String, String>,
    pub kind: SubscriptionKind,
}

/// What the subscriptions of one app deliver through.
#[derive(Clone)]
pub struct SubscriberContext {
    pub app_id: String,
    pub pubsubs: Arc<PubSubs>,
    /// How messages reach the app (HTTP, gRPC...), chosen by the sidecar.
    pub postman: Arc<dyn Postman>,
    pub metrics: Arc<ComponentMetrics>,
}

/// Starts the subscriptions of one app.
#[derive(Debug)]
pub struct Subscriber;

impl Subscriber {
    /// Discovers the app's subscriptions on `app` (when `discover` is set; call this only once
    /// the app is reachable), merges them after `declarative` (already filtered by their
    /// `scopes`), drops what component topic scopes forbid, and starts one consumer per
    /// (component, topic).
    pub async fn start(
        ctx: SubscriberContext,
        app: &AppChannel,
        declarative: &[SubscriptionResource],
        discover: bool,
    ) -> Result<RunningSubscriber, SubscriberError> {
        let mut specs: Vec<Spec> = declarative.iter().map(Spec::from).collect();
        if discover {
            match app.grpc() {
                Some(grpc) => specs.extend(postman::grpc::discover(grpc).await),
                None => specs.extend(discovery::discover(app).await),
            }
        }
        let plans = plan::build(&ctx.app_id, &ctx.pubsubs, specs);
        let consumers = plans
            .into_iter()
            .map(|plan| Consumer::new(plan, &ctx))
            .collect();
        let mut running = RunningSubscriber {
            consumers,
            paused: true,
        };
        if let Err(e) = running.resume().await {
            running.stop().await;
            return Err(e);
        }
        Ok(running)
    }
}

/// The subscriptions of one app. They keep being reported while paused. Call
/// [`RunningSubscriber::stop`] on shutdown.
pub struct RunningSubscriber {
    consumers: Vec<Consumer>,
    paused: bool,
}

impl std::fmt::Debug for RunningSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSubscriber")
            .field("subscriptions", &self.consumers.len())
            .field("paused", &self.paused)
            .finish()
    }
}

impl RunningSubscriber {
    pub fn subscriptions(&self) -> impl Iterator<Item = &ActiveSubscription> {
        self.consumers.iter().map(|c| &c.active)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Stops fetching on every consumer (in-flight deliveries finish and settle); the
    /// subscriptions stay known for [`RunningSubscriber::resume`] and the metadata API.
    pub async fn pause(&mut self) {
        if self.paused {
            return;
        }
        self.paused = true;
        join_all(
            self.consumers
                .iter_mut()
                .filter_map(|c| c.running.take())
                .map(Subscription::stop),
        )
        .await;
        tracing::info!("subscriptions paused");
    }

    /// Starts the consumers again. A broker that refuses leaves the consumers started so far
    /// running; calling it again retries the others.
    pub async fn resume(&mut self) -> Result<(), SubscriberError> {
        for consumer in self.consumers.iter_mut().filter(|c| c.running.is_none()) {
            consumer.start().await?;
        }
        if self.paused && !self.consumers.is_empty() {
            tracing::info!("subscriptions running");
        }
        self.paused = false;
        Ok(())
    }

    /// Stops every consumer at once: no new messages are fetched, in-flight deliveries finish
    /// and are acked or left for redelivery by what the app answered.
    pub async fn stop(mut self) {
        self.pause().await;
    }
}

/// One (component, topic) subscription and its broker consumer when running.
struct Consumer {
    active: ActiveSubscription,
    request: SubscribeRequest,
    delivery: Arc<Delivery>,
    running: Option<Subscription>,
}

impl Consumer {
    fn new(plan: Plan, ctx: &SubscriberContext) -> Self {
        let active = ActiveSubscription {
            pubsub_name: plan.pubsub.name.clone(),
            topic: plan.topic.clone(),
            dead_letter_topic: plan.dead_letter_topic.clone(),
            paths: plan.routes.paths().map(str::to_owned).collect(),
            rules: plan
                .routes
                .rules()
                .map(|(m, p)| (m.to_owned(), p.to_owned()))
                .collect(),
            metadata: plan.metadata.clone(),
            kind: plan.kind,
        };
        let mut max_concurrency = plan.concurrency;
        let batcher = plan.bulk.enabled.then(|| {
            // Each waiting handler call holds one message of the batch: with fewer calls
            // allowed than `maxMessagesCount` a batch could never fill.
            max_concurrency = max_concurrency.max(plan.bulk.max_messages_count);
            Batcher::start(
                ctx.postman.clone(),
                BatchLimits {
                    max_messages: plan.bulk.max_messages_count,
                    max_await: plan.bulk.max_await,
                },
                ctx.metrics.clone(),
            )
        });
        let request = SubscribeRequest {
            topic: plan.topic.clone(),
            metadata: plan.metadata.clone(),
            max_concurrency,
        };
        let delivery = Arc::new(Delivery {
            pubsub_label: plan.pubsub.label.clone(),
            topic_label: Arc::from(plan.topic.as_str()),
            plan,
            postman: ctx.postman.clone(),
            batcher,
            metrics: ctx.metrics.clone(),
        });
        Self {
            active,
            request,
            delivery,
            running: None,
        }
    }

    async fn start(&mut self) -> Result<(), SubscriberError> {
        let broker = self.delivery.plan.pubsub.broker.clone();
        let handler = handler(self.delivery.clone());
        match broker.subscribe(self.request.clone(), handler).await {
            Ok(subscription) => {
                tracing::info!(
                    pubsub = %self.active.pubsub_name, topic = %self.active.topic,
                    routes = ?self.active.paths, bulk = self.delivery.batcher.is_some(),
                    "subscribed"
                );
                self.running = Some(subscription);
                Ok(())
            }
            Err(source) => Err(SubscriberError::Subscribe {
                pubsub: self.active.pubsub_name.clone(),
                topic: self.active.topic.clone(),
                source,
            }),
        }
    }
}

/// Everything one consumer's handler needs.
struct Delivery {
    plan: Plan,
    postman: Arc<dyn Postman>,
    /// Set for bulk subscriptions: messages go to the app in batches.
    batcher: Option<Batcher>,
    metrics: Arc<ComponentMetrics>,
    pubsub_label: Arc<str>,
    topic_label: Arc<str>,
}

fn handler(delivery: Arc<Delivery>) -> Handler {
    Arc::new(move |msg: Message| {
        let delivery = delivery.clone();
        Box::pin(async move { delivery.handle(msg).await })
    })
}

impl Delivery {
    async fn handle(&self, mut msg: Message) -> Result<(), Nack> {
        let plan = &self.plan;
        // `None`: the batcher measures bulk deliveries per call instead.
        let (verdict, measured): (Verdict, Option<Option<Duration>>) =
            match ingress::process(plan, &msg) {
                Ok(Ingress::Deliver {
                    path,
                    body,
                    event,
                    raw,
                }) => {
                    msg.metadata
                        .insert("pubsubName".to_owned(), plan.pubsub.name.clone());
                    // The original message is kept only when it may go to the dead-letter topic.
                    let (metadata, content_type) = if plan.dead_letter_topic.is_some() {
                        (msg.metadata.clone(), msg.content_type.clone())
                    } else {
                        (std::mem::take(&mut msg.metadata), msg.content_type.take())
                    };
                    let sm = SubscribedMessage {
                        pubsub_name: self.pubsub_label.clone(),
                        topic: self.topic_label.clone(),
                        path,
                        event,
                        body,
                        raw,
                        content_type,
                        metadata,
                    };
                    match &self.batcher {
                        Some(batcher) => (batcher.submit(sm).await, None),
                        None => {
                            let started = Instant::now();
                            let verdict = self.postman.deliver(sm).await;
                            (verdict, Some(Some(started.elapsed())))
                        }
                    }
                }
                Ok(Ingress::Drop { reason, deliberate }) => {
                    let verdict = if deliberate {
                        Verdict::deliberate_drop(reason)
                    } else {
                        Verdict::drop(reason)
                    };
                    (verdict, Some(None))
                }
                Err(e) => (Verdict::Retry(e.to_string()), Some(None)),
            };
        if let Some(elapsed) = measured {
            self.record(&verdict, elapsed);
        }
        match settle::after_verdict(verdict, plan.dead_letter_topic.is_some()) {
            Settlement::Ack => Ok(()),
            Settlement::Redeliver(reason) => {
                tracing::debug!(topic = %plan.topic, %reason, "message left for redelivery");
                Err(Nack(reason))
            }
            Settlement::DeadLetter(reason) => self.dead_letter(msg, &reason).await,
        }
    }

    fn record(&self, verdict: &Verdict, elapsed: Option<Duration>) {
        self.metrics.pubsub_ingress(
            &self.pubsub_label,
            &self.topic_label,
            verdict.process_status(),
            verdict.status_label(),
            elapsed,
        );
    }

    /// Publishes the original broker message to the dead-letter topic; acks only when that
    /// worked, so a broker hiccup cannot lose the message.
    async fn dead_letter(&self, msg: Message, reason: &str) -> Result<(), Nack> {
        let plan = &self.plan;
        let Some(dlq) = &plan.dead_letter_topic else {
            return Ok(());
        };
        tracing::warn!(topic = %plan.topic, dead_letter_topic = %dlq, %reason,
            "sending the message to the dead-letter topic");
        let req = PublishRequest {
            topic: dlq.clone(),
            data: msg.data,
            content_type: msg.content_type,
            metadata: msg.metadata,
        };
        match tokio::time::timeout(DEAD_LETTER_TIMEOUT, plan.pubsub.broker.publish(req)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Nack(format!("dead-letter publish failed: {e}"))),
            Err(_) => Err(Nack("dead-letter publish timed out".to_owned())),
        }
    }
}
