//! Publishing through a whole sidecar over plain HTTP, observed by subscribing directly on the
//! sidecar's brokers: the in-memory broker, and Redis on the machine (127.0.0.1:6379, random
//! topic names, streams deleted afterwards).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use outrigger::pubsub::{Handler, Message, SubscribeRequest, Subscription};
use outrigger::sidecar::Sidecar;
use serde_json::Value;
use support::{api, send, write, Mesh, Reply};
use tokio::sync::mpsc;

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn resources(redis_prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let component = |name: &str, ty: &str, meta: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:{meta}\n"
        )
    };
    write(
        dir.path(),
        "memory.yaml",
        &component("pubsub", "pubsub.in-memory", " []"),
    );
    write(
        dir.path(),
        "closed.yaml",
        &component("closed", "pubsub.in-memory", " []"),
    );
    write(
        dir.path(),
        "scoped.yaml",
        &component(
            "scoped",
            "pubsub.in-memory",
            "\n  - name: publishingScopes\n    value: \"pub=ok\"",
        ),
    );
    write(
        dir.path(),
        "redis.yaml",
        &component(
            "redispubsub",
            "pubsub.redis",
            &format!("\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: consumerID\n    value: {redis_prefix}"),
        ),
    );
    dir
}

async fn start(mesh: &Mesh, dir: &tempfile::TempDir) -> Sidecar {
    let path = dir.path().display().to_string();
    mesh.sidecar("pub", None, &["--resources-path", &path])
        .await
}

async fn subscribe(
    sidecar: &Sidecar,
    pubsub: &str,
    topic: &str,
) -> (Subscription, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(msg);
            Ok(())
        })
    });
    let broker = &sidecar.pubsubs.get(pubsub).expect("component").broker;
    let sub = broker
        .subscribe(
            SubscribeRequest {
                topic: topic.to_owned(),
                metadata: HashMap::new(),
                max_concurrency: 4,
            },
            handler,
        )
        .await
        .expect("subscribe");
    (sub, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a message in time")
        .expect("channel open")
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Message>) -> Value {
    serde_json::from_slice(&next(rx).await.data).expect("CloudEvent JSON")
}

