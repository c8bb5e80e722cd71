//! One subscription: a fetch loop (`XREADGROUP` on a connection of its own, since a blocked
//! read would stall every other command on a shared one), a reclaim loop (`reclaim.rs`, on the
//! shared connection), and handler calls bounded by a semaphore. A message is
//! acked only after its handler returned `Ok`; anything else stays pending in the group and is
//! reclaimed after `processingTimeout`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::settings::{Redelivery, Settings};
use super::wire::{self, CmdError, Entry};
use crate::pubsub::{Handler, Message, Nack};

/// How long `stop` keeps asking Redis to release a blocked read before giving up on it.
const UNBLOCK_PATIENCE: Duration = Duration::from_secs(2);
const UNBLOCK_RETRY: Duration = Duration::from_millis(20);

/// Runs one command with a deadline. `None` waits as long as the connection does.
pub(super) async fn query(
    conn: &mut impl ConnectionLike,
    cmd: &Cmd,
    limit: Option<Duration>,
) -> Result<Value, CmdError> {
    let call = cmd.query_async::<Value>(conn);
    match limit {
        Some(limit) => timeout(limit, call)
            .await
            .map_err(|_| CmdError::Timeout(limit))?
            .map_err(CmdError::from),
        None => call.await.map_err(CmdError::from),
    }
}

/// `XGROUP CREATE ... 0 MKSTREAM`, where an existing group is fine (daprd ignores BUSYGROUP).
pub(super) async fn ensure_group(
    conn: &mut impl ConnectionLike,
    topic: &str,
    group: &str,
    limit: Option<Duration>,
) -> Result<(), CmdError> {
    match query(conn, &wire::xgroup_create(topic, group), limit).await {
        Err(err) if err.code() != Some("BUSYGROUP") => Err(err),
        _ => Ok(()),
    }
}

pub(super) struct Consumer {
    pub topic: String,
    pub settings: Arc<Settings>,
    pub redelivery: Redelivery,
    pub client: redis::Client,
    pub shared: ConnectionManager,
    pub handler: Handler,
    /// One permit per handler call that may run; `concurrency` permits in all.
    pub slots: Arc<Semaphore>,
    pub concurrency: u32,
    /// IDs fetched or claimed by this subscription and not yet settled, so the reclaim loop does
    /// not hand a message that is still queued here to a second handler call.
    pub in_flight: Mutex<HashSet<String>>,
}

/// The reader's own connection and its `CLIENT ID`, used to unblock it on stop.
struct Reader {
    conn: MultiplexedConnection,
    id: Option<i64>,
}

enum ReadEnd {
    Stopped,
    Failed(CmdError),
}

impl Consumer {
    pub(super) fn group(&self) -> &str {
        &self.settings.consumer_id
    }

