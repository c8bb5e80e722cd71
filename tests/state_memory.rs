//! The in-memory store: the shared conformance suite, query evaluation, TTL purge.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outrigger::state::query::{Query, QueryResponse};
use outrigger::state::{
    Concurrency, Consistency, GetRequest, MemoryStore, SetRequest, StateError, StateStore, Ttl,
};
use serde_json::json;

#[tokio::test]
async fn memory_store_passes_conformance() {
    let prefix = format!("conformance-{}", uuid::Uuid::new_v4());
    support::state_conformance::run(Arc::new(MemoryStore::new()), &prefix).await;
}

fn set(key: &str, value: serde_json::Value) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        value: Bytes::from(value.to_string()),
        etag: None,
        concurrency: Concurrency::LastWrite,
        consistency: Consistency::Eventual,
        ttl: None,
        metadata: HashMap::new(),
    }
}

/// People in three states, keyed `p1`..`p5`, plus one value that is not JSON.
async fn people() -> MemoryStore {
    let store = MemoryStore::new();
    let rows = [
        (
            "p1",
            json!({"person": {"org": "Dev", "id": 1}, "state": "CA", "age": 30}),
        ),
        (
            "p2",
            json!({"person": {"org": "Ops", "id": 2}, "state": "WA", "age": 25}),
        ),
        (
            "p3",
            json!({"person": {"org": "Dev", "id": 3}, "state": "WA", "age": 41.5}),
        ),
        (
            "p4",
            json!({"person": {"org": "Finance", "id": 4}, "state": "NY", "age": 25}),
        ),
        (
            "p5",
            json!({"person": {"org": "Dev", "id": 5}, "state": "CA"}),
        ),
    ];
    for (key, value) in rows {
        store.set(set(key, value)).await.unwrap();
    }
    let mut binary = set("bin", json!(null));
    binary.value = Bytes::from_static(&[0xff, 0x00]);
    store.set(binary).await.unwrap();
    store
}

async fn run(store: &MemoryStore, query: serde_json::Value) -> QueryResponse {
    let query: Query = serde_json::from_value(query).unwrap();
    store.query(query, HashMap::new()).await.unwrap()
}

fn keys(response: &QueryResponse) -> Vec<&str> {
    response.results.iter().map(|r| r.key.as_str()).collect()
}

#[tokio::test]
async fn query_filters_on_dotted_paths() {
    let store = people().await;
    let cases = [
        (json!({"EQ": {"person.org": "Dev"}}), vec!["p1", "p3", "p5"]),
        (json!({"NEQ": {"state": "WA"}}), vec!["p1", "p4", "p5"]),
        (json!({"GT": {"age": 25}}), vec!["p1", "p3"]),
        (json!({"GTE": {"age": 25}}), vec!["p1", "p2", "p3", "p4"]),
        (json!({"LT": {"age": 30}}), vec!["p2", "p4"]),
        (json!({"LTE": {"age": 30.0}}), vec!["p1", "p2", "p4"]),
        (
            json!({"IN": {"state": ["NY", "CA"]}}),
            vec!["p1", "p4", "p5"],
        ),
        (json!({"EQ": {"person.id": 3.0}}), vec!["p3"]),
        (
            json!({"AND": [{"EQ": {"person.org": "Dev"}}, {"EQ": {"state": "WA"}}]}),
            vec!["p3"],
        ),
        (
            json!({"OR": [{"EQ": {"state": "NY"}}, {"AND": [{"EQ": {"state": "CA"}}, {"GT": {"age": 1}}]}]}),
            vec!["p1", "p4"],
        ),
        (json!({"EQ": {"missing.path": "x"}}), vec![]),
    ];
    for (filter, expected) in cases {
        let response = run(&store, json!({ "filter": filter })).await;
        assert_eq!(keys(&response), expected, "{filter}");
        assert_eq!(response.token, None);
    }
    // No filter: every JSON value, ordered by key; the binary value cannot be queried.
    let all = run(&store, json!({})).await;
    assert_eq!(keys(&all), ["p1", "p2", "p3", "p4", "p5"]);
    assert!(all.results.iter().all(|r| r.etag.is_some()));
}