async fn post(
    sidecar: &Sidecar,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Reply {
    let url = format!("{}{path}", api(sidecar));
    send(
        Method::POST,
        &url,
        headers,
        axum::body::Body::from(bytes::Bytes::from_static(body)),
    )
    .await
    .expect("request")
}

fn assert_error(reply: &Reply, status: StatusCode, code: &str, message: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["errorCode"], code, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test]
async fn publish_to_memory_broker_builds_daprd_envelopes() {
    let mesh = Mesh::new();
    let dir = resources(&format!("c{}", uuid::Uuid::new_v4().simple()));
    let sidecar = start(&mesh, &dir).await;
    let (sub, mut rx) = subscribe(&sidecar, "pubsub", "orders/eu").await;

    // A JSON body becomes `data`; the request's trace id is carried with a new span.
    let reply = post(
        &sidecar,
        "/v1.0/publish/pubsub/orders/eu",
        &[
            ("content-type", "application/json"),
            ("traceparent", PARENT),
            ("tracestate", "k=v"),
        ],
        br#"{"n":1}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let e = next_event(&mut rx).await;
    assert_eq!(e["data"]["n"], 1);
    assert_eq!(e["source"], "pub");
    assert_eq!(e["type"], "com.dapr.event.sent");
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["topic"], "orders/eu");
    assert_eq!(e["pubsubname"], "pubsub");
    assert_eq!(e["id"].as_str().unwrap().len(), 36);
    assert_eq!(e["traceid"], e["traceparent"]);
    assert!(e["traceparent"]
        .as_str()
        .unwrap()
        .starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert_eq!(e["tracestate"], "k=v");
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    assert!(e.get("expiration").is_none());

    // Overrides, matched case-insensitively; traceparent wins over traceid.
    let path = "/v1.0/publish/pubsub/orders/eu?metadata.cloudevent.ID=my-id&metadata.cloudevent.source=src&metadata.CloudEvent.type=ty&metadata.cloudevent.subject=sub&metadata.cloudevent.traceid=tid&metadata.cloudevent.tracestate=ts";
    assert_eq!(
        post(&sidecar, path, &[], b"plain").await.status,
        StatusCode::NO_CONTENT
    );
    let e = next_event(&mut rx).await;
    assert_eq!(
        (e["id"].as_str(), e["source"].as_str(), e["type"].as_str()),
        (Some("my-id"), Some("src"), Some("ty"))
    );
    assert_eq!(
        (
            e["subject"].as_str(),
            e["traceid"].as_str(),
            e["tracestate"].as_str()
        ),
        (Some("sub"), Some("tid"), Some("ts"))
    );
    assert_eq!(e["datacontenttype"], "text/plain");
    assert_eq!(e["data"], "plain");
    let path = "/v1.0/publish/pubsub/orders/eu?metadata.cloudevent.traceid=tid&metadata.cloudevent.traceparent=tp";
    post(&sidecar, path, &[], b"x").await;
    let e = next_event(&mut rx).await;
    assert_eq!(
        (e["traceid"].as_str(), e["traceparent"].as_str()),
        (Some("tp"), Some("tp"))
    );

    // Raw payload: the body as is.
    let path = "/v1.0/publish/pubsub/orders/eu?metadata.rawPayload=true";
    post(
        &sidecar,
        path,
        &[("content-type", "application/json")],
        b"{not json",
    )
    .await;
    assert_eq!(next(&mut rx).await.data, "{not json");

    // A CloudEvent body is kept, with daprd's defaults and overwrites.
    post(
        &sidecar,
        "/v1.0/publish/pubsub/orders/eu",
        &[("content-type", "application/cloudevents+json")],
        br#"{"id":"mine","topic":"wrong","data":1}"#,
    )
    .await;
    let e = next_event(&mut rx).await;
    assert_eq!(
        (e["id"].as_str(), e["topic"].as_str(), e["source"].as_str()),
        (Some("mine"), Some("orders/eu"), Some("Dapr"))
    );
    assert_eq!(e["pubsubname"], "pubsub");
    assert!(e["traceparent"].as_str().unwrap().starts_with("00-"));

    // Binary data and TTL (the in-memory broker has no native TTL).
    let path = "/v1.0/publish/pubsub/orders/eu?metadata.ttlInSeconds=60";
    post(
        &sidecar,
        path,
        &[("content-type", "application/octet-stream")],
        &[0, 255],
    )
    .await;
    let e = next_event(&mut rx).await;
    assert_eq!(e["data_base64"], "AP8=");
    assert!(e.get("data").is_none());
    assert!(e["expiration"].as_str().unwrap().ends_with('Z'));

    // Bulk publish: each entry its own event.
    let body = br#"[{"entryId":"1","event":{"a":1},"contentType":"application/json"},{"entryId":"2","event":"hi","contentType":"text/plain"}]"#;
    for prefix in ["/v1.0-alpha1", "/v1.0"] {
        let reply = post(
            &sidecar,
            &format!("{prefix}/publish/bulk/pubsub/orders/eu"),
            &[],
            body,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
        let (a, b) = (next_event(&mut rx).await, next_event(&mut rx).await);
        let mut data = vec![a["data"].to_string(), b["data"].to_string()];
        data.sort();
        assert_eq!(data, [r#""hi""#, r#"{"a":1}"#]);
        assert_ne!(a["id"], b["id"]);
    }
    sub.stop().await;
    sidecar.stop().await;
}

#[tokio::test]
async fn publish_errors_are_daprd_errors() {
    let mesh = Mesh::new();
    let dir = resources(&format!("c{}", uuid::Uuid::new_v4().simple()));
    let sidecar = start(&mesh, &dir).await;

    let reply = post(&sidecar, "/v1.0/publish/nope/t", &[], b"x").await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "ERR_PUBSUB_NOT_FOUND",
        "pubsub nope is not found",
    );
    assert_eq!(
        reply.json()["details"][0]["reason"],
        "DAPR_PUBSUB_NOT_FOUND"
    );
    let reply = post(&sidecar, "/v1.0/publish/pubsub/", &[], b"x").await;
    assert_error(
        &reply,
        StatusCode::NOT_FOUND,
        "ERR_TOPIC_NAME_EMPTY",
        "topic is empty in pubsub pubsub",
    );
    let reply = post(&sidecar, "/v1.0/publish/scoped/secret", &[], b"x").await;
    assert_error(
        &reply,
        StatusCode::FORBIDDEN,
        "ERR_PUBSUB_FORBIDDEN",
        "topic secret is not allowed for app id pub",
    );
    let details = &reply.json()["details"];
    assert_eq!(details[0]["reason"], "DAPR_PUBSUB_FORBIDDEN");
    assert_eq!(details[1]["resource_type"], "pubsub");
    assert_eq!(details[1]["resource_name"], "scoped");
    assert_eq!(
        post(&sidecar, "/v1.0/publish/scoped/ok", &[], b"x")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let reply = post(
        &sidecar,
        "/v1.0/publish/pubsub/t?metadata.rawPayload=maybe",
        &[],
        b"x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorCode"], "ERR_PUBSUB_REQUEST_METADATA");
    let reply = post(
        &sidecar,
        "/v1.0/publish/pubsub/t",
        &[("content-type", "application/cloudevents+json")],
        b"[1]",
    )
    .await;
    assert_error(
        &reply,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_CLOUD_EVENTS_SER",
        "cannot create cloudevent",
    );
    let reply = post(&sidecar, "/v1.0/publish/bulk/pubsub/t", &[], b"{}").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorCode"], "ERR_PUBSUB_EVENTS_SER");
    let dup = br#"[{"entryId":"1","event":"a","contentType":"text/plain"},{"entryId":"1","event":"b","contentType":"text/plain"}]"#;
    let reply = post(&sidecar, "/v1.0/publish/bulk/pubsub/t", &[], dup).await;
    assert_eq!(reply.json()["errorCode"], "ERR_PUBSUB_EVENTS_SER");

    // A broker that is gone: publish fails, bulk answers daprd's failed-entries body.
    sidecar.pubsubs.get("closed").unwrap().broker.close().await;
    let reply = post(&sidecar, "/v1.0/publish/closed/t", &[], b"x").await;
    assert_error(
        &reply,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        "error when publishing to topic t in pubsub closed: in-memory pubsub is closed",
    );
    let body = br#"[{"entryId":"a","event":"x","contentType":"text/plain"}]"#;
    let reply = post(&sidecar, "/v1.0-alpha1/publish/bulk/closed/t", &[], body).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.json(),
        serde_json::json!({"failedEntries": [{"entryId": "a", "error": "in-memory pubsub is closed"}], "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"})
    );

    // Metadata reports broker capabilities; metrics count egress.
    let meta = send(
        Method::GET,
        &format!("{}/v1.0/metadata", api(&sidecar)),
        &[],
        Default::default(),
    )
    .await
    .unwrap()
    .json();
    let memory = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pubsub")
        .unwrap()
        .clone();
    assert_eq!(
        memory["capabilities"],
        serde_json::json!(["SUBSCRIBE_WILDCARDS"])
    );
    let metrics_url = format!("http://{}/metrics", sidecar.metrics_addr.unwrap());
    let text = send(Method::GET, &metrics_url, &[], Default::default())
        .await
        .unwrap()
        .body;
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("dapr_component_pubsub_egress_count_total{app_id=\"pub\",component=\"scoped\",namespace=\"default\",success=\"true\",topic=\"ok\"} 1")
        || text.contains("dapr_component_pubsub_egress_count{app_id=\"pub\",component=\"scoped\",namespace=\"default\",success=\"true\",topic=\"ok\"} 1"), "{text}");
    sidecar.stop().await;

    // No pub/sub component at all.
    let empty = tempfile::tempdir().unwrap();
    let sidecar = start(&mesh, &empty).await;
    let reply = post(&sidecar, "/v1.0/publish/pubsub/t", &[], b"x").await;
    assert_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "ERR_PUBSUB_NOT_CONFIGURED",
        "pubsub pubsub is not configured",
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn publish_to_redis_reaches_the_stream() {
    let mesh = Mesh::new();
    let group = format!("c{}", uuid::Uuid::new_v4().simple());
    let dir = resources(&group);
    let sidecar = start(&mesh, &dir).await;
    let topic = format!("publish-{}", uuid::Uuid::new_v4().simple());
    let (sub, mut rx) = subscribe(&sidecar, "redispubsub", &topic).await;
    let path = format!("/v1.0/publish/redispubsub/{topic}?metadata.ttlInSeconds=30");
    let url = format!("{}{path}", api(&sidecar));
    let reply = send(
        Method::PUT,
        &url,
        &[
            ("content-type", "application/json"),
            ("traceparent", PARENT),
        ],
        axum::body::Body::from(bytes::Bytes::from_static(b"[1,2]")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let e = next_event(&mut rx).await;
    assert_eq!(e["data"], serde_json::json!([1, 2]));
    assert_eq!(e["pubsubname"], "redispubsub");
    assert!(e["traceparent"]
        .as_str()
        .unwrap()
        .contains("0af7651916cd43dd8448eb211c80319c"));
    // pubsub.redis has no native message TTL, so the envelope carries the expiration.
    assert!(e["expiration"].is_string());
    sub.stop().await;
    sidecar.stop().await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&topic)
        .query_async(&mut conn)
        .await
        .unwrap();
}
