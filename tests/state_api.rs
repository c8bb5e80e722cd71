//! The state API over plain HTTP, as Dapr's docs describe it, against a whole sidecar: saves,
//! reads, deletes, etags, bulk reads, transactions, the query API and TTL.

mod support;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::state_http::*;
use support::*;

#[tokio::test]
async fn save_get_delete_with_etags() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);

    let saved = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "order", "value": {"id": 1, "items": ["a", "b"]}}]),
        )
        .await;
    assert_eq!(saved.status, StatusCode::NO_CONTENT, "{:?}", saved.body);
    let read = api.get("/v1.0/state/statestore/order").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, r#"{"id":1,"items":["a","b"]}"#);
    assert_eq!(read.headers["content-type"], "application/json");
    let first = etag(&read);

    // A string value is stored as JSON text, quotes included.
    api.post(
        "/v1.0/state/statestore",
        json!([{"key": "order", "value": "second", "etag": first}]),
    )
    .await;
    let read = api.get("/v1.0/state/statestore/order").await;
    assert_eq!(read.body, "\"second\"");
    let second = etag(&read);
    assert_ne!(first, second);

    let stale = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "order", "value": 3, "etag": first}]),
        )
        .await;
    let message = assert_legacy(&stale, StatusCode::CONFLICT, "ERR_STATE_SAVE");
    assert!(
        message
            .starts_with("failed saving state in state store statestore: possible etag mismatch"),
        "{message}"
    );
    // first-write without an etag refuses to overwrite; option names are case-insensitive.
    let first_write = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "order", "value": 3, "options": {"Concurrency": "first-write"}}]),
        )
        .await;
    assert_legacy(&first_write, StatusCode::CONFLICT, "ERR_STATE_SAVE");
    let bad_option = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "order", "value": 3, "options": {"concurrency": "sometimes"}}]),
        )
        .await;
    assert_legacy(
        &bad_option,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_STATE_SAVE",
    );

    let wrong = api
        .call(
            Method::DELETE,
            "/v1.0/state/statestore/order",
            &[("if-match", &first)],
            "",
        )
        .await;
    let message = assert_legacy(&wrong, StatusCode::CONFLICT, "ERR_STATE_DELETE");
    assert!(
        message.starts_with("failed deleting state with key order: possible etag mismatch"),
        "{message}"
    );
    let deleted = api
        .call(
            Method::DELETE,
            "/v1.0/state/statestore/order",
            &[("if-match", &second)],
            "",
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1.0/state/statestore/order").await.status,
        StatusCode::NO_CONTENT
    );
    // Deleting what is absent, without an etag, succeeds.
    let again = api
        .call(Method::DELETE, "/v1.0/state/statestore/order", &[], "")
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    sidecar.stop().await;
}

#[tokio::test]
async fn request_shape_errors() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);

    let empty = api.post("/v1.0/state/statestore", json!([])).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);
    let bad = api
        .call(Method::POST, "/v1.0/state/statestore", &[], "[{\"key\":")
        .await;
    assert_legacy(&bad, StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST");
    let keyless = api
        .post("/v1.0/state/statestore", json!([{"value": 1}]))
        .await;
    let message = assert_legacy(&keyless, StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST");
    assert_eq!(message, "\"key\" is a required field");

    // `||` in a key: daprd's rich error with a field violation.
    let illegal = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "a||b", "value": 1}]),
        )
        .await;
    assert_eq!(illegal.status, StatusCode::BAD_REQUEST);
    let body = illegal.json();
    assert_eq!(body["errorCode"], "ERR_MALFORMED_REQUEST");
    assert_eq!(
        body["message"],
        "input key/keyPrefix 'a||b' can't contain '||'"
    );
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(body["details"][0]["field_violations"][0]["field"], "a||b");
    assert_eq!(body["details"][2]["reason"], "DAPR_STATE_ILLEGAL_KEY");
    let illegal_get = api.get("/v1.0/state/statestore/a%7C%7Cb").await;
    assert_eq!(illegal_get.status, StatusCode::BAD_REQUEST);

    // Keys in the URL are percent-decoded; `bulk` is an ordinary key for GET.
    api.post(
        "/v1.0/state/statestore",
        json!([{"key": "a b/c", "value": 1}, {"key": "bulk", "value": 2}]),
    )
    .await;
    assert_eq!(api.get("/v1.0/state/statestore/a%20b%2Fc").await.body, "1");
    assert_eq!(api.get("/v1.0/state/statestore/bulk").await.body, "2");
    sidecar.stop().await;
}

