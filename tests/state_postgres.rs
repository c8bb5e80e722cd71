//! `state.postgresql` against a real PostgreSQL server (127.0.0.1:5432, role `postgres`, trust
//! auth; or the key=value connection string in `OUTRIGGER_TEST_POSTGRES`). Each test makes its
//! own database and drops it afterwards, so tests run in parallel and leave nothing behind.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outrigger::config::{Component, ComponentSource};
use outrigger::state::postgres::PostgresStore;
use outrigger::state::query::Query;
use outrigger::state::{
    Concurrency, Consistency, GetRequest, SetRequest, StateError, StateStore, Ttl,
};
use serde_json::json;
use tokio_postgres::NoTls;

const ADMIN_ENV: &str = "OUTRIGGER_TEST_POSTGRES";
const ADMIN_DEFAULT: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

fn admin_conn_str() -> String {
    std::env::var(ADMIN_ENV).unwrap_or_else(|_| ADMIN_DEFAULT.to_owned())
}

async fn connect(conn_str: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A fresh database, dropped (with any connections still open to it) when the test ends,
/// whether it passed or panicked.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create() -> Self {
        let admin =
            match tokio::time::timeout(Duration::from_secs(10), connect(&admin_conn_str())).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
                    panic!(
                        "{}",
                        needs_postgres(&format!("{e}{}", cause.unwrap_or_default()))
                    )
                }
                Err(_) => panic!("{}", needs_postgres("no answer within 10s")),
            };
        let name = format!("outrigger_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self { name }
    }

    /// A key=value connection string to this database (later keys win in libpq syntax).
    fn conn_str(&self) -> String {
        format!("{} dbname={}", admin_conn_str(), self.name)
    }

    /// A plain SQL client on this database, for looking at what the store wrote.
    async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.conn_str())
            .await
            .expect("connect to the test database")
    }

    async fn store(&self, extra: &[(&str, &str)]) -> PostgresStore {
        let mut metadata = vec![("connectionString", self.conn_str())];
        metadata.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        PostgresStore::open(&component(&metadata))
            .await
            .expect("open the PostgreSQL store")
    }
}

fn needs_postgres(why: &str) -> String {
    format!(
        "these tests need PostgreSQL on 127.0.0.1:5432 with trust auth for role `postgres` (or \
         a key=value connection string in {ADMIN_ENV}); CI installs and starts it. \
         Connecting failed: {why}"
    )
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: a short-lived
        // thread with its own runtime does the cleanup.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            rt.block_on(async move {
                let admin = connect(&admin_conn_str()).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

fn component(metadata: &[(&str, String)]) -> Component {
    Component {
        name: "statestore".into(),
        type_name: "state.postgresql".into(),
        version: "v1".into(),
        ignore_errors: false,
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        scopes: Vec::new(),
        source: ComponentSource::Embedded,
        namespace: None,
        init_timeout: None,
        secret_store: None,
    }
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.to_owned(),
        consistency: Consistency::Strong,
        metadata: HashMap::new(),
    }
}

fn set(key: &str, value: impl Into<Bytes>) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        value: value.into(),
        etag: None,
        concurrency: Concurrency::LastWrite,
        consistency: Consistency::Strong,
        ttl: None,
        metadata: HashMap::new(),
    }
}

