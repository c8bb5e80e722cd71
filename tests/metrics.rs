//! The Prometheus endpoint after real traffic: Dapr's metric names and labels.

mod support;

use axum::body::Body;
use http::{Method, StatusCode};
use support::*;

/// The sample value of the first line that starts with `name{` and contains every label pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn dapr_metric_families_with_daprd_labels() {
    let mesh = Mesh::new();
    let alpha_app = TestApp::start().await;
    let beta_app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(alpha_app.port()), &[]).await;
    let beta = mesh.sidecar("beta", Some(beta_app.port()), &[]).await;
    ready(&alpha).await;
    ready(&beta).await;
    for _ in 0..3 {
        let res = send(
            Method::POST,
            &format!("{}/v1.0/invoke/beta/method/orders/7", api(&alpha)),
            &[],
            Body::from("x"),
        )
        .await
        .unwrap();
        assert_eq!(res.status, StatusCode::OK);
    }

    let scrape = |sidecar: &outrigger::sidecar::Sidecar| {
        let url = format!(
            "http://{}/metrics",
            sidecar.metrics_addr.expect("metrics enabled")
        );
        async move {
            let res = send(Method::GET, &url, &[], Body::empty()).await.unwrap();
            assert_eq!(res.status, StatusCode::OK);
            String::from_utf8(res.body.to_vec()).unwrap()
        }
    };
    let alpha_text = scrape(&alpha).await;
    let server = [
        ("app_id", "alpha"),
        ("method", "POST"),
        ("path", "/v1.0/invoke/beta/method/orders"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&alpha_text, "dapr_http_server_request_count", &server),
        Some(3.0),
        "{alpha_text}"
    );
    assert!(
        sample(&alpha_text, "dapr_http_server_latency_count", &server).is_some(),
        "{alpha_text}"
    );
    assert!(!alpha_text.contains("dapr_http_server_request_count_total"));
    assert_eq!(
        sample(
            &alpha_text,
            "dapr_runtime_service_invocation_req_sent_total",
            &[("app_id", "alpha"), ("dst_app_id", "beta")]
        ),
        Some(3.0),
        "{alpha_text}"
    );
    assert_eq!(
        sample(
            &alpha_text,
            "dapr_runtime_service_invocation_res_recv_total",
            &[
                ("app_id", "alpha"),
                ("src_app_id", "beta"),
                ("status", "200")
            ]
        ),
        Some(3.0),
        "{alpha_text}"
    );

    let beta_text = scrape(&beta).await;
    let client = [("app_id", "beta"), ("method", "POST"), ("status", "200")];
    assert_eq!(
        sample(&beta_text, "dapr_http_client_completed_count", &client),
        Some(3.0),
        "{beta_text}"
    );
    assert!(sample(
        &beta_text,
        "dapr_http_client_roundtrip_latency_count",
        &client
    )
    .is_some());
    assert_eq!(
        sample(
            &beta_text,
            "dapr_runtime_service_invocation_req_recv_total",
            &[("app_id", "beta"), ("src_app_id", "alpha")]
        ),
        Some(3.0),
        "{beta_text}"
    );
    alpha.stop().await;
    beta.stop().await;
}
