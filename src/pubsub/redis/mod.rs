//! `pubsub.redis`: Redis Streams with consumer groups, speaking daprd's wire format (see
//! [`wire`]) so daprd and Outrigger sidecars can publish and subscribe on the same streams.
//!
//! - Publishing is one `XADD` on a shared connection that reconnects by itself; while Redis is
//!   away a publish fails fast with [`PubSubError::Backend`] instead of queueing.
//! - Each subscription reads with `XREADGROUP` on a connection of its own, hands messages to the
//!   handler with bounded concurrency, and acks (`XACK`) only what the handler accepted. When
//!   Redis goes away the reader reconnects with capped backoff and recreates the group if the
//!   server lost it.
//! - Redelivery is daprd's: every `redeliverInterval` the group's pending list is scanned
//!   (`XPENDING`) and entries idle for `processingTimeout` are claimed (`XCLAIM`, which works on
//!   Redis 5+, not `XAUTOCLAIM`) and handled again: nacked messages, timed-out handler calls and
//!   messages held by a consumer that died.
//! - A handler call gets `processingTimeout` (when redelivery is on): past it the call's future
//!   is dropped and the message left pending for redelivery, as daprd cancels the handler's
//!   context at that deadline. `stop` therefore waits at most that long for in-flight calls.
//! - Across a Redis restart without persistence, what was in Redis is gone: messages published
//!   and not yet acked before the restart are lost. Guaranteed: publishes fail fast while it is
//!   away, and afterwards consumers reconnect, recreate their group (from `0`, so nothing
//!   published after the restart is missed) and deliver new messages by themselves. With
//!   persistence (AOF/RDB) the group and its pending entries survive, up to the last write the
//!   server saved, and are reclaimed as usual.
//! - Consumer naming is daprd's: `consumerID` is both the group and the consumer name. Replicas
//!   sharing one name still split the work, because `XREADGROUP ... >` hands each new entry to
//!   exactly one reader; and since reclaiming scans the whole group, not one consumer, a crashed
//!   replica's messages are picked up by the others. Unique names would only add consumers that
//!   pile up in the group on every restart.
//! - Outrigger extension: a subscription's metadata may set `redeliverInterval` and
//!   `processingTimeout` for that subscription only (daprd reads them from the component).

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::config::Component;
use crate::pubsub::{
    Feature, Handler, PubSub, PubSubError, PublishRequest, SubscribeRequest, Subscription,
};

mod consumer;
mod reclaim;
mod settings;
mod wire;

#[cfg(test)]
mod tests;

use consumer::{ensure_group, query, Consumer};
use settings::Settings;

/// A `pubsub.redis` component. See the module docs for the wire format and guarantees.
pub struct RedisPubSub {
    settings: Arc<Settings>,
    client: redis::Client,
    shared: ConnectionManager,
    /// Parent of every subscription's stop token; cancelled by `close`.
    closed: CancellationToken,
    /// Each subscription task holds a clone; `close` drops this one and waits for the channel
    /// to close, i.e. for every task to end.
    running: Mutex<Option<mpsc::Sender<()>>>,
    stopped: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPubSub")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Opens a `pubsub.redis` component for `app_id` (the default `consumerID`). Fails within
/// `dialTimeout` when Redis cannot be reached, and at once on metadata that cannot work.
pub async fn open(component: &Component, app_id: &str) -> Result<RedisPubSub, PubSubError> {
    let settings = Settings::parse(&component.metadata, app_id)?;
    let address = settings.address();
    let mut redis_info = RedisConnectionInfo::default().set_db(settings.db);
    if let Some(user) = &settings.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &settings.password {
        redis_info = redis_info.set_password(&password.0);
    }
    let info = ConnectionAddr::Tcp(settings.host.clone(), settings.port)
        .into_connection_info()
        .map(|info| info.set_redis_settings(redis_info))
        .map_err(|e| PubSubError::Config(format!("redisHost `{address}`: {e}")))?;
    let client = redis::Client::open(info)
        .map_err(|e| PubSubError::Config(format!("redisHost `{address}`: {e}")))?;

    // No reconnect retries inside a command: while Redis is away each command fails at once
    // (the next one tries to connect again), so a publish never hangs in a retry loop.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.dial_timeout))
        .set_response_timeout(settings.read_timeout)
        .set_number_of_retries(0);
    let dial = settings.dial_timeout;
    let unreachable = |why: String| {
        PubSubError::Backend(format!(
            "redis streams: error connecting to redis at {address}: {why}"
        ))
    };
    let mut shared = timeout(dial, client.get_connection_manager_with_config(config))
        .await
        .map_err(|_| unreachable(format!("no connection within dialTimeout ({dial:?})")))?
        .map_err(|e| unreachable(e.to_string()))?;
    // As daprd: a PING proves the server answers (AUTH and SELECT already ran on connect).
    query(&mut shared, &redis::cmd("PING"), Some(dial))
        .await
        .map_err(|e| unreachable(e.to_string()))?;

    let (running, stopped) = mpsc::channel(1);
    Ok(RedisPubSub {
        settings: Arc::new(settings),
        client,
        shared,
        closed: CancellationToken::new(),
        running: Mutex::new(Some(running)),
        stopped: tokio::sync::Mutex::new(stopped),
    })
}

impl RedisPubSub {
    fn check_open(&self) -> Result<(), PubSubError> {
        if self.closed.is_cancelled() {
            return Err(PubSubError::Backend(
                "redis streams: component is closed".into(),
            ));
        }
        Ok(())
    }