/// The row's etag as daprd computes it: the `xmin` of the row.
async fn xmin(sql: &tokio_postgres::Client, table: &str, key: &str) -> String {
    sql.query_one(
        &format!("SELECT xmin::text FROM {table} WHERE key = $1"),
        &[&key],
    )
    .await
    .expect("row exists")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let db = TestDb::create().await;
    let store = db.store(&[]).await;
    support::state_conformance::run(Arc::new(store), "conformance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api() {
    let db = TestDb::create().await;
    let store = db.store(&[]).await;
    let people = [
        (
            "p1",
            json!({"state": "CA", "age": 9, "person": {"org": "dev", "id": 1}, "vip": true}),
        ),
        (
            "p2",
            json!({"state": "WA", "age": 10, "person": {"org": "dev", "id": 2}, "vip": false}),
        ),
        (
            "p3",
            json!({"state": "CA", "age": 31.5, "person": {"org": "ops", "id": 3}}),
        ),
        (
            "p4",
            json!({"state": "NY", "age": 47, "person": {"org": "ops", "id": 4}}),
        ),
        (
            "p5",
            json!({"state": "TX", "age": "unknown", "person": {"org": "qa", "id": 5}}),
        ),
    ];
    for (key, doc) in &people {
        store.set(set(key, doc.to_string())).await.unwrap();
    }
    // Invisible to queries: an expired row, and bytes that are not JSON.
    let sql = db.sql().await;
    sql.execute(
        "INSERT INTO state (key, value, isbinary, expiredate) \
         VALUES ('gone', '{\"state\": \"CA\", \"age\": 1}', false, now() - interval '1 minute')",
        &[],
    )
    .await
    .unwrap();
    store.set(set("blob", vec![0u8, 1, 2])).await.unwrap();

    let keys = |filter: serde_json::Value| {
        let store = &store;
        async move {
            let q: Query = serde_json::from_value(json!({"filter": filter})).unwrap();
            let resp = store.query(q, HashMap::new()).await.unwrap();
            resp.results.into_iter().map(|r| r.key).collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(json!({"EQ": {"state": "CA"}})).await, ["p1", "p3"]);
    assert_eq!(
        keys(json!({"NEQ": {"state": "CA"}})).await,
        ["p2", "p4", "p5"]
    );
    // Numbers compare as numbers (10 > 9), and "unknown" never matches a numeric filter.
    assert_eq!(keys(json!({"GT": {"age": 9}})).await, ["p2", "p3", "p4"]);
    assert_eq!(keys(json!({"GTE": {"age": 10}})).await, ["p2", "p3", "p4"]);
    assert_eq!(keys(json!({"LT": {"age": 31.5}})).await, ["p1", "p2"]);
    assert_eq!(
        keys(json!({"LTE": {"age": 31.5}})).await,
        ["p1", "p2", "p3"]
    );
    assert_eq!(keys(json!({"EQ": {"age": 10.0}})).await, ["p2"]);
    assert_eq!(keys(json!({"EQ": {"vip": true}})).await, ["p1"]);
    assert_eq!(
        keys(json!({"IN": {"state": ["WA", "NY"]}})).await,
        ["p2", "p4"]
    );
    assert_eq!(
        keys(json!({"EQ": {"person.org": "ops"}})).await,
        ["p3", "p4"]
    );
    assert_eq!(
        keys(json!({"AND": [{"EQ": {"person.org": "dev"}}, {"GT": {"age": 9}}]})).await,
        ["p2"]
    );
    assert_eq!(
        keys(json!({"OR": [{"EQ": {"state": "TX"}}, {"AND": [{"EQ": {"person.org": "dev"}}, {"LT": {"age": 10}}]}]}))
            .await,
        ["p1", "p5"]
    );

    // Results carry the stored JSON and the etag a read gives.
    let q: Query = serde_json::from_value(json!({"filter": {"EQ": {"person.id": 4}}})).unwrap();
    let resp = store.query(q, HashMap::new()).await.unwrap();
    let item = &resp.results[0];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&item.data).unwrap(),
        people[3].1
    );
    assert_eq!(item.etag, store.get(get("p4")).await.unwrap().unwrap().etag);
    assert_eq!(resp.token, None, "no limit, no token");

    // Sort, then page through with daprd's offset tokens.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let q: Query = serde_json::from_value(json!({
            "filter": {"IN": {"person.org": ["dev", "ops"]}},
            "sort": [{"key": "age", "order": "DESC"}],
            "page": {"limit": 3, "token": token}
        }))
        .unwrap();
        let resp = store.query(q, HashMap::new()).await.unwrap();
        if resp.results.is_empty() {
            break;
        }
        seen.extend(resp.results.into_iter().map(|r| r.key));
        token = resp.token.expect("a paged query returns a token");
    }
    assert_eq!(seen, ["p4", "p3", "p2", "p1"]);
    assert_eq!(token, "4");
    let q: Query = serde_json::from_value(json!({"sort": [{"key": "person.id"}]})).unwrap();
    let all = store.query(q, HashMap::new()).await.unwrap().results;
    let order: Vec<_> = all.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        order,
        ["p1", "p2", "p3", "p4", "p5", "blob"],
        "missing fields sort last"
    );

    // daprd refuses range filters on strings; a bad token is a bad request.
    let q: Query = serde_json::from_value(json!({"filter": {"GT": {"state": "CA"}}})).unwrap();
    assert!(matches!(
        store.query(q, HashMap::new()).await,
        Err(StateError::InvalidRequest(_))
    ));
    let q: Query = serde_json::from_value(json!({"page": {"limit": 1, "token": "x"}})).unwrap();
    assert!(matches!(
        store.query(q, HashMap::new()).await,
        Err(StateError::InvalidRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_match_daprd_layout_both_ways() {
    let db = TestDb::create().await;
    let store = db.store(&[]).await;
    let sql = db.sql().await;

    // Written as daprd writes them: JSON as JSONB, bytes as a base64 JSON string + isbinary.
    sql.batch_execute(
        "INSERT INTO state (key, value, isbinary) VALUES ('app||json', '{\"b\": [1, 2], \"a\": \"x y\"}', false);
         INSERT INTO state (key, value, isbinary) VALUES ('app||bin', to_jsonb('AAH/'::text), true);
         INSERT INTO state (key, value, isbinary, expiredate)
             VALUES ('app||ttl', '\"soon\"', false, now() + interval '1 hour');",
    )
    .await
    .unwrap();
    let item = store.get(get("app||json")).await.unwrap().unwrap();
    assert_eq!(
        item.value, r#"{"a":"x y","b":[1,2]}"#,
        "JSONB read back as compact JSON"
    );
    assert_eq!(
        item.etag.as_deref(),
        Some(xmin(&sql, "state", "app||json").await.as_str())
    );
    let bin = store.get(get("app||bin")).await.unwrap().unwrap();
    assert_eq!(bin.value, Bytes::from_static(&[0, 1, 255]));
    let ttl = store.get(get("app||ttl")).await.unwrap().unwrap();
    assert!(ttl.expires.expect("expiry reported") > std::time::SystemTime::now());

    // A daprd etag (xmin) works for our conditional writes, and ours change it like daprd's.
    let mut update = set("app||json", r#"{"a":2}"#);
    update.etag = Some(xmin(&sql, "state", "app||json").await);
    store.set(update).await.unwrap();
    let row = sql
        .query_one(
            "SELECT value->>'a', isbinary, updatedate IS NOT NULL, xmin::text FROM state WHERE key = 'app||json'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "2");
    assert!(!row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2), "updatedate set on update");
    let etag = store
        .get(get("app||json"))
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    assert_eq!(etag, row.get::<_, String>(3));

    // Written by us: how daprd expects to find them.
    store
        .set(set("app||ours-bin", vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    store
        .set(set("app||ours-text", "plain text"))
        .await
        .unwrap();
    let mut with_ttl = set("app||ours-json", r#"{"n":1}"#);
    with_ttl.ttl = Some(Ttl::Expire(Duration::from_secs(60)));
    store.set(with_ttl).await.unwrap();
    let rows = sql
        .query(
            "SELECT key, value::text, isbinary, insertdate IS NOT NULL, \
                    expiredate > now() + interval '50 seconds' AND expiredate < now() + interval '70 seconds' \
             FROM state WHERE key LIKE 'app||ours-%' ORDER BY key",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String, bool, bool, Option<bool>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "app||ours-bin".into(),
                "\"AJ+Slg==\"".into(),
                true,
                true,
                None
            ),
            (
                "app||ours-json".into(),
                "{\"n\": 1}".into(),
                false,
                true,
                Some(true)
            ),
            (
                "app||ours-text".into(),
                "\"cGxhaW4gdGV4dA==\"".into(),
                true,
                true,
                None
            ),
        ]
    );

    // daprd's metadata table: migration level 2, the lock row.
    let meta: Vec<(String, String)> = sql
        .query("SELECT key, value FROM dapr_metadata ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        meta,
        [
            ("lock".into(), "lock".into()),
            ("migrations".into(), "2".into())
        ]
    );
    let columns: Vec<(String, String, String)> = sql
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_name = 'state' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expect = [
        ("key", "text", "NO"),
        ("value", "jsonb", "NO"),
        ("isbinary", "boolean", "NO"),
        ("insertdate", "timestamp with time zone", "NO"),
        ("updatedate", "timestamp with time zone", "YES"),
        ("expiredate", "timestamp with time zone", "YES"),
    ];
    let expect: Vec<(String, String, String)> = expect
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect();
    assert_eq!(columns, expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_a_database_daprd_left_at_level_1() {
    let db = TestDb::create().await;
    let sql = db.sql().await;
    // What an older daprd left behind: custom table names, the state table without
    // expiredate, migration level 1.
    sql.batch_execute(
        "CREATE TABLE my_meta (key text NOT NULL PRIMARY KEY, value text NOT NULL);
         INSERT INTO my_meta VALUES ('migrations', '1');
         CREATE TABLE my_state (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL,
             isbinary boolean NOT NULL,
             insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
             updatedate TIMESTAMP WITH TIME ZONE NULL);
         INSERT INTO my_state (key, value, isbinary) VALUES ('old', '[1, 2]', false);",
    )
    .await
    .unwrap();
    let opts = [("tableName", "my_state"), ("metadataTableName", "my_meta")];
    let store = db.store(&opts).await;
    assert_eq!(store.get(get("old")).await.unwrap().unwrap().value, "[1,2]");
    let level: String = sql
        .query_one("SELECT value FROM my_meta WHERE key = 'migrations'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "2");
    // Opening again at the latest level changes nothing and does not fail.
    drop(store);
    let again = db.store(&opts).await;
    let mut req = set("old", "[3]");
    req.ttl = Some(Ttl::Expire(Duration::from_secs(30)));
    again.set(req).await.unwrap();
    assert!(again
        .get(get("old"))
        .await
        .unwrap()
        .unwrap()
        .expires
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_cleanup_removes_expired_rows() {
    let db = TestDb::create().await;
    let store = db.store(&[("cleanupInterval", "1s")]).await;
    let sql = db.sql().await;
    sql.execute(
        "INSERT INTO state (key, value, isbinary, expiredate) \
         VALUES ('stale', '1', false, now() - interval '1 hour')",
        &[],
    )
    .await
    .unwrap();
    let mut short = set("short", "2");
    short.ttl = Some(Ttl::Expire(Duration::from_secs(1)));
    store.set(short).await.unwrap();
    store.set(set("keeper", "3")).await.unwrap();
    assert_eq!(
        store.get(get("stale")).await.unwrap(),
        None,
        "expired rows are not read"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = sql
            .query_one(
                "SELECT count(*) FROM state WHERE key IN ('stale', 'short')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the periodic cleanup did not delete expired rows"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.get(get("keeper")).await.unwrap().is_some());
    let last: i64 = sql
        .query_one(
            "SELECT count(*) FROM dapr_metadata WHERE key = 'last-cleanup'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        last, 1,
        "the cleanup claims its turn in the metadata table, as daprd does"
    );
    // Right after a run it is nobody's turn.
    assert_eq!(store.cleanup_expired().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bounded_and_recover_from_lost_connections() {
    let db = TestDb::create().await;
    let store = db.store(&[("timeoutInSeconds", "1")]).await;
    store.set(set("k", "1")).await.unwrap();

    // A writer blocked by another transaction's row lock gives up at the timeout.
    let mut locker = db.sql().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM state WHERE key = 'k' FOR UPDATE", &[])
        .await
        .unwrap();
    let started = Instant::now();
    let blocked = store.set(set("k", "2")).await;
    assert!(
        matches!(blocked, Err(StateError::Backend(ref e)) if e.contains("timed out")),
        "{blocked:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The timed-out statement is cancelled on the server (as pgx does for daprd), so it
    // neither keeps waiting for the lock nor applies once the lock is gone.
    let admin = connect(&admin_conn_str()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'outrigger' AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out statement still waits"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.rollback().await.unwrap();
    assert_eq!(store.get(get("k")).await.unwrap().unwrap().value, "1");

    // The server ends every session of the store: calls fail fast, then work again.
    let ended = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'outrigger'",
            &[&db.name],
        )
        .await
        .unwrap();
    assert!(ended > 0, "the store's sessions were found and ended");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let result = store.get(get("k")).await;
        assert!(started.elapsed() < Duration::from_secs(2), "a call hung");
        if result.is_ok() {
            break;
        }
        eprintln!("after the server ended the sessions: {result:?}");
        assert!(
            Instant::now() < deadline,
            "store did not recover: {result:?}"
        );
    }
}

#[tokio::test]
async fn open_fails_fast_when_nothing_listens() {
    let port = support::unused_port().await;
    let started = Instant::now();
    let result = PostgresStore::open(&component(&[(
        "connectionString",
        format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
    )]))
    .await;
    let Err(err) = result else {
        panic!("open succeeded against a closed port")
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("failed to connect to PostgreSQL")
            && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );

    let tls = PostgresStore::open(&component(&[(
        "connectionString",
        "host=127.0.0.1 user=postgres sslmode=require".to_owned(),
    )]))
    .await;
    assert!(matches!(tls, Err(StateError::InvalidRequest(ref e)) if e.contains("sslmode=require")));
}
