//! `state.postgresql`: daprd's PostgreSQL state store, v1 layout, on the same tables.
//!
//! A database that daprd's components-contrib `state/postgresql/v1` created and filled works
//! here unchanged, and the other way round: the state table (`key text PRIMARY KEY, value
//! jsonb, isbinary boolean, insertdate, updatedate, expiredate`), the etag taken from the row's
//! `xmin` system column, the metadata table with its `migrations`, `lock` and `last-cleanup`
//! rows, and the SQL of every operation follow daprd's. Connections come from a deadpool pool
//! of tokio-postgres clients; every call is bounded by the component's `timeout`, and a broken
//! connection is replaced on the next call, so the store recovers by itself when the server
//! returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use super::query::{Query, QueryResponse};
use super::{
    DeleteRequest, Feature, GetRequest, Item, Operation, SetRequest, StateError, StateStore,
};
use crate::config::Component;

mod connstr;
mod ops;
mod query;
mod schema;
mod settings;
#[cfg(test)]
mod tests;
mod value;

use settings::Settings;

/// daprd's features for `state.postgresql` v1.
const FEATURES: &[Feature] = &[
    Feature::Etag,
    Feature::Transactional,
    Feature::Ttl,
    Feature::Query,
];

/// daprd's cleanup runs may take long on a big table; they are bounded separately from calls.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);

/// The PostgreSQL state store. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    inner: Arc<Inner>,
    cleanup: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    pool: Pool,
    table: String,
    metadata_table: String,
    timeout: Duration,
    cleanup_interval: Option<Duration>,
}

impl PostgresStore {
    /// Connects, brings the tables to daprd's current layout and starts the periodic cleanup
    /// of expired rows. Fails (within the component's timeout) when the metadata is wrong or
    /// the database cannot be reached.
    pub async fn open(component: &Component) -> Result<PostgresStore, StateError> {
        let name = &component.name;
        let settings = Settings::from_metadata(&component.metadata).map_err(|e| {
            StateError::InvalidRequest(format!("state.postgresql component {name:?}: {e}"))
        })?;
        let target = describe_target(&settings.pg);
        let timeout = settings.timeout;

        let manager = Manager::from_config(
            settings.pg,
            NoTls,
            ManagerConfig {
                // is_closed() suffices: calls cancelled by their timeout discard their
                // connection (see `with_client`), so pooled ones are never mid-exchange.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_conns)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StateError::Backend(format!("state.postgresql {name:?}: {e}")))?;

        let connect_failed = |e: String| {
            StateError::Backend(format!(
                "state.postgresql component {name:?}: failed to connect to PostgreSQL at \
                 {target}: {e}"
            ))
        };
        // Connect and ping first, so an unreachable server is reported as such.
        tokio::time::timeout(timeout, async {
            let client = pool.get().await.map_err(|e| pool_error(&e))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| describe("ping failed", &e))?;
            Ok::<_, String>(())
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))
        .and_then(|r| r)
        .map_err(connect_failed)?;

        // The migration lock may wait for another sidecar's migration; daprd allows a minute.
        let migrate_bound = timeout.max(Duration::from_secs(60));
        tokio::time::timeout(
            migrate_bound,
            schema::migrate(&pool, &settings.table, &settings.metadata_table),
        )
        .await
        .map_err(|_| format!("migrations did not finish within {migrate_bound:?}"))
        .and_then(|r| r)
        .map_err(|e| StateError::Backend(format!("state.postgresql component {name:?}: {e}")))?;

        let inner = Arc::new(Inner {
            pool,
            table: settings.table,
            metadata_table: settings.metadata_table,
            timeout,
            cleanup_interval: settings.cleanup_interval,
        });
        let cleanup = inner
            .cleanup_interval
            .map(|every| tokio::spawn(cleanup_loop(inner.clone(), every)));
        Ok(PostgresStore {
            inner,
            cleanup: Mutex::new(cleanup),
        })
    }

    /// Deletes expired rows now, unless a sidecar did within the cleanup interval (the same
    /// claim daprd makes). Returns the number deleted, `None` when it was not our turn or the
    /// cleanup is disabled.
    pub async fn cleanup_expired(&self) -> Result<Option<u64>, StateError> {
        let Some(interval) = self.inner.cleanup_interval else {
            return Ok(None);
        };
        run_cleanup(&self.inner, interval).await
    }

    /// The state table's name, as configured.
    pub fn table_name(&self) -> &str {
        &self.inner.table
    }
}

async fn cleanup_loop(inner: Arc<Inner>, every: Duration) {
    tracing::info!(table = %inner.table, ?every, "scheduled expired state cleanup");
    // Like Go's ticker: the first run is one interval after start.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match run_cleanup(&inner, every).await {
            Ok(Some(n)) => tracing::info!(table = %inner.table, "removed {n} expired rows"),
            Ok(None) => tracing::debug!("last state cleanup was performed too recently"),
            Err(e) => tracing::warn!(error = %e, "error removing expired state"),
        }
    }
}

async fn run_cleanup(inner: &Inner, interval: Duration) -> Result<Option<u64>, StateError> {
    let work = async {
        let client = inner
            .pool
            .get()
            .await
            .map_err(|e| StateError::Backend(pool_error(&e)))?;
        schema::cleanup_expired(&client, &inner.table, &inner.metadata_table, interval)
            .await
            .map_err(StateError::Backend)
    };
    tokio::time::timeout(CLEANUP_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(StateError::Backend(
                "expired state cleanup timed out".into(),
            ))
        })
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Ok(mut task) = self.cleanup.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

impl StateStore for PostgresStore {
    fn type_name(&self) -> &'static str {
        "state.postgresql"
    }

    fn features(&self) -> &'static [Feature] {
        FEATURES
    }

    fn get(&self, req: GetRequest) -> BoxFuture<'_, Result<Option<Item>, StateError>> {
        Box::pin(async move {
            let table = self.inner.table.clone();
            self.with_client("get", move |c| {
                Box::pin(async move { ops::get(c, &table, &req.key).await })
            })
            .await
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let table = self.inner.table.clone();
            self.with_client("set", move |c| {
                Box::pin(async move { ops::set(c, &table, &req).await })
            })
            .await
        })
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let table = self.inner.table.clone();
            self.with_client("delete", move |c| {
                Box::pin(async move { ops::delete(c, &table, &req).await })
            })
            .await
        })
    }

    fn transact(
        &self,
        ops: Vec<Operation>,
        _metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let table = self.inner.table.clone();
            self.with_client("transaction", move |c| {
                Box::pin(async move { ops::transact(c, &table, ops).await })
            })
            .await
        })
    }

    fn query(
        &self,
        query: Query,
        _metadata: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<QueryResponse, StateError>> {
        Box::pin(async move {
            let built = query::build(&self.inner.table, &query)?;
            self.with_client("query", move |c| {
                Box::pin(async move { query::run(c, built).await })
            })
            .await
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let task = self.cleanup.lock().ok().and_then(|mut t| t.take());
            if let Some(task) = task {
                task.abort();
            }
            self.inner.pool.close();
        })
    }
}

/// `context: message (SQLSTATE)` for server errors, the error chain otherwise.
fn describe(context: &str, e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{context}: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        );
    }
    let mut out = format!("{context}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(pg) => describe("connect", pg),
        other => other.to_string(),
    }
}

/// `host:port/dbname` for error messages (never the password).
fn describe_target(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = pg
                .get_ports()
                .get(i)
                .or(pg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or_default();
    format!("{}/{db}", hosts.join(","))
}
