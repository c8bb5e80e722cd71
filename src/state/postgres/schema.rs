//! daprd's tables and migration levels (components-contrib `state/postgresql/v1/migrations.go`
//! and `common/component/sql/migrations/postgres/postgres_migrations.go`), and its periodic
//! deletion of expired rows (`common/component/sql/cleanup.go`). Both follow daprd step for
//! step, so daprd and Outrigger sidecars can share a database, migrate it in either order and
//! take turns cleaning it.

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::error::SqlState;

use super::describe;

/// The row in the metadata table that holds the migration level.
const MIGRATIONS_KEY: &str = "migrations";
/// The row whose `FOR UPDATE` lock serialises migrations between sidecars.
const LOCK_KEY: &str = "lock";
/// The row that records when any sidecar last deleted expired rows.
const LAST_CLEANUP_KEY: &str = "last-cleanup";

/// Brings the tables to daprd's latest v1 level (2): the state table, then its `expiredate`.
pub(super) async fn migrate(pool: &Pool, table: &str, meta: &str) -> Result<(), String> {
    let work = pool.get().await.map_err(|e| e.to_string())?;
    ensure_metadata_table(&work, meta).await?;

    // daprd locks with a row, not an advisory lock, because PostgreSQL-compatible databases
    // (CockroachDB) lack the latter. Same row, so daprd and we exclude each other.
    work.execute(
        &format!(
            "INSERT INTO {meta} (key, value) VALUES ($1, 'lock') ON CONFLICT (key) DO NOTHING"
        ),
        &[&LOCK_KEY],
    )
    .await
    .map_err(|e| describe("failed to ensure the migration lock row exists", &e))?;

    let mut lock_conn = pool.get().await.map_err(|e| e.to_string())?;
    let lock = lock_conn
        .transaction()
        .await
        .map_err(|e| describe("failed to begin the migration lock transaction", &e))?;
    lock.query_one(
        &format!("SELECT value FROM {meta} WHERE key = $1 FOR UPDATE"),
        &[&LOCK_KEY],
    )
    .await
    .map_err(|e| describe("failed to acquire the migration lock", &e))?;

    // Migrations run on the other connection, outside the lock transaction: that one is
    // always rolled back (releasing the lock), which must not undo the schema changes.
    let result = run_migrations(&work, table, meta).await;
    if let Err(e) = lock.rollback().await {
        tracing::warn!(error = %e, "releasing the state.postgresql migration lock failed");
    }
    result
}

async fn ensure_metadata_table(db: &impl GenericClient, meta: &str) -> Result<(), String> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {meta} (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
    );
    // Two sidecars creating the table at once can hit a unique violation on the catalog
    // even with IF NOT EXISTS; daprd retries three times, and so do we.
    let mut last = None;
    for _ in 0..3 {
        match db.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(describe("failed to create the metadata table", &e)),
        }
    }
    Err(last.map_or_else(
        || "failed to create the metadata table".to_owned(),
        |e| describe("failed to create the metadata table", &e),
    ))
}

async fn run_migrations(db: &impl GenericClient, table: &str, meta: &str) -> Result<(), String> {
    let row = db
        .query_opt(
            &format!("SELECT value FROM {meta} WHERE key = $1"),
            &[&MIGRATIONS_KEY],
        )
        .await
        .map_err(|e| describe("failed to read the migration level", &e))?;
    let level: usize = match row {
        None => 0,
        Some(row) => {
            let text: String = row.get(0);
            text.parse().map_err(|_| {
                format!("invalid migration level found in metadata table {meta}: {text:?}")
            })?
        }
    };

    let steps = [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                key text NOT NULL PRIMARY KEY,
                value jsonb NOT NULL,
                isbinary boolean NOT NULL,
                insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
                updatedate TIMESTAMP WITH TIME ZONE NULL
            )"
        ),
        format!("ALTER TABLE {table} ADD expiredate TIMESTAMP WITH TIME ZONE"),
    ];
    for (i, step) in steps.iter().enumerate().skip(level) {
        match db.batch_execute(step).await {
            Ok(()) => {}
            // A concurrent CREATE TABLE IF NOT EXISTS elsewhere: the table is there.
            Err(e) if i == 0 && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(describe(&format!("failed to perform migration {i}"), &e)),
        }
        let version = (i + 1).to_string();
        db.execute(
            &format!(
                "INSERT INTO {meta} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = $2"
            ),
            &[&MIGRATIONS_KEY, &version],
        )
        .await
        .map_err(|e| describe("failed to update the migration level", &e))?;
        tracing::info!(table, level = i + 1, "state.postgresql migration applied");
    }
    Ok(())
}

/// Deletes expired rows unless some sidecar (daprd or ours) did so less than `interval` ago.
/// Returns how many rows went, or `None` when it was another's turn.
pub(super) async fn cleanup_expired(
    db: &impl GenericClient,
    table: &str,
    meta: &str,
    interval: std::time::Duration,
) -> Result<Option<u64>, String> {
    // daprd's atomic "claim": the upsert only changes the row when the last cleanup is older
    // than the interval (less 100 ms of slack), so one sidecar per interval does the work.
    let claim = format!(
        "INSERT INTO {meta} (key, value) VALUES ($1, now()::text)
         ON CONFLICT (key) DO UPDATE SET value = now()::text
         WHERE (EXTRACT('epoch' FROM now() - {meta}.value::timestamp with time zone) * 1000)::bigint > $2"
    );
    let slack_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX) - 100;
    let claimed = db
        .execute(&claim, &[&LAST_CLEANUP_KEY, &slack_ms])
        .await
        .map_err(|e| describe("error updating last cleanup time", &e))?;
    if claimed == 0 {
        return Ok(None);
    }
    let deleted = db
        .execute(
            &format!("DELETE FROM {table} WHERE expiredate IS NOT NULL AND expiredate < now()"),
            &[],
        )
        .await
        .map_err(|e| describe("failed to delete expired rows", &e))?;
    Ok(Some(deleted))
}
