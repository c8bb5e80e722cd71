//! daprd-compatible `nameresolution.sqlite`: same tables, same columns, same liveness rule, so
//! daprd and Outrigger sidecars on one machine find each other through one SQLite file.
//!
//! Each sidecar keeps one row (its address) fresh with a heartbeat; a row not updated within
//! `updateInterval` is dead and never chosen. Differences from daprd, all on purpose:
//! - the heartbeat runs every `(updateInterval - timeout) / 2`, not every
//!   `updateInterval - timeout`: `last_update` is in whole seconds, so at daprd's period a live
//!   row can look up to a second older than it is and briefly count as dead;
//! - a lost row (another process deleted it) is written again with a warning instead of
//!   stopping the process;
//! - our row stores our namespace (daprd stores ""), and lookups honour it (see
//!   `db::Statements`);
//! - the periodic cleanup deletes only dead rows (daprd's deletes the live ones).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::{AppTarget, PeerAddress, ResolveError, Resolver};

mod db;
mod settings;
#[cfg(test)]
mod tests;
mod worker;

pub use settings::SqliteSettings;

use db::{Heartbeat, Statements};
use worker::Worker;

/// Migrating waits for other sidecars' exclusive transactions; daprd allows a minute.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between heartbeat attempts that failed (e.g. the file was locked), as daprd does.
const HEARTBEAT_RETRY: Duration = Duration::from_millis(50);
/// Cleanup deletes many rows at worst; it runs rarely, so it may take longer than a query.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// This sidecar's own row.
#[derive(Debug, Clone)]
pub struct Registration {
    pub app_id: String,
    /// Stored in the row; may be empty.
    pub namespace: String,
    /// `host:port` of this sidecar's internal server.
    pub address: String,
}

/// What the background task and the resolver share.
struct Shared {
    worker: Worker,
    sql: Statements,
    settings: SqliteSettings,
    me: Registration,
    registration_id: String,
}

/// Registers this sidecar in the shared file, keeps the row fresh, and resolves app ids from it.
///
/// Call [`SqliteResolver::deregister`] on shutdown. Dropping without it stops the heartbeat but
/// leaves the row, which other sidecars stop choosing after `updateInterval` (as for a crash).
pub struct SqliteResolver {
    shared: Arc<Shared>,
    /// Heartbeat and cleanup; taken (and stopped) by `deregister`, aborted on drop.
    background: Mutex<Option<JoinHandle<()>>>,
    deregistered: AtomicBool,
}

impl SqliteResolver {
    /// Opens (and migrates) the database, registers `me` and starts the heartbeat.
    pub async fn start(settings: SqliteSettings, me: Registration) -> Result<Self, ResolveError> {
        settings.validate()?;
        if me.app_id.is_empty() {
            return Err(ResolveError::Config(
                "the app id is empty; set --app-id to register in name resolution".into(),
            ));
        }
        if !me.address.contains(':') {
            return Err(ResolveError::Config(format!(
                "the address to register, {:?}, is not host:port",
                me.address
            )));
        }
        let worker = Worker::open(&settings).await?;
        let (hosts, metadata) = (
            settings.table_name.clone(),
            settings.metadata_table_name.clone(),
        );
        worker
            .run(
                "creating the name-resolution tables",
                MIGRATION_TIMEOUT,
                move |conn| db::migrate(conn, &hosts, &metadata),
            )
            .await?;

        let shared = Arc::new(Shared {
            worker,
            sql: Statements::new(&settings.table_name, &settings.metadata_table_name),
            registration_id: uuid::Uuid::new_v4().to_string(),
            settings,
            me,
        });
        let job = shared.clone();
        shared
            .worker
            .run(
                "registering this sidecar",
                shared.settings.timeout,
                move |conn| db::register(conn, &job.sql, &job.registration_id, &job.me),
            )
            .await?;
        tracing::info!(
            path = %shared.settings.path.display(),
            app_id = %shared.me.app_id,
            address = %shared.me.address,
            "registered in SQLite name resolution"
        );
        let background = tokio::spawn(maintain(shared.clone()));
        Ok(Self {
            shared,
            background: Mutex::new(Some(background)),
            deregistered: AtomicBool::new(false),
        })
    }

