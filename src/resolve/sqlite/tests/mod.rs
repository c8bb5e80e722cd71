//! Tests of the SQLite resolver against real files. Nothing sleeps to wait: conditions are
//! polled until a deadline.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{Registration, SqliteResolver, SqliteSettings};
use crate::resolve::{AppTarget, ResolveError, Resolver};

mod resolver;
mod schema;
mod settings;

/// daprd's DDL, copied from components-contrib (`nameresolution/sqlite/sqlite_migrations.go`
/// and `common/component/sql/migrations/sqlite`), to compare against what we create.
const DAPRD_METADATA_DDL: &str = "CREATE TABLE IF NOT EXISTS metadata (
    key text NOT NULL PRIMARY KEY,
    value text NOT NULL
)";
const DAPRD_HOSTS_DDL: &str = "CREATE TABLE hosts (
    registration_id TEXT NOT NULL PRIMARY KEY,
    address TEXT NOT NULL,
    app_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    last_update INTEGER NOT NULL
);
CREATE UNIQUE INDEX hosts_address_idx ON hosts (address);
CREATE INDEX hosts_last_update_idx ON hosts (last_update);";

/// Fast settings for tests about liveness: rows die 2 s after their last heartbeat.
fn fast(path: &Path) -> SqliteSettings {
    let mut settings = SqliteSettings::new(path);
    settings.update_interval = Duration::from_secs(2);
    settings.timeout = Duration::from_secs(1);
    settings
}

fn me(app_id: &str, port: u16) -> Registration {
    Registration {
        app_id: app_id.into(),
        namespace: "default".into(),
        address: format!("127.0.0.1:{port}"),
    }
}

fn target(app_id: &str, namespace: &str) -> AppTarget {
    AppTarget {
        app_id: app_id.into(),
        namespace: namespace.into(),
    }
}

async fn start(settings: SqliteSettings, app_id: &str, port: u16) -> SqliteResolver {
    SqliteResolver::start(settings, me(app_id, port))
        .await
        .expect("resolver starts")
}

/// Another process's view of the file, for inspecting and tampering with rows.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open raw connection");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// Resolves, mapping "not found" to None and failing the test on other errors.
async fn lookup(resolver: &impl Resolver, app_id: &str, namespace: &str) -> Option<String> {
    match resolver.resolve(&target(app_id, namespace)).await {
        Ok(address) => Some(address.to_string()),
        Err(ResolveError::NotFound(_)) => None,
        Err(e) => panic!("resolving {app_id}: {e}"),
    }
}

/// Polls `condition` every 50 ms until it holds; panics after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row_count(conn: &Connection, registration_id: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM hosts WHERE registration_id = ?1",
        [registration_id],
        |row| row.get(0),
    )
    .expect("count rows")
}
