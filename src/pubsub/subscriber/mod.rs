//! The delivery engine: from subscriptions (declarative `Subscription` resources and the app's
//! `GET /dapr/subscribe`) to one broker consumer per (component, topic), each message processed
//! (CloudEvent, expiry, route), POSTed to the app, and acked, redelivered or dropped according
//! to the app's answer. At-least-once: a message is acked only when the app accepted it, the
//! app said to drop it, or it was handed to the dead-letter topic.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::app_channel::AppChannel;
use crate::config::Subscription as SubscriptionResource;
use crate::pubsub::{
    Handler, Message, Nack, PubSubError, PubSubs, PublishRequest, SubscribeRequest, Subscription,
};

mod deliver;
mod discovery;
mod grpc_postman;
mod ingress;
mod plan;

use deliver::Verdict;
use ingress::Ingress;
use plan::{Plan, Spec};

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
    pub metadata: std::collections::HashMap<String, String>,
}

/// Starts the subscriptions of one app.
#[derive(Debug)]
pub struct Subscriber;

impl Subscriber {
    /// Discovers the app's subscriptions (when `discover` is set; call this only once the app
    /// is reachable), merges them after `declarative` (already filtered by their `scopes`),
    /// drops what component topic scopes forbid, and starts one consumer per (component,
    /// topic).
    pub async fn start(
        app_id: &str,
        pubsubs: Arc<PubSubs>,
        app: Arc<AppChannel>,
        declarative: &[SubscriptionResource],
        discover: bool,
    ) -> Result<RunningSubscriber, SubscriberError> {
        let mut specs: Vec<Spec> = declarative.iter().map(Spec::from).collect();
        if discover {
            match app.grpc() {
                Some(grpc) => specs.extend(grpc_postman::discover(grpc).await),
                None => specs.extend(discovery::discover(&app).await),
            }
        }
        let plans = plan::build(app_id, &pubsubs, specs);
        let mut running = RunningSubscriber {
            consumers: Vec::with_capacity(plans.len()),
        };
        for plan in plans {
            let active = ActiveSubscription {
                pubsub_name: plan.pubsub.name.clone(),
                topic: plan.topic.clone(),
                dead_letter_topic: plan.dead_letter_topic.clone(),
                paths: plan.routes.paths().map(str::to_owned).collect(),
                metadata: plan.metadata.clone(),
            };
            if plan.bulk.enabled {
                tracing::warn!(
                    pubsub = %active.pubsub_name, topic = %active.topic,
                    "bulk subscribe is not supported yet; delivering messages one by one"
                );
            }
            let req = SubscribeRequest {
                topic: plan.topic.clone(),
                metadata: plan.metadata.clone(),
                max_concurrency: plan.concurrency,
            };
            let broker = plan.pubsub.broker.clone();
            let handler = handler(Arc::new(Delivery {
                plan,
                app: app.clone(),
            }));
            match broker.subscribe(req, handler).await {
                Ok(subscription) => {
                    tracing::info!(
                        pubsub = %active.pubsub_name, topic = %active.topic,
                        routes = ?active.paths, "subscribed"
                    );
                    running.consumers.push((active, subscription));
                }
                Err(source) => {
                    running.stop().await;
                    return Err(SubscriberError::Subscribe {
                        pubsub: active.pubsub_name,
                        topic: active.topic,
                        source,
                    });
                }
            }
        }
        Ok(running)
    }
}

/// The running consumers. Call [`RunningSubscriber::stop`] on shutdown.
#[derive(Debug)]
pub struct RunningSubscriber {
    consumers: Vec<(ActiveSubscription, Subscription)>,
}

impl RunningSubscriber {
    pub fn subscriptions(&self) -> impl Iterator<Item = &ActiveSubscription> {
        self.consumers.iter().map(|(a, _)| a)
    }

    /// Stops every consumer at once: no new messages are fetched, in-flight deliveries finish
    /// and are acked or left for redelivery by what the app answered.
    pub async fn stop(self) {
        join_all(self.consumers.into_iter().map(|(_, s)| s.stop())).await;
    }
}

/// Everything one consumer's handler needs.
struct Delivery {
    plan: Plan,
    app: Arc<AppChannel>,
}

fn handler(delivery: Arc<Delivery>) -> Handler {
    Arc::new(move |msg: Message| {
        let delivery = delivery.clone();
        Box::pin(async move { delivery.handle(msg).await })
    })
}

impl Delivery {
    async fn handle(&self, msg: Message) -> Result<(), Nack> {
        let plan = &self.plan;
        let verdict = match ingress::process(plan, &msg) {
            Ok(Ingress::Deliver { path, body, event }) => match self.app.grpc() {
                Some(grpc) => {
                    let target = grpc_postman::Target {
                        path: &path,
                        pubsub_name: &plan.pubsub.name,
                        topic: &plan.topic,
                    };
                    grpc_postman::deliver(&self.app, grpc, &event, target, &msg.metadata).await
                }
                None => {
                    let headers = deliver::headers(&msg.metadata, &plan.pubsub.name, &event);
                    deliver::deliver(&self.app, &path, body, headers).await
                }
            },
            Ok(Ingress::Drop(reason)) => Verdict::Drop(reason),
            Err(e) => Verdict::Retry(e.to_string()),
        };
        match verdict {
            Verdict::Success => Ok(()),
            // No resiliency policy retries here, so with a dead-letter topic a retriable failure
            // is dead-lettered at once, as daprd does when its (default no-op) policy gives up.
            Verdict::Retry(reason) if plan.dead_letter_topic.is_some() => {
                self.dead_letter(msg, &reason).await
            }
            Verdict::Retry(reason) => {
                tracing::debug!(topic = %plan.topic, %reason, "message left for redelivery");
                Err(Nack(reason))
            }
            Verdict::Drop(reason) if plan.dead_letter_topic.is_some() => {
                self.dead_letter(msg, &reason).await
            }
            Verdict::Drop(reason) => {
                tracing::warn!(topic = %plan.topic, %reason, "message dropped");
                Ok(())
            }
        }
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