#[tokio::test]
async fn bulk_get_answers_in_key_order() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);
    let items: Vec<Value> = (0..20)
        .map(|i| json!({"key": format!("k{i}"), "value": {"n": i}}))
        .collect();
    assert_eq!(
        api.post("/v1.0/state/statestore", Value::Array(items))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let mut keys: Vec<String> = (0..20).rev().map(|i| format!("k{i}")).collect();
    keys.insert(5, "absent".to_owned());
    let reply = api
        .post(
            "/v1.0/state/statestore/bulk",
            json!({"keys": keys, "parallelism": 3}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let rows = reply.json();
    let rows = rows.as_array().unwrap();
    let got: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        rows[0]["data"],
        json!({"n": 19}),
        "data is embedded as JSON"
    );
    assert!(rows[0]["etag"].is_string());
    assert_eq!(rows[5], json!({"key": "absent"}));

    let empty = api
        .post("/v1.0/state/statestore/bulk", json!({"keys": []}))
        .await;
    assert_eq!(
        (empty.status, empty.body.as_ref()),
        (StatusCode::OK, &b"[]"[..])
    );
    let bad = api
        .call(Method::POST, "/v1.0/state/statestore/bulk", &[], "{")
        .await;
    assert_legacy(&bad, StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST");
    sidecar.stop().await;
}

#[tokio::test]
async fn transactions_apply_all_or_nothing() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);
    api.post(
        "/v1.0/state/statestore",
        json!([{"key": "a", "value": "a0"}]),
    )
    .await;
    let tx = "/v1.0/state/statestore/transaction";
    let ok = api
        .post(
            tx,
            json!({"operations": [
                {"operation": "upsert", "request": {"key": "b", "value": {"v": 1}}},
                {"operation": "delete", "request": {"key": "a"}}
            ]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{:?}", ok.body);
    assert_eq!(
        api.get("/v1.0/state/statestore/a").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/v1.0/state/statestore/b").await.body, r#"{"v":1}"#);

    // A stale etag in the second operation: the first is not applied either.
    let rolled_back = api
        .post(
            tx,
            json!({"operations": [
                {"operation": "upsert", "request": {"key": "c", "value": 1}},
                {"operation": "upsert", "request": {"key": "b", "value": 2, "etag": "stale"}}
            ]}),
        )
        .await;
    let message = assert_legacy(
        &rolled_back,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_STATE_TRANSACTION",
    );
    assert!(
        message.starts_with("error while executing state transaction: "),
        "{message}"
    );
    assert_eq!(
        api.get("/v1.0/state/statestore/c").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/v1.0/state/statestore/b").await.body, r#"{"v":1}"#);

    let unknown = api
        .post(
            tx,
            json!({"operations": [{"operation": "merge", "request": {"key": "x"}}]}),
        )
        .await;
    let message = assert_legacy(
        &unknown,
        StatusCode::BAD_REQUEST,
        "ERR_NOT_SUPPORTED_STATE_OPERATION",
    );
    assert_eq!(message, "operation type merge not supported");
    let empty = api.post(tx, json!({"operations": []})).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);
    let bad = api.call(Method::PUT, tx, &[], "{\"operations\": 7}").await;
    let message = assert_legacy(&bad, StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST");
    assert!(
        message.starts_with("failed deserializing HTTP body: "),
        "{message}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn query_api() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);
    let people = json!([
        {"key": "p1", "value": {"person": {"org": "Dev", "id": 1}, "state": "CA"}},
        {"key": "p2", "value": {"person": {"org": "Ops", "id": 2}, "state": "WA"}},
        {"key": "p3", "value": {"person": {"org": "Dev", "id": 3}, "state": "WA"}}
    ]);
    api.post("/v1.0/state/statestore", people).await;
    let query = "/v1.0-alpha1/state/statestore/query";
    let first = api
        .post(
            query,
            json!({
                "filter": {"EQ": {"person.org": "Dev"}},
                "sort": [{"key": "person.id", "order": "DESC"}],
                "page": {"limit": 1}
            }),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let body = first.json();
    assert_eq!(body["results"][0]["key"], "p3", "prefix stripped");
    assert_eq!(body["results"][0]["data"]["person"]["id"], 3);
    assert!(body["results"][0]["etag"].is_string());
    assert_eq!(body["token"], "1");
    let next = api
        .post(
            query,
            json!({
                "filter": {"EQ": {"person.org": "Dev"}},
                "sort": [{"key": "person.id", "order": "DESC"}],
                "page": {"limit": 1, "token": "1"}
            }),
        )
        .await;
    assert_eq!(next.json()["results"][0]["key"], "p1");

    let none = api
        .post(query, json!({"filter": {"EQ": {"state": "NY"}}}))
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    let bad = api.post(query, json!({"filter": {"XOR": []}})).await;
    assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = bad.json();
    assert_eq!(body["errorCode"], "ERR_STATE_QUERY");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("state store statestore query failed: failed to parse JSON query body"));
    assert_eq!(body["details"][1]["reason"], "DAPR_STATE_QUERY_FAILED");
    sidecar.stop().await;
}

#[tokio::test]
async fn ttl_is_reported_and_enforced() {
    let mesh = Mesh::new();
    let sidecar = default_sidecar(&mesh, "alpha").await;
    let api = Api::new(&sidecar);
    // URL metadata applies to every item.
    let saved = api
        .post(
            "/v1.0/state/statestore?metadata.ttlInSeconds=1",
            json!([{"key": "short", "value": 1}]),
        )
        .await;
    assert_eq!(saved.status, StatusCode::NO_CONTENT);
    let read = api.get("/v1.0/state/statestore/short").await;
    let expires = read
        .headers
        .get("metadata.ttlExpireTime")
        .expect("ttlExpireTime header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        expires.len() == 20 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "{expires}"
    );
    eventually("the item expires", || async {
        (api.get("/v1.0/state/statestore/short").await.status == StatusCode::NO_CONTENT)
            .then_some(())
    })
    .await;
    let bad = api
        .post(
            "/v1.0/state/statestore",
            json!([{"key": "k", "value": 1, "metadata": {"ttlInSeconds": "soon"}}]),
        )
        .await;
    assert_legacy(&bad, StatusCode::INTERNAL_SERVER_ERROR, "ERR_STATE_SAVE");
    sidecar.stop().await;
}