    pub(super) fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs until `stop`, then waits for the handler calls already started to settle.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tokio::join!(self.fetch_loop(&stop), self.reclaim_loop(&stop));
        // Every running handler call holds a slot: having them all back means all settled.
        let _all = self.slots.acquire_many(self.concurrency).await;
    }

    async fn fetch_loop(self: &Arc<Self>, stop: &CancellationToken) {
        let mut backoff = Backoff::new(
            self.settings.min_retry_interval,
            self.settings.max_retry_interval,
        );
        let mut failing = false;
        while !stop.is_cancelled() {
            let connected = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = self.connect_reader() => r,
            };
            let err = match connected {
                Ok(mut reader) => {
                    if failing {
                        tracing::info!(topic = %self.topic, "redis streams: consumer reconnected");
                        failing = false;
                    }
                    backoff.reset();
                    match self.read_until_error(&mut reader, stop).await {
                        ReadEnd::Stopped => break,
                        ReadEnd::Failed(err) => err,
                    }
                }
                Err(err) => err,
            };
            // Say it once per outage, not once per retry.
            if failing {
                tracing::debug!(topic = %self.topic, error = %err, "redis streams: still failing");
            } else {
                tracing::warn!(
                    topic = %self.topic,
                    error = %err,
                    "redis streams: consumer lost redis; retrying with backoff"
                );
                failing = true;
            }
            if !backoff.wait(stop).await {
                break;
            }
        }
    }

    async fn connect_reader(&self) -> Result<Reader, CmdError> {
        let dial = self.settings.dial_timeout;
        // No response timeout on the connection itself: a blocked XREADGROUP legitimately waits
        // for BLOCK ms; each call gets its own deadline instead.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(dial))
            .set_response_timeout(None);
        let mut conn = timeout(
            dial,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| CmdError::Timeout(dial))??;
        let limit = self.settings.read_timeout;
        let id = match query(&mut conn, redis::cmd("CLIENT").arg("ID"), limit).await {
            Ok(Value::Int(id)) => Some(id),
            // Without it (an ACL that forbids CLIENT) stop just drops the blocked read.
            _ => None,
        };
        // After a Redis restart without persistence the stream and group are gone: recreate
        // them so the consumer resumes by itself.
        ensure_group(&mut conn, &self.topic, self.group(), limit).await?;
        Ok(Reader { conn, id })
    }

    async fn read_until_error(
        self: &Arc<Self>,
        reader: &mut Reader,
        stop: &CancellationToken,
    ) -> ReadEnd {
        let settings = &self.settings;
        // `BLOCK` is daprd's readTimeout; `-1` (no timeout) blocks until a message arrives.
        let block = settings.read_timeout.unwrap_or(Duration::ZERO);
        let deadline = settings.read_timeout.map(|t| block + t);
        let cmd = wire::xreadgroup(
            &self.topic,
            self.group(),
            self.group(),
            settings.queue_depth,
            block,
        );
        loop {
            let mut conn = reader.conn.clone();
            let read = query(&mut conn, &cmd, deadline);
            tokio::pin!(read);
            let reply = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    self.unblock(reader.id, read).await;
                    return ReadEnd::Stopped;
                }
                r = &mut read => r,
            };
            match reply.and_then(wire::parse_read) {
                Ok(entries) => {
                    if !self.dispatch(entries, stop).await {
                        return ReadEnd::Stopped;
                    }
                }
                Err(err) if err.code() == Some("NOGROUP") => {
                    tracing::warn!(
                        topic = %self.topic,
                        group = %self.group(),
                        "redis streams: the consumer group is gone (data loss on the server, or \
                         the stream was deleted); recreating it"
                    );
                    let limit = settings.read_timeout;
                    if let Err(err) =
                        ensure_group(&mut reader.conn, &self.topic, self.group(), limit).await
                    {
                        return ReadEnd::Failed(err);
                    }
                }
                Err(err) => return ReadEnd::Failed(err),
            }
        }
    }

    /// Releases our blocked `XREADGROUP` with `CLIENT UNBLOCK` so that no message published after
    /// `stop` returns is handed to a reader that will never process it (it would sit pending
    /// until `processingTimeout`). Entries the read returned anyway are left pending.
    async fn unblock(&self, id: Option<i64>, mut read: Pin<&mut impl Future>) {
        let Some(id) = id else { return };
        let give_up = Instant::now() + UNBLOCK_PATIENCE;
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNBLOCK").arg(id);
        while Instant::now() < give_up {
            let mut shared = self.shared.clone();
            if query(&mut shared, &cmd, self.settings.read_timeout)
                .await
                .is_err()
            {
                // Redis is away, so it cannot deliver to the reader either.
                return;
            }
            // The read may not have reached Redis yet; ask again until it returns.
            tokio::select! {
                _ = &mut read => return,
                _ = sleep(UNBLOCK_RETRY) => {}
            }
        }
    }

    /// Starts a handler call for each entry, each once a slot is free. Returns false when
    /// `stop` fired first: the entries not started stay pending in the group.
    pub(super) async fn dispatch(
        self: &Arc<Self>,
        entries: Vec<Entry>,
        stop: &CancellationToken,
    ) -> bool {
        self.in_flight()
            .extend(entries.iter().map(|e| e.id.clone()));
        let mut entries = entries.into_iter();
        while let Some(entry) = entries.next() {
            let slot = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                slot = self.slots.clone().acquire_owned() => slot.ok(),
            };
            let Some(slot) = slot else {
                let mut in_flight = self.in_flight();
                in_flight.remove(&entry.id);
                for rest in entries {
                    in_flight.remove(&rest.id);
                }
                return false;
            };
            let call = InFlight {
                consumer: self.clone(),
                id: entry.id.clone(),
                _slot: slot,
            };
            tokio::spawn(call.handle(entry));
        }
        true
    }
}

/// One handler call. Dropping it (normally, or when the task panics) frees the slot and
/// forgets the ID, so the message can be reclaimed if it was not acked.
struct InFlight {
    consumer: Arc<Consumer>,
    id: String,
    _slot: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.consumer.in_flight().remove(&self.id);
    }
}

impl InFlight {
    async fn handle(self, entry: Entry) {
        let consumer = &self.consumer;
        let msg = Message {
            topic: consumer.topic.clone(),
            data: entry.data,
            content_type: None,
            metadata: entry.metadata,
        };
        let call = (consumer.handler)(msg);
        // daprd gives the handler processingTimeout (when redelivery is on): past it the
        // message is due for redelivery anyway, so the late call is abandoned, not acked.
        let outcome = match consumer.redelivery.timeout() {
            Some(limit) => timeout(limit, call).await.unwrap_or_else(|_| {
                Err(Nack(format!(
                    "not settled within processingTimeout ({limit:?})"
                )))
            }),
            None => call.await,
        };
        let topic = consumer.topic.as_str();
        match outcome {
            Ok(()) => {
                let ack = wire::xack(topic, consumer.group(), &self.id);
                let mut shared = consumer.shared.clone();
                if let Err(err) = query(&mut shared, &ack, consumer.settings.read_timeout).await {
                    tracing::warn!(
                        topic,
                        id = %self.id,
                        error = %err,
                        "redis streams: could not ack a handled message; it will be redelivered"
                    );
                }
            }
            Err(nack) => tracing::debug!(
                topic,
                id = %self.id,
                reason = %nack.0,
                "redis streams: message left pending for redelivery"
            ),
        }
    }
}

/// Capped exponential backoff for reconnecting (daprd's redisMinRetryInterval and
/// redisMaxRetryInterval).
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }

    /// Sleeps for the next delay; false if `stop` fired meanwhile.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = sleep(delay) => true,
        }
    }
}