    async fn start(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> Result<Subscription, PubSubError> {
        self.check_open()?;
        let settings = &self.settings;
        let redelivery = settings.redelivery.with_overrides(&req.metadata)?;
        let concurrency = match req.max_concurrency {
            0 => settings.concurrency,
            n => n.min(settings.concurrency),
        };
        // The settings cap concurrency far below u32::MAX; the fallback is never used.
        let concurrency = u32::try_from(concurrency).unwrap_or(u32::MAX);

        // Create the group now, as daprd does, so a subscription that cannot work fails here
        // rather than in a background loop.
        let mut shared = self.shared.clone();
        ensure_group(
            &mut shared,
            &req.topic,
            &settings.consumer_id,
            settings.write_timeout,
        )
        .await
        .map_err(|e| {
            PubSubError::Backend(format!(
                "redis streams: cannot create consumer group {} on {}: {e}",
                settings.consumer_id, req.topic
            ))
        })?;

        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PubSubError::Backend("redis streams: component is closed".into()))?;
        let consumer = Arc::new(Consumer {
            topic: req.topic,
            settings: settings.clone(),
            redelivery,
            client: self.client.clone(),
            shared: self.shared.clone(),
            handler,
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            in_flight: Mutex::default(),
        });
        let stop = self.closed.child_token();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                consumer.run(stop).await;
                drop(running);
            }
        });
        Ok(Subscription::new(stop, task))
    }
}

impl PubSub for RedisPubSub {
    fn type_name(&self) -> &'static str {
        "pubsub.redis"
    }

    /// None, as daprd's component: `streamTTL` trims the stream but is not a per-message TTL, so
    /// the runtime still stamps and checks `expiration` itself.
    fn features(&self) -> &'static [Feature] {
        &[]
    }

    fn publish(&self, req: PublishRequest) -> BoxFuture<'_, Result<(), PubSubError>> {
        Box::pin(async move {
            self.check_open()?;
            let cmd = wire::xadd(&req.topic, self.settings.trim, &req.data, &req.metadata)
                .map_err(|e| PubSubError::Backend(format!("redis streams: metadata: {e}")))?;
            let mut shared = self.shared.clone();
            query(&mut shared, &cmd, self.settings.write_timeout)
                .await
                .map_err(|e| {
                    PubSubError::Backend(format!("redis streams: error from publish: {e}"))
                })?;
            Ok(())
        })
    }

    fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Handler,
    ) -> BoxFuture<'_, Result<Subscription, PubSubError>> {
        Box::pin(self.start(req, handler))
    }

    /// Stops every subscription (each settles its in-flight messages) and waits for them.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closed.cancel();
            drop(
                self.running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
            // `recv` returns None once every subscription task has dropped its sender.
            let mut stopped = self.stopped.lock().await;
            while stopped.recv().await.is_some() {}
        })
    }
}
