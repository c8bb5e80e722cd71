//! Publish and subscribe through a whole sidecar, as an app sees it: the app lists its
//! subscriptions on `GET /dapr/subscribe`, another call publishes over plain HTTP, and the
//! CloudEvent arrives at the app's route.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, Method, StatusCode};
use support::*;
use tokio::sync::mpsc;

type Received = mpsc::UnboundedSender<(HeaderMap, serde_json::Value)>;

/// An app subscribed to `orders` on `pubsub`, delivering what it receives to the test.
async fn subscriber_app() -> (u16, mpsc::UnboundedReceiver<(HeaderMap, serde_json::Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async { Json(serde_json::json!([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}])) }),
        )
        .route(
            "/orders",
            post(|State(tx): State<Arc<Received>>, headers: HeaderMap, Json(event): Json<serde_json::Value>| async move {
                let _ = tx.send((headers, event));
                Json(serde_json::json!({"status": "SUCCESS"}))
            }),
        )
        .with_state(Arc::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (port, rx)
}

#[tokio::test]
async fn published_event_reaches_the_subscribed_route_with_trace_context() {
    let mesh = Mesh::new();
    let (port, mut received) = subscriber_app().await;
    let sidecar = mesh.sidecar("orders-app", Some(port), &[]).await;
    ready(&sidecar).await;
    let url = format!("{}/v1.0/publish/pubsub/orders", api(&sidecar));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // Subscriptions start once the app is reachable: publish until the first delivery arrives.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (headers, event) = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the event never reached the app"
        );
        let res = send(
            Method::POST,
            &url,
            &[
                ("content-type", "application/json"),
                ("traceparent", traceparent),
            ],
            Body::from(r#"{"id":7}"#),
        )
        .await
        .unwrap();
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{:?}", res.body);
        if let Ok(Some(got)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), received.recv()).await
        {
            break got;
        }
    };
    assert_eq!(headers["content-type"], "application/cloudevents+json");
    assert_eq!(event["data"], serde_json::json!({"id": 7}));
    assert_eq!(event["topic"], "orders");
    assert_eq!(event["pubsubname"], "pubsub");
    assert_eq!(event["source"], "orders-app");
    assert_eq!(event["type"], "com.dapr.event.sent");
    let delivered_trace = headers["traceparent"].to_str().unwrap();
    assert!(
        delivered_trace.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{delivered_trace}"
    );

    // The metadata API lists the running subscription as daprd does.
    let res = send(
        Method::GET,
        &format!("{}/v1.0/metadata", api(&sidecar)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(
        metadata["subscriptions"],
        serde_json::json!([{
            "pubsubname": "pubsub",
            "topic": "orders",
            "rules": [{"path": "/orders"}],
            "type": "PROGRAMMATIC"
        }]),
        "{metadata}"
    );
    sidecar.stop().await;
}