#[tokio::test]
async fn query_sorts_on_several_keys() {
    let store = people().await;
    let response = run(
        &store,
        json!({"sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}]}),
    )
    .await;
    assert_eq!(keys(&response), ["p2", "p3", "p4", "p1", "p5"]);
    // A missing value sorts after present ones ascending, before them descending.
    let by_age = run(&store, json!({"sort": [{"key": "age"}]})).await;
    assert_eq!(keys(&by_age), ["p2", "p4", "p1", "p3", "p5"]);
    let by_age_desc = run(&store, json!({"sort": [{"key": "age", "order": "DESC"}]})).await;
    assert_eq!(keys(&by_age_desc), ["p5", "p3", "p1", "p2", "p4"]);
}

#[tokio::test]
async fn query_pages_with_an_offset_token() {
    let store = people().await;
    let page =
        |token: &str| json!({"sort": [{"key": "person.id"}], "page": {"limit": 2, "token": token}});
    let first = run(&store, page("")).await;
    assert_eq!(keys(&first), ["p1", "p2"]);
    assert_eq!(first.token.as_deref(), Some("2"));
    let second = run(&store, page("2")).await;
    assert_eq!(keys(&second), ["p3", "p4"]);
    assert_eq!(second.token.as_deref(), Some("4"));
    let third = run(&store, page("4")).await;
    assert_eq!(keys(&third), ["p5"]);
    assert_eq!(third.token.as_deref(), Some("5"));
    let past = run(&store, page("5")).await;
    assert!(past.results.is_empty());
    assert_eq!(past.token, None);

    let query: Query = serde_json::from_value(page("not-a-number")).unwrap();
    assert!(matches!(
        store.query(query, HashMap::new()).await,
        Err(StateError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn expired_items_are_invisible_then_purged() {
    let store = MemoryStore::with_purge_interval(Duration::from_millis(50));
    let mut req = set("short", json!("x"));
    req.ttl = Some(Ttl::Expire(Duration::from_secs(1)));
    store.set(req).await.unwrap();
    store.set(set("long", json!("y"))).await.unwrap();
    assert_eq!(store.stored_len(), 2);
    let get = |key: &str| GetRequest {
        key: key.to_owned(),
        consistency: Consistency::Eventual,
        metadata: HashMap::new(),
    };
    assert!(store.get(get("short")).await.unwrap().is_some());
    // The purge task removes it without any read touching it.
    support::eventually("expired item purged", || async {
        (store.stored_len() == 1).then_some(())
    })
    .await;
    assert!(store.get(get("short")).await.unwrap().is_none());
    assert!(store.get(get("long")).await.unwrap().is_some());
}

#[tokio::test]
async fn delete_with_prefix_removes_only_that_prefix() {
    let store = MemoryStore::new();
    for key in ["a||1", "a||2", "ab||1", "b||1"] {
        store.set(set(key, json!(1))).await.unwrap();
    }
    assert_eq!(store.delete_with_prefix("a||".into()).await.unwrap(), 2);
    assert_eq!(store.stored_len(), 2);
}

#[tokio::test]
async fn transaction_with_a_stale_etag_applies_nothing() {
    let store = MemoryStore::new();
    store.set(set("a", json!(1))).await.unwrap();
    let mut stale = set("a", json!(2));
    stale.etag = Some("stale".into());
    let result = store
        .transact(
            vec![
                outrigger::state::Operation::Upsert(set("b", json!(1))),
                outrigger::state::Operation::Upsert(stale),
            ],
            HashMap::new(),
        )
        .await;
    assert!(matches!(result, Err(StateError::EtagMismatch(_))));
    assert_eq!(store.stored_len(), 1);
}
