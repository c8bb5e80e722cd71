//! Which JetStream consumer a subscription reads from, and how it is created.
//!
//! daprd creates a push consumer per subscription (named `durableName`, delivering to the
//! `queueGroupName` queue group). Outrigger uses pull consumers instead: every instance that
//! pulls from one consumer shares its messages, which is the consumer-group behaviour Dapr apps
//! expect, with no deliver subject to fight over, and pulling only as many messages as there are
//! free handler slots bounds the work in flight. The mapping:
//!
//! - `durableName` set: a durable consumer named `<durableName>-<topic>`. All sidecars using
//!   that durable name (the replicas of one app) share the topic's messages; another app with
//!   another durable name gets every message too. The position survives restarts of both the
//!   sidecar and the server.
//! - only `queueGroupName` set: the same sharing, through a non-durable consumer named
//!   `<queueGroupName>-<topic>` that the server deletes after [`NON_DURABLE_INACTIVE`] without
//!   any puller. (daprd gives each replica its own ephemeral consumer here, so every replica gets
//!   every message, which is rarely what a queue group is set for.)
//! - neither: an ephemeral consumer of this subscription alone, as in daprd.
//!
//! The topic is part of the name because consumer names are per stream and one stream often
//! captures many topics (`orders.>`); daprd's single `durableName` consumer cannot serve two
//! topics of one stream.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use sha2::{Digest, Sha256};

use super::metadata::Settings;
use crate::pubsub::PubSubError;

/// How long the server keeps a non-durable consumer nobody pulls from. Long enough to ride out
/// a rolling restart of the replicas sharing it, short enough not to pile up consumers of
/// sidecars that are gone.
pub(super) const NON_DURABLE_INACTIVE: Duration = Duration::from_secs(300);

/// Characters a consumer name may not contain (they are subject tokens or file names).
fn bad_name_char(c: char) -> bool {
    c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\')
}

/// Refuses a `durableName`/`queueGroupName` the server would refuse, naming the key.
pub(super) fn check_name(key: &str, value: &str) -> Result<(), PubSubError> {
    if value.chars().any(bad_name_char) {
        return Err(PubSubError::Config(format!(
            "{key} `{value}` is not a valid JetStream consumer name \
             (no spaces, '.', '*', '>', '/' or '\\')"
        )));
    }
    Ok(())
}

/// `<base>-<topic>`, with the characters a name cannot hold replaced; a replaced or very long
/// topic also gets a short hash of the original, so `a.b` and `a_b` stay apart.
pub(super) fn consumer_name(base: &str, topic: &str) -> String {
    const MAX_TOPIC_PART: usize = 64;
    let clean: String = topic
        .chars()
        .map(|c| if bad_name_char(c) { '_' } else { c })
        .collect();
    if clean == topic && clean.len() <= MAX_TOPIC_PART {
        return format!("{base}-{clean}");
    }
    let digest = Sha256::digest(topic.as_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let head: String = clean.chars().take(MAX_TOPIC_PART - 16).collect();
    format!("{base}-{head}-{short}")
}

/// The consumer configuration for one subscription, from the component's metadata.
pub(super) fn config(settings: &Settings, topic: &str, ack_wait: Option<Duration>) -> pull::Config {
    let mut config = pull::Config {
        deliver_policy: settings.deliver_policy,
        ack_policy: settings.ack_policy,
        ack_wait: ack_wait.unwrap_or_default(),
        max_deliver: settings.max_deliver.unwrap_or_default(),
        filter_subject: topic.to_owned(),
        max_ack_pending: settings.max_ack_pending.unwrap_or_default(),
        num_replicas: settings.replicas.unwrap_or_default(),
        memory_storage: settings.memory_storage,
        backoff: settings.backoff.clone(),
        ..Default::default()
    };
    match (&settings.durable_name, &settings.queue_group_name) {
        (Some(durable), _) => config.durable_name = Some(consumer_name(durable, topic)),
        (None, Some(group)) => {
            config.name = Some(consumer_name(group, topic));
            config.inactive_threshold = NON_DURABLE_INACTIVE;
        }
        (None, None) => config.inactive_threshold = NON_DURABLE_INACTIVE,
    }
    config
}

/// The stream that captures `topic`: `streamName`, else the one stream whose subjects match.
/// Like daprd, Outrigger never creates streams: their limits and retention are the operator's.
pub(super) async fn stream_for(
    js: &jetstream::Context,
    stream_name: Option<&str>,
    topic: &str,
) -> Result<String, PubSubError> {
    if let Some(name) = stream_name {
        return Ok(name.to_owned());
    }
    js.stream_by_subject(topic)
        .await
        .map_err(|err| match err.kind() {
            GetStreamByNameErrorKind::NotFound => PubSubError::Config(format!(
                "no JetStream stream captures subject `{topic}`; create one (for example \
             `nats stream add --subjects '{topic}'`) or set streamName. Outrigger, like daprd, \
             does not create streams"
            )),
            GetStreamByNameErrorKind::InvalidSubject => {
                PubSubError::Config(format!("topic `{topic}` is not a valid NATS subject"))
            }
            _ => PubSubError::Backend(format!(
                "looking up the JetStream stream for `{topic}`: {err}"
            )),
        })
}

/// Creates the consumer, or updates it when it exists (a changed `ackWait` or `maxDeliver`
/// takes effect; the server refuses changes it cannot apply, such as the deliver policy).
pub(super) async fn create(
    js: &jetstream::Context,
    stream: &str,
    config: pull::Config,
) -> Result<PullConsumer, PubSubError> {
    let what = config
        .durable_name
        .clone()
        .or_else(|| config.name.clone())
        .map_or_else(
            || "an ephemeral consumer".to_owned(),
            |n| format!("consumer `{n}`"),
        );
    js.create_consumer_on_stream(config, stream)
        .await
        .map_err(|err| {
            let msg = format!("creating {what} on stream `{stream}`: {err}");
            match err.kind() {
                // The server understood and said no: the configuration cannot work as is.
                ConsumerErrorKind::JetStream(_) => PubSubError::Config(msg),
                _ => PubSubError::Backend(msg),
            }
        })
}

/// After the consumer's stream of messages broke: the same consumer if the server still has
/// it, else a new one. A non-durable consumer that is gone (the server deleted it while nobody
/// pulled) resumes after the last message this subscription received rather than replaying
/// from the deliver policy; messages it had nacked were lost with it, as in daprd.
pub(super) async fn reopen(
    js: &jetstream::Context,
    stream: &str,
    mut config: pull::Config,
    name: &str,
    last_seen: u64,
) -> Result<PullConsumer, PubSubError> {
    match js
        .get_consumer_from_stream::<pull::Config, _, _>(name, stream)
        .await
    {
        Ok(consumer) => return Ok(consumer),
        Err(err) => match err.kind() {
            ConsumerErrorKind::JetStream(e) if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {}
            _ => {
                return Err(PubSubError::Backend(format!(
                    "looking up consumer `{name}` on stream `{stream}`: {err}"
                )))
            }
        },
    }
    if config.durable_name.is_none() && last_seen > 0 {
        config.deliver_policy = DeliverPolicy::ByStartSequence {
            start_sequence: last_seen + 1,
        };
    }
    create(js, stream, config).await
}
