//! The file layout is daprd's, and a file daprd created works as is.

use super::*;

/// Every table and index with its columns, types, constraints and index columns.
fn describe(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        out.push(format!("table {table}"));
        let mut columns = conn
            .prepare(
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)
                 ORDER BY cid",
            )
            .unwrap();
        let columns = columns
            .query_map([&table], |row| {
                Ok(format!(
                    "  column {} {} notnull={} default={:?} pk={}",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .unwrap();
        out.extend(columns.map(Result::unwrap));
        let mut indexes = conn
            .prepare(
                "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name",
            )
            .unwrap();
        let indexes: Vec<(String, i64, String, i64)> = indexes
            .query_map([&table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (name, unique, origin, partial) in indexes {
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                .unwrap()
                .query_map([&name], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.push(format!(
                "  index {name} unique={unique} origin={origin} partial={partial} on {columns:?}"
            ));
        }
    }
    out
}

#[tokio::test]
async fn schema_equals_daprds() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.db");
    let _alpha = start(SqliteSettings::new(&ours), "alpha", 50010).await;

    let reference = Connection::open(dir.path().join("daprd.db")).unwrap();
    reference.execute_batch(DAPRD_METADATA_DDL).unwrap();
    reference.execute_batch(DAPRD_HOSTS_DDL).unwrap();

    let ours = raw(&ours);
    let described = describe(&ours);
    assert_eq!(described, describe(&reference));
    // Spot checks, so a mistake in `describe` cannot hide everything.
    assert!(described.contains(&"  column last_update INTEGER notnull=1 default=None pk=0".into()));
    assert!(described
        .iter()
        .any(|l| l.contains("hosts_address_idx unique=1")));
    assert!(described
        .iter()
        .any(|l| l.contains("hosts_last_update_idx unique=0")));

    // The migration level, stored as text "1" like daprd's Migrate does.
    let (value, kind): (String, String) = ours
        .query_row(
            "SELECT value, typeof(value) FROM metadata WHERE key = 'nr-migrations'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((value.as_str(), kind.as_str()), ("1", "text"));

    let journal: String = ours
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal", "several processes share the file");
}

#[tokio::test]
async fn custom_table_names_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let mut settings = SqliteSettings::new(&path);
    settings.table_name = "nr_hosts".into();
    settings.metadata_table_name = "nr_meta".into();
    let alpha = start(settings, "alpha", 50010).await;
    assert!(lookup(&alpha, "alpha", "").await.is_some());
    let names: Vec<String> = raw(&path)
        .prepare("SELECT name FROM sqlite_master ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        names,
        [
            "nr_hosts",
            "nr_hosts_address_idx",
            "nr_hosts_last_update_idx",
            "nr_meta",
            "sqlite_autoindex_nr_hosts_1",
            "sqlite_autoindex_nr_meta_1"
        ]
    );
}

#[tokio::test]
async fn joins_a_file_daprd_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    {
        // A daprd got there first: its tables, its migration level, its row (namespace "").
        let daprd = raw(&path);
        daprd.execute_batch(DAPRD_METADATA_DDL).unwrap();
        daprd.execute_batch(DAPRD_HOSTS_DDL).unwrap();
        daprd
            .execute_batch(
                "REPLACE INTO metadata (key, value) VALUES ('nr-migrations', '1');
                 REPLACE INTO hosts (registration_id, address, app_id, namespace, last_update)
                 VALUES ('0b6e2a56-2f4a-4a4e-9d68-1b2f0c3c4d5e', '192.168.1.5:50002', 'daprd-app',
                         '', unixepoch(CURRENT_TIMESTAMP));",
            )
            .unwrap();
    }
    let alpha = start(SqliteSettings::new(&path), "alpha", 50010).await;
    assert_eq!(
        lookup(&alpha, "daprd-app", "default").await.as_deref(),
        Some("192.168.1.5:50002")
    );
    // daprd's lookup (app_id only, same liveness rule) finds us.
    let found: String = raw(&path)
        .query_row(
            "SELECT address FROM hosts WHERE app_id = 'alpha'
               AND unixepoch(CURRENT_TIMESTAMP) - last_update < 5",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(found, "127.0.0.1:50010");
}

#[tokio::test]
async fn garbage_migration_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nr.db");
    let conn = raw(&path);
    conn.execute_batch(DAPRD_METADATA_DDL).unwrap();
    conn.execute(
        "INSERT INTO metadata (key, value) VALUES ('nr-migrations', 'x')",
        [],
    )
    .unwrap();
    let err = SqliteResolver::start(SqliteSettings::new(&path), me("alpha", 50010))
        .await
        .err()
        .expect("a bad migration level is an error");
    assert!(err.to_string().contains("not a number"), "{err}");
}
