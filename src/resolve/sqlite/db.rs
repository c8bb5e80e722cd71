//! Every SQL statement of the resolver. Tables, columns, metadata keys and the liveness rule
//! are exactly those of components-contrib `nameresolution/sqlite`, so daprd and Outrigger
//! sidecars share one file. These functions block; they run on the worker thread.

use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::super::{AppTarget, ResolveError};
use super::settings::SqliteSettings;
use super::Registration;

/// Metadata key holding the migration level, as a decimal string (daprd's `Migrate`).
pub(super) const MIGRATIONS_KEY: &str = "nr-migrations";
/// Metadata key holding `CURRENT_TIMESTAMP` of the last cleanup, shared by every sidecar.
pub(super) const LAST_CLEANUP_KEY: &str = "nr-last-cleanup";

/// Failures of a job on the worker thread.
#[derive(Debug, thiserror::Error)]
pub(super) enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the metadata table holds migration level {0:?} under '{MIGRATIONS_KEY}', which is not \
         a number; the database was not written by daprd or Outrigger, so point \
         connectionString at another file"
    )]
    BadMigrationLevel(String),
}

/// Opens the shared file the way daprd's driver does: busy timeout, the connection string's
/// own pragmas, then WAL (unless disabled).
pub(super) fn connect(settings: &SqliteSettings) -> Result<Connection, ResolveError> {
    let path = settings.path.display();
    let failed = |e: rusqlite::Error| {
        ResolveError::Backend(format!(
            "cannot open the name-resolution database {path}: {e}; check that its directory \
             exists and this process may write there"
        ))
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(settings.uri()?, flags).map_err(failed)?;
    // rusqlite defaults to 5 s; daprd's setting (0 = fail at once) wins. Set first, so the
    // pragmas below wait for other processes' locks too.
    conn.busy_timeout(settings.busy_timeout).map_err(failed)?;
    for pragma in &settings.pragmas {
        conn.execute_batch(&format!("PRAGMA {pragma};"))
            .map_err(failed)?;
    }
    let wanted = if settings.disable_wal {
        "delete"
    } else {
        "wal"
    };
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", wanted, |row| row.get(0))
        .map_err(failed)?;
    if !mode.eq_ignore_ascii_case(wanted) {
        tracing::warn!(
            path = %path, wanted, got = %mode,
            "SQLite refused the journal mode for the name-resolution database"
        );
    }
    Ok(conn)
}

/// daprd's migrations, run the way its `Migrate` runs them: inside `BEGIN EXCLUSIVE`, the
/// level stored as a string under [`MIGRATIONS_KEY`].
pub(super) fn migrate(conn: &mut Connection, hosts: &str, metadata: &str) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    // IF NOT EXISTS as daprd: another sidecar may be creating it right now.
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {metadata} (
            key text NOT NULL PRIMARY KEY,
            value text NOT NULL
        )"
    ))?;
    let level: Option<String> = tx
        .query_row(
            &format!("SELECT value FROM {metadata} WHERE key = ?1"),
            [MIGRATIONS_KEY],
            |row| row.get(0),
        )
        .optional()?;
    let level = match level {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| DbError::BadMigrationLevel(text))?,
    };
    let migrations = [format!(
        "CREATE TABLE {hosts} (
            registration_id TEXT NOT NULL PRIMARY KEY,
            address TEXT NOT NULL,
            app_id TEXT NOT NULL,
            namespace TEXT NOT NULL,
            last_update INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX {hosts}_address_idx ON {hosts} (address);
        CREATE INDEX {hosts}_last_update_idx ON {hosts} (last_update);"
    )];
    // A newer daprd may have run more migrations than we know; its tables are a superset.
    for (index, migration) in migrations.iter().enumerate().skip(level) {
        tracing::info!(table = hosts, "creating the name-resolution hosts table");
        tx.execute_batch(migration)?;
        tx.execute(
            &format!("REPLACE INTO {metadata} (key, value) VALUES (?1, ?2)"),
            params![MIGRATIONS_KEY, (index + 1).to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// SQL text with the (validated) table names filled in once.
#[derive(Debug)]
pub(super) struct Statements {
    register: String,
    heartbeat: String,
    resolve: String,
    deregister: String,
    mark_cleanup: String,
    delete_expired: String,
}

impl Statements {
    pub(super) fn new(hosts: &str, metadata: &str) -> Self {
        Self {
            // The unique index on address makes REPLACE take over the row of a previous
            // process that served the same address.
            register: format!(
                "REPLACE INTO {hosts} (registration_id, address, app_id, namespace, last_update)
                 VALUES (?1, ?2, ?3, ?4, unixepoch(CURRENT_TIMESTAMP))"
            ),
            heartbeat: format!(
                "UPDATE {hosts} SET last_update = unixepoch(CURRENT_TIMESTAMP)
                 WHERE registration_id = ?1 AND address = ?2"
            ),
            // daprd's rule: live = updated less than updateInterval (whole seconds) ago, one
            // picked at random. daprd ignores namespaces and registers "" (components-contrib
            // issue 3179); we store ours and match a row whose namespace is "" (a daprd), or
            // equals the target's, or any row when the target names none.
            resolve: format!(
                "SELECT address FROM {hosts}
                 WHERE app_id = ?1
                   AND (namespace = '' OR ?2 = '' OR namespace = ?2)
                   AND unixepoch(CURRENT_TIMESTAMP) - last_update < ?3
                 ORDER BY RANDOM() LIMIT 1"
            ),
            deregister: format!("DELETE FROM {hosts} WHERE registration_id = ?1 AND address = ?2"),
            // daprd's guard, so that one sidecar per interval cleans up. daprd binds the
            // interval in milliseconds to this seconds comparison, so its own cleanup waits
            // ~1000x longer than meant; binding seconds keeps the key fresh and, as a side
            // effect, keeps daprd's cleanup (which deletes the *live* rows) from running.
            mark_cleanup: format!(
                "INSERT INTO {metadata} (key, value) VALUES ('{LAST_CLEANUP_KEY}', CURRENT_TIMESTAMP)
                 ON CONFLICT (key) DO UPDATE SET value = CURRENT_TIMESTAMP
                 WHERE unixepoch(CURRENT_TIMESTAMP) - unixepoch(value) > ?1"
            ),
            delete_expired: format!(
                "DELETE FROM {hosts} WHERE unixepoch(CURRENT_TIMESTAMP) - last_update >= ?1"
            ),
        }
    }
}

/// Writes (or takes over) this sidecar's row.
pub(super) fn register(
    conn: &Connection,
    sql: &Statements,
    registration_id: &str,
    me: &Registration,
) -> Result<(), DbError> {
    conn.prepare_cached(&sql.register)?.execute(params![
        registration_id,
        me.address,
        me.app_id,
        me.namespace
    ])?;
    Ok(())
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heartbeat {
    Renewed,
    /// The row was gone (deleted by another process) and was written again.
    Reregistered,
}

/// Refreshes `last_update`; re-registers when the row vanished, instead of dying as daprd
/// does, because daprd's own cleanup deletes live rows.
pub(super) fn heartbeat(
    conn: &Connection,
    sql: &Statements,
    registration_id: &str,
    me: &Registration,
) -> Result<Heartbeat, DbError> {
    let updated = conn
        .prepare_cached(&sql.heartbeat)?
        .execute(params![registration_id, me.address])?;
    if updated > 0 {
        return Ok(Heartbeat::Renewed);
    }
    register(conn, sql, registration_id, me)?;
    Ok(Heartbeat::Reregistered)
}

/// A random live instance of `target`, if any.
pub(super) fn resolve(
    conn: &Connection,
    sql: &Statements,
    target: &AppTarget,
    update_interval: Duration,
) -> Result<Option<String>, DbError> {
    let live_secs = seconds(update_interval);
    Ok(conn
        .prepare_cached(&sql.resolve)?
        .query_row(params![target.app_id, target.namespace, live_secs], |row| {
            row.get(0)
        })
        .optional()?)
}

/// Deletes this sidecar's row; false if it was already gone.
pub(super) fn deregister(
    conn: &Connection,
    sql: &Statements,
    registration_id: &str,
    address: &str,
) -> Result<bool, DbError> {
    Ok(conn.execute(&sql.deregister, params![registration_id, address])? > 0)
}

/// Deletes rows not updated for `max(cleanup_interval, update_interval)`, unless some sidecar
/// already cleaned up within the interval. Rows younger than `update_interval` are live and
/// are never deleted. Returns the number deleted, or `None` when it was not this one's turn.
pub(super) fn cleanup(
    conn: &Connection,
    sql: &Statements,
    cleanup_interval: Duration,
    update_interval: Duration,
) -> Result<Option<usize>, DbError> {
    // One second of slack, as daprd subtracts a little: the ticks of the sidecar that cleaned
    // last come exactly one interval apart.
    let guard = seconds(cleanup_interval).saturating_sub(1);
    if conn.execute(&sql.mark_cleanup, [guard])? == 0 {
        return Ok(None);
    }
    let max_age = seconds(cleanup_interval.max(update_interval));
    Ok(Some(conn.execute(&sql.delete_expired, [max_age])?))
}

/// Whole seconds as SQLite's integer (saturating; settings are far below the limit).
fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
