use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use super::*;
use crate::state::{StateError, Value};

fn component(name: &str, type_name: &str, metadata: &[(&str, &str)]) -> Component {
    let mut c = Component::embedded(name, type_name);
    c.metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    c
}

fn ctx(registry: &mut Registry) -> StatesContext {
    StatesContext {
        app_id: "app".into(),
        namespace: None,
        metrics: Arc::new(ComponentMetrics::new(registry, "app", "default")),
    }
}

async fn states(components: &[Component]) -> States {
    States::open(components, ctx(&mut Registry::default()))
        .await
        .unwrap()
}

fn save(key: &str, json: &'static str) -> SaveState {
    SaveState {
        key: key.into(),
        value: Value::Json(Bytes::from_static(json.as_bytes())),
        etag: None,
        metadata: HashMap::new(),
        options: StateOptions::default(),
    }
}

fn get(key: &str) -> GetState {
    GetState {
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn lookup_errors_follow_daprd() {
    let none = states(&[]).await;
    assert!(matches!(
        none.store("s"),
        Err(StatesError::NotConfigured { .. })
    ));
    let one = states(&[component("s", "state.in-memory", &[])]).await;
    let err = one.store("other").err().unwrap();
    assert!(matches!(err, StatesError::NotFound { ref app_id, .. } if app_id == "app"));
    assert_eq!(err.to_string(), "state store other is not found");
}

#[tokio::test]
async fn prefixes_apply_per_component_and_share_nothing_else() {
    // Two components over separate memory stores: each applies its own prefix.
    let s = states(&[
        component("a", "state.in-memory", &[]),
        component("b", "state.in-memory", &[("keyPrefix", "none")]),
    ])
    .await;
    let a = s.store("a").unwrap();
    a.save(vec![save("k", " { \"x\" : 1 } ")]).await.unwrap();
    let entry = a.get(get("k")).await.unwrap().unwrap();
    assert_eq!(entry.value, "{\"x\":1}", "JSON is stored compact");
    let raw = s.stores["a"]
        .store
        .get(crate::state::GetRequest {
            key: "app||k".into(),
            consistency: Default::default(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap();
    assert!(raw.is_some(), "stored under app||k");
    assert!(s.store("b").unwrap().get(get("k")).await.unwrap().is_none());
}

#[tokio::test]
async fn keys_are_checked_before_any_write() {
    let s = states(&[component("s", "state.in-memory", &[])]).await;
    let store = s.store("s").unwrap();
    let err = store
        .save(vec![save("ok", "1"), save("a||b", "2")])
        .await
        .unwrap_err();
    assert!(matches!(err, StatesError::IllegalKey { ref key, .. } if key == "a||b"));
    assert!(store.get(get("ok")).await.unwrap().is_none());
    assert!(matches!(
        store.save(vec![save("", "1")]).await,
        Err(StatesError::EmptyKey)
    ));
    let mut bad_ttl = save("t", "1");
    bad_ttl
        .metadata
        .insert("ttlInSeconds".into(), "soon".into());
    let err = store.save(vec![bad_ttl]).await.unwrap_err();
    assert!(matches!(
        err,
        StatesError::Save {
            source: StateError::InvalidRequest(_),
            ..
        }
    ));
}

#[tokio::test]
async fn transaction_checks_run_in_daprd_order() {
    let s = states(&[component("s", "state.in-memory", &[])]).await;
    let store = s.store("s").unwrap();
    let op = |operation: &str, key: &str| TransactionOperation {
        operation: operation.into(),
        request: save(key, "1"),
    };
    let err = store
        .transact(vec![op("upsert", "a||b"), op("merge", "x")], HashMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StatesError::IllegalKey { .. }));
    let err = store
        .transact(vec![op("merge", "x"), op("upsert", "a||b")], HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "operation type merge not supported");
    store
        .transact(vec![op("upsert", "x"), op("delete", "y")], HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        store.get(get("x")).await.unwrap().unwrap().value,
        Bytes::from_static(b"1")
    );
}

#[tokio::test]
async fn ttl_is_reported_as_expire_time() {
    let s = states(&[component("s", "state.in-memory", &[])]).await;
    let store = s.store("s").unwrap();
    let mut item = save("t", "1");
    item.metadata.insert("ttlInSeconds".into(), "100".into());
    store.save(vec![item]).await.unwrap();
    let entry = store.get(get("t")).await.unwrap().unwrap();
    let at = &entry.metadata["ttlExpireTime"];
    assert_eq!(at.len(), "2024-01-01T00:00:00Z".len(), "{at}");
    assert!(at.ends_with('Z'));
}

#[tokio::test]
async fn failed_stores_fail_startup_unless_ignored() {
    let err = States::open(
        &[component("bad", "state.nonesuch", &[])],
        ctx(&mut Registry::default()),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"bad\"") && text.contains("state.nonesuch"),
        "{text}"
    );

    let mut ignored = component("bad", "state.nonesuch", &[]);
    ignored.ignore_errors = true;
    let s = states(&[ignored, component("good", "state.in-memory", &[])]).await;
    assert!(matches!(s.store("bad"), Err(StatesError::NotFound { .. })));
    assert!(s.store("good").is_ok());

    let err = States::open(
        &[component("p", "state.in-memory", &[("keyPrefix", "a||b")])],
        ctx(&mut Registry::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, OpenError::Metadata(_)));
}

#[tokio::test]
async fn store_wide_default_ttl_is_validated_where_daprd_reads_it() {
    // Redis reads `ttlInSeconds` from its component; a bad one fails before connecting.
    let err = States::open(
        &[component("r", "state.redis", &[("ttlInSeconds", "soon")])],
        ctx(&mut Registry::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, OpenError::Metadata(_)), "{err}");
    // The in-memory store has no such setting in daprd, so it is ignored there.
    states(&[component(
        "m",
        "state.in-memory",
        &[("ttlInSeconds", "soon")],
    )])
    .await;
}

#[tokio::test]
async fn capabilities_add_actor_for_etag_and_transactions() {
    let s = states(&[component("s", "state.in-memory", &[])]).await;
    let caps = s.capabilities("s").unwrap();
    assert!(caps.contains(&"ETAG") && caps.contains(&"TRANSACTIONAL"));
    assert_eq!(caps.last(), Some(&"ACTOR"));
    assert_eq!(s.capabilities("other"), None);
}

#[tokio::test]
async fn operations_are_counted() {
    let mut registry = Registry::default();
    let s = States::open(
        &[component("s", "state.in-memory", &[])],
        ctx(&mut registry),
    )
    .await
    .unwrap();
    let store = s.store("s").unwrap();
    store.get(get("k")).await.unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("dapr_component_state_count{app_id=\"app\",component=\"s\",namespace=\"default\",operation=\"get\",success=\"true\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("dapr_component_state_latencies_bucket{"),
        "{text}"
    );
}
