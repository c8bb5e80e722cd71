//! The state API's component side over plain HTTP: store lookup errors and scopes, key prefix
//! strategies, capabilities in the metadata API, and component metrics.

mod support;

use axum::body::Body;
use http::{Method, StatusCode};
use outrigger::sidecar::Sidecar;
use serde_json::json;
use support::state_http::*;
use support::*;

#[tokio::test]
async fn store_lookup_errors() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "myapp").await;
    let api = Api::new(&sidecar);
    let missing = api.get("/v1.0/state/mystore/k").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.body,
        r#"{"errorCode":"ERR_STATE_STORE_NOT_FOUND","message":"state store mystore is not found","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":{"appID":"myapp"},"reason":"DAPR_STATE_NOT_FOUND"}]}"#
    );
    for (method, path, body) in [
        (Method::POST, "/v1.0/state/mystore", "[]"),
        (Method::POST, "/v1.0/state/mystore/bulk", "{}"),
        (Method::DELETE, "/v1.0/state/mystore/k", ""),
        (Method::POST, "/v1.0/state/mystore/transaction", "{}"),
        (Method::POST, "/v1.0-alpha1/state/mystore/query", "{}"),
    ] {
        let reply = api.call(method, path, &[], body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.json()["errorCode"], "ERR_STATE_STORE_NOT_FOUND");
    }
    sidecar.stop().await;

    // Only a store scoped to another app: nothing loaded for this one, so "not configured".
    let (scoped, _dir) = sidecar_with(
        &mesh,
        "myapp",
        &memory_component("theirs", &[], &["someone-else"]),
    )
    .await;
    let api = Api::new(&scoped);
    let reply = api.get("/v1.0/state/theirs/k").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = reply.json();
    assert_eq!(body["errorCode"], "ERR_STATE_STORE_NOT_CONFIGURED");
    assert_eq!(body["message"], "state store theirs is not configured");
    assert_eq!(body["details"][0]["reason"], "DAPR_STATE_NOT_CONFIGURED");
    scoped.stop().await;

    // With another store loaded, the scoped-away one is "not found".
    let yaml = format!(
        "{}---\n{}",
        memory_component("mine", &[], &[]),
        memory_component("theirs", &[], &["someone-else"])
    );
    let (both, _dir) = sidecar_with(&mesh, "myapp", &yaml).await;
    let reply = Api::new(&both).get("/v1.0/state/theirs/k").await;
    assert_eq!(reply.json()["errorCode"], "ERR_STATE_STORE_NOT_FOUND");
    both.stop().await;
}

#[tokio::test]
async fn key_prefix_strategies() {
    let mesh = Mesh::new();
    let yaml = [
        memory_component("byapp", &[], &[]),
        memory_component("byname", &[("keyPrefix", "name")], &[]),
        memory_component("raw", &[("keyPrefix", "none")], &[]),
        memory_component("shared", &[("keyPrefix", "Team-A")], &[]),
    ]
    .join("---\n");
    let (sidecar, _dir) = sidecar_with(&mesh, "alpha", &yaml).await;
    let api = Api::new(&sidecar);
    assert_eq!(stored_key(&api, "byapp", "k").await, "alpha||k");
    assert_eq!(stored_key(&api, "byname", "k").await, "byname||k");
    assert_eq!(stored_key(&api, "raw", "k").await, "k");
    assert_eq!(stored_key(&api, "shared", "k").await, "team-a||k");

    // Whatever the prefix, the app reads its own key back and queries see it stripped.
    for store in ["byapp", "byname", "raw", "shared"] {
        api.post(
            &format!("/v1.0/state/{store}"),
            json!([{"key": "k", "value": {"s": store}}]),
        )
        .await;
        let read = api.get(&format!("/v1.0/state/{store}/k")).await;
        assert_eq!(read.json(), json!({"s": store}));
        let found = api
            .post(&format!("/v1.0-alpha1/state/{store}/query"), json!({}))
            .await;
        assert_eq!(found.json()["results"][0]["key"], "k", "{store}");
    }
    sidecar.stop().await;

    // A prefix containing the separator fails startup, naming the component.
    let resources = tempfile::tempdir().unwrap();
    write(
        resources.path(),
        "bad.yaml",
        &memory_component("broken", &[("keyPrefix", "a||b")], &[]),
    );
    let options = mesh.options(
        "alpha",
        None,
        &["--resources-path", path_str(resources.path())],
    );
    let err = Sidecar::start(options).await.err().expect("startup fails");
    let text = format!("{err:#}");
    assert!(text.contains("\"broken\""), "{text}");
}

#[tokio::test]
async fn metadata_reports_store_capabilities_and_metrics_count_calls() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);
    let metadata = api.get("/v1.0/metadata").await.json();
    let components = metadata["components"].as_array().unwrap();
    let store = components
        .iter()
        .find(|c| c["name"] == "statestore")
        .expect("statestore listed");
    assert_eq!(store["type"], "state.in-memory");
    assert_eq!(
        store["capabilities"],
        json!([
            "ETAG",
            "TRANSACTIONAL",
            "TTL",
            "QUERY_API",
            "DELETE_WITH_PREFIX",
            "ACTOR"
        ])
    );
    let pubsub = components.iter().find(|c| c["name"] == "pubsub").unwrap();
    assert_eq!(pubsub["capabilities"], json!(["SUBSCRIBE_WILDCARDS"]));

    api.post("/v1.0/state/statestore", json!([{"key": "k", "value": 1}]))
        .await;
    api.get("/v1.0/state/statestore/k").await;
    let url = format!("http://{}/metrics", sidecar.metrics_addr.expect("metrics"));
    let text = send(Method::GET, &url, &[], Body::empty()).await.unwrap();
    let text = String::from_utf8(text.body.to_vec()).unwrap();
    for op in ["set", "get"] {
        let series = format!(
            "dapr_component_state_count{{app_id=\"alpha\",component=\"statestore\",namespace=\"default\",operation=\"{op}\",success=\"true\"}} 1"
        );
        assert!(text.contains(&series), "{series} in\n{text}");
    }
    assert!(text.contains("# TYPE dapr_component_state_latencies histogram"));
    sidecar.stop().await;
}
