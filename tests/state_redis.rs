//! `state.redis` against real Redis servers: the shared conformance suite, a server restart
//! under a live store, interop with daprd's storage layout, startup failures, and TLS.
//! Needs `redis-server` on PATH (Debian package `redis-server`); uses the machine's Redis on
//! 127.0.0.1:6379 when one answers there, else starts its own. The TLS tests make their
//! certificate with the `openssl` command (Debian package `openssl`).

mod support;

#[path = "state_redis/server.rs"]
mod server;
#[path = "state_redis/tls.rs"]
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outrigger::config::{Component, ComponentSource};
use outrigger::state::redis::RedisStore;
use outrigger::state::{
    Concurrency, Consistency, GetRequest, Operation, SetRequest, StateError, StateStore, Ttl,
};

use server::{shared_redis, Cleanup, RedisServer};

fn component(metadata: &[(&str, &str)]) -> Component {
    Component {
        name: "statestore".into(),
        type_name: "state.redis".into(),
        version: "v1".into(),
        ignore_errors: false,
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
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
        key: key.into(),
        consistency: Consistency::Eventual,
        metadata: HashMap::new(),
    }
}

fn set(key: &str, value: &'static str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::from_static(value.as_bytes()),
        etag: None,
        concurrency: Concurrency::LastWrite,
        consistency: Consistency::Eventual,
        ttl: None,
        metadata: HashMap::new(),
    }
}