    /// Removes this sidecar's row; called on shutdown. Later calls do nothing.
    pub async fn deregister(&self) -> Result<(), ResolveError> {
        if self.deregistered.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Stop the heartbeat first and wait for it, so it cannot write the row back.
        let background = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = background {
            task.abort();
            let _ = task.await;
        }
        let job = self.shared.clone();
        let deleted = self
            .shared
            .worker
            .run(
                "deregistering this sidecar",
                self.shared.settings.timeout,
                move |conn| db::deregister(conn, &job.sql, &job.registration_id, &job.me.address),
            )
            .await?;
        if !deleted {
            tracing::debug!("this sidecar's name-resolution row was already gone");
        }
        Ok(())
    }

    /// The random id of this sidecar's row (`registration_id`).
    pub fn registration_id(&self) -> &str {
        &self.shared.registration_id
    }
}

impl Drop for SqliteResolver {
    fn drop(&mut self) {
        let background = self
            .background
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = background.take() {
            task.abort();
        }
    }
}

impl Resolver for SqliteResolver {
    fn resolve<'a>(
        &'a self,
        target: &'a AppTarget,
    ) -> BoxFuture<'a, Result<PeerAddress, ResolveError>> {
        Box::pin(async move {
            let job = self.shared.clone();
            let wanted = target.clone();
            let found = self
                .shared
                .worker
                .run(
                    "looking up an app in name resolution",
                    self.shared.settings.timeout,
                    move |conn| db::resolve(conn, &job.sql, &wanted, job.settings.update_interval),
                )
                .await?;
            found
                .map(PeerAddress::from)
                .ok_or_else(|| ResolveError::NotFound(target.to_string()))
        })
    }
}

/// The background task: heartbeat, and the cleanup when enabled. Runs until aborted.
async fn maintain(shared: Arc<Shared>) {
    let settings = &shared.settings;
    let period = (settings.update_interval - settings.timeout) / 2;
    let mut heartbeat = ticker(period);
    let mut cleanup = (!settings.cleanup_interval.is_zero())
        .then(|| ticker(settings.cleanup_interval.max(Duration::from_secs(1))));
    loop {
        tokio::select! {
            _ = heartbeat.tick() => renew(&shared).await,
            _ = tick(&mut cleanup) => clean(&shared).await,
        }
    }
}

/// First tick one period from now (the row was just written); late ticks are not bunched up.
fn ticker(period: Duration) -> Interval {
    let mut interval = interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One heartbeat, retried until `timeout` as daprd does, so a briefly locked file does not
/// cost the row its liveness.
async fn renew(shared: &Arc<Shared>) {
    let deadline = Instant::now() + shared.settings.timeout;
    loop {
        let job = shared.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let result = shared
            .worker
            .run("renewing this sidecar's registration", left, move |conn| {
                db::heartbeat(conn, &job.sql, &job.registration_id, &job.me)
            })
            .await;
        match result {
            Ok(Heartbeat::Renewed) => return,
            Ok(Heartbeat::Reregistered) => {
                tracing::warn!(
                    app_id = %shared.me.app_id,
                    address = %shared.me.address,
                    "this sidecar's name-resolution row had been deleted by another process \
                     (daprd's cleanup does that to live rows); registered again"
                );
                return;
            }
            Err(e) if Instant::now() + HEARTBEAT_RETRY < deadline => {
                tracing::debug!(error = %e, "heartbeat failed; retrying");
                tokio::time::sleep(HEARTBEAT_RETRY).await;
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "heartbeat failed; other sidecars stop finding this one if it keeps failing"
                );
                return;
            }
        }
    }
}

async fn clean(shared: &Arc<Shared>) {
    let job = shared.clone();
    let result = shared
        .worker
        .run(
            "deleting dead name-resolution rows",
            CLEANUP_TIMEOUT,
            move |conn| {
                let settings = &job.settings;
                db::cleanup(
                    conn,
                    &job.sql,
                    settings.cleanup_interval,
                    settings.update_interval,
                )
            },
        )
        .await;
    match result {
        Ok(Some(deleted)) => tracing::debug!(deleted, "removed dead name-resolution rows"),
        Ok(None) => tracing::debug!("another sidecar cleaned up name resolution recently"),
        Err(e) => tracing::warn!(error = %e, "name-resolution cleanup failed; will try again"),
    }
}