fn prefix() -> String {
    format!("outrigger-test-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn conformance() {
    let own;
    let addr = match shared_redis() {
        Some(addr) => addr,
        None => {
            own = RedisServer::start().await;
            own.addr()
        }
    };
    let prefix = prefix();
    let _cleanup = Cleanup {
        addr: addr.clone(),
        prefix: prefix.clone(),
    };
    let store = RedisStore::open(&component(&[("redisHost", &addr)]))
        .await
        .expect("open store");
    assert_eq!(store.type_name(), "state.redis");
    support::state_conformance::run(Arc::new(store), &prefix).await;
}

#[tokio::test]
async fn survives_a_redis_restart() {
    let mut server = RedisServer::start().await;
    let store = RedisStore::open(&component(&[
        ("redisHost", &server.addr()),
        ("dialTimeout", "500ms"),
        ("readTimeout", "1s"),
        ("writeTimeout", "1s"),
    ]))
    .await
    .expect("open store");
    store
        .set(set("k", "\"before\""))
        .await
        .expect("set while up");

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let result = store.get(get("k")).await;
        assert!(
            matches!(result, Err(StateError::Backend(_))),
            "expected a backend error while Redis is down, got {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let started = Instant::now();
        assert!(store.set(set("k", "\"down\"")).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    server.restart().await;
    support::eventually("the store to work again", || async {
        store.set(set("k", "\"after\"")).await.ok()
    })
    .await;
    let item = store
        .get(get("k"))
        .await
        .unwrap()
        .expect("written after restart");
    assert_eq!(item.value, "\"after\"");
}

#[tokio::test]
async fn reads_and_writes_daprds_layout() {
    let server = RedisServer::start().await;
    let store = RedisStore::open(&component(&[("redisHost", &server.addr())]))
        .await
        .expect("open store");
    let client = redis::Client::open(format!("redis://{}/", server.addr())).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();

    // Written as daprd writes it: read back with daprd's etag.
    redis::cmd("HSET")
        .arg("app||from-daprd")
        .arg("data")
        .arg("{\"n\":1}")
        .arg("version")
        .arg(1)
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let item = store.get(get("app||from-daprd")).await.unwrap().unwrap();
    assert_eq!(item.value, "{\"n\":1}");
    assert_eq!(item.etag.as_deref(), Some("1"));
    assert_eq!(item.expires, None);
    // An update with that etag bumps daprd's counter by one.
    let mut update = set("app||from-daprd", "{\"n\":2}");
    update.etag = Some("1".into());
    store.set(update).await.unwrap();
    let fields: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg("app||from-daprd")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(fields["data"], b"{\"n\":2}");
    assert_eq!(fields["version"], b"2");

    // Written by the store: daprd's hash, with a numeric version that is the etag.
    let mut first = set("app||from-outrigger", "\"x\"");
    first.concurrency = Concurrency::FirstWrite;
    first.ttl = Some(Ttl::Expire(Duration::from_secs(100)));
    store.set(first).await.unwrap();
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("app||from-outrigger")
        .query_async(&mut raw)
        .await
        .unwrap();
    let etag = store
        .get(get("app||from-outrigger"))
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap();
    assert_eq!(fields["data"], "\"x\"");
    assert_eq!(fields["version"], etag);
    assert!(fields["version"].parse::<i64>().is_ok(), "{fields:?}");
    assert_eq!(fields.get("first-write").map(String::as_str), Some("0"));
    assert_eq!(fields.len(), 3, "{fields:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg("app||from-outrigger")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");
    // daprd's next write increments the same counter; the store sees the new etag.
    let next: i64 = redis::cmd("HINCRBY")
        .arg("app||from-outrigger")
        .arg("version")
        .arg(1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let item = store
        .get(get("app||from-outrigger"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.etag, Some(next.to_string()));

    // The plain-string layout daprd still reads (no etag).
    redis::cmd("SET")
        .arg("app||legacy")
        .arg("\"old\"")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let item = store.get(get("app||legacy")).await.unwrap().unwrap();
    assert_eq!((item.value.as_ref(), item.etag), (&b"\"old\""[..], None));

    // A non-numeric etag can never be a Redis version.
    let mut garbage = set("app||from-daprd", "1");
    garbage.etag = Some("not-a-number".into());
    assert!(matches!(
        store.set(garbage).await,
        Err(StateError::EtagInvalid(_))
    ));
}

/// Inputs that would make a command fail inside the write script (where Redis cannot undo
/// earlier writes) are handled before it: an absurd TTL is clamped, another type is replaced.
#[tokio::test]
async fn transactions_survive_odd_inputs() {
    let server = RedisServer::start().await;
    let store = RedisStore::open(&component(&[("redisHost", &server.addr())]))
        .await
        .expect("open store");
    let client = redis::Client::open(format!("redis://{}/", server.addr())).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("RPUSH")
        .arg("app||a-list")
        .arg("x")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let mut forever_ish = set("app||far", "1");
    forever_ish.ttl = Some(Ttl::Expire(Duration::MAX));
    store
        .transact(
            vec![
                Operation::Upsert(forever_ish),
                Operation::Upsert(set("app||a-list", "2")),
            ],
            HashMap::new(),
        )
        .await
        .expect("transaction");
    let ttl: i64 = redis::cmd("TTL")
        .arg("app||far")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0, "{ttl}");
    let item = store.get(get("app||a-list")).await.unwrap().unwrap();
    assert_eq!(item.value, "2");
}

#[tokio::test]
async fn startup_fails_clearly_when_nothing_listens() {
    let port = support::unused_port().await;
    let started = Instant::now();
    let err = RedisStore::open(&component(&[
        ("redisHost", &format!("127.0.0.1:{port}")),
        ("dialTimeout", "1s"),
    ]))
    .await
    .err()
    .expect("open must fail");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("error connecting to redis at 127.0.0.1:{port}")),
        "{msg}"
    );
}

#[tokio::test]
async fn startup_is_bounded_by_dial_timeout_when_the_server_never_answers() {
    // Accepted by the kernel's backlog, never served: connect succeeds, PING never returns.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let err = RedisStore::open(&component(&[
        ("redisHost", &addr.to_string()),
        ("dialTimeout", "700ms"),
    ]))
    .await
    .err()
    .expect("open must fail");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("error connecting to redis"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_metadata_is_rejected_before_connecting() {
    for (metadata, needle) in [
        (vec![], "redisHost is required"),
        (vec![("redisHost", "a:1,b:2")], "several servers"),
        (
            vec![("redisHost", "h"), ("redisType", "cluster")],
            "redisType",
        ),
    ] {
        let err = RedisStore::open(&component(&metadata))
            .await
            .err()
            .expect("must fail");
        assert!(err.to_string().contains(needle), "{err}");
    }
}
