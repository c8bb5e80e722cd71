//! Two sidecars and two apps in one process: service invocation as an app sees it.

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use http::{Method, StatusCode};
use support::*;

struct Pair {
    _mesh: Mesh,
    alpha: outrigger::sidecar::Sidecar,
    beta: outrigger::sidecar::Sidecar,
    _beta_app: TestApp,
}

async fn pair() -> Pair {
    let mesh = Mesh::new();
    let alpha_app = TestApp::start().await;
    let beta_app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(alpha_app.port()), &[]).await;
    let beta = mesh.sidecar("beta", Some(beta_app.port()), &[]).await;
    ready(&alpha).await;
    ready(&beta).await;
    Pair {
        _mesh: mesh,
        alpha,
        beta,
        _beta_app: beta_app,
    }
}

#[tokio::test]
async fn path_form_reaches_the_callee_with_body_query_and_headers() {
    let p = pair().await;
    let url = format!(
        "{}/v1.0/invoke/beta/method/orders/7?x=1&y=two",
        api(&p.alpha)
    );
    let res = send(
        Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("x-custom", "kept"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
        Body::from(r#"{"id":7}"#),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["x-echo"], "1");
    let echo = res.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["body"], r#"{"id":7}"#);
    let h = &echo["headers"];
    assert_eq!(h["content-type"][0], "application/json");
    assert_eq!(h["x-custom"][0], "kept");
    assert_eq!(
        h["traceparent"][0],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(h["dapr-caller-app-id"][0], "alpha");
    assert_eq!(h["dapr-callee-app-id"][0], "beta");
    assert_eq!(h["dapr-caller-namespace"][0], "default");
    assert_eq!(h["x-forwarded-for"][0], "127.0.0.1");
    assert!(h["forwarded"][0]
        .as_str()
        .unwrap()
        .starts_with("for=127.0.0.1;by=127.0.0.1;host="));
    p.alpha.stop().await;
    p.beta.stop().await;
}

#[tokio::test]
async fn header_and_basic_auth_forms() {
    let p = pair().await;
    let res = send(
        Method::PUT,
        &format!("{}/orders/7", api(&p.alpha)),
        &[("dapr-app-id", "beta")],
        Body::from("x"),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["method"], "PUT");
    assert!(
        echo["headers"].get("dapr-app-id").is_none(),
        "routing header must not reach the app"
    );

    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dapr-app-id:beta")
    );
    let res = send(
        Method::GET,
        &format!("{}/orders/8", api(&p.alpha)),
        &[("authorization", &auth)],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    let echo = res.json();
    assert_eq!(echo["path"], "/orders/8");
    assert!(echo["headers"].get("authorization").is_none());

    let res = send(
        Method::GET,
        &format!("{}/v1.0/invoke/beta.default/method/ns", api(&p.alpha)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(res.json()["path"], "/ns");
    p.alpha.stop().await;
    p.beta.stop().await;
}

#[tokio::test]
async fn every_verb_passes_through() {
    let p = pair().await;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ] {
        let url = format!("{}/v1.0/invoke/beta/method/verbs", api(&p.alpha));
        let res = send(method.clone(), &url, &[], Body::from("b"))
            .await
            .unwrap();
        assert_eq!(res.status, StatusCode::OK, "{method}");
        assert_eq!(res.json()["method"], method.as_str());
    }
    p.alpha.stop().await;
    p.beta.stop().await;
}

#[tokio::test]
async fn app_status_headers_and_body_come_back_unchanged() {
    let p = pair().await;
    for code in [201u16, 404, 418, 503] {
        let url = format!("{}/v1.0/invoke/beta/method/status/{code}", api(&p.alpha));
        let res = send(Method::GET, &url, &[], Body::empty()).await.unwrap();
        assert_eq!(res.status.as_u16(), code);
        assert_eq!(res.headers["x-app-header"], "custom");
        assert_eq!(res.headers["content-type"], "text/plain");
        assert_eq!(
            res.body,
            format!("status {}", StatusCode::from_u16(code).unwrap())
        );
    }
    p.alpha.stop().await;
    p.beta.stop().await;
}

#[tokio::test]
async fn large_download_streams_back() {
    let p = pair().await;
    let total = 8 * 1024 * 1024 + 3;
    let url = format!("{}/v1.0/invoke/beta/method/download/{total}", api(&p.alpha));
    let res = send(Method::GET, &url, &[], Body::empty()).await.unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body.len() as u64, total);
    let sum = res
        .body
        .iter()
        .fold(0u64, |acc, b| acc.wrapping_add(u64::from(*b)));
    assert_eq!(sum, pattern_sum(total));
    p.alpha.stop().await;
    p.beta.stop().await;
}

#[tokio::test]
async fn unknown_app_id_fails_fast_with_dapr_error() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(app.port()), &[]).await;
    let started = Instant::now();
    let res = send(
        Method::GET,
        &format!("{}/v1.0/invoke/nobody/method/x", api(&alpha)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.json();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to invoke, id: nobody, err:"),
        "{body}"
    );
    alpha.stop().await;
}

#[tokio::test]
async fn missing_app_id_is_a_404() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(app.port()), &[]).await;
    let res = send(
        Method::GET,
        &format!("{}/no/such/route", api(&alpha)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.json(),
        serde_json::json!({"errorCode": "ERR_DIRECT_INVOKE", "message": "failed getting app id either from the URL path or the header dapr-app-id"})
    );
    alpha.stop().await;
}

#[tokio::test]
async fn callee_app_down_is_a_clear_error() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let dead_port = unused_port().await;
    let alpha = mesh.sidecar("alpha", Some(app.port()), &[]).await;
    let beta = mesh.sidecar("beta", Some(dead_port), &[]).await;
    let res = send(
        Method::GET,
        &format!("{}/v1.0/invoke/beta/method/x", api(&alpha)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.json();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("error invoking app channel"), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test]
async fn declared_body_over_the_limit_is_413() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let beta_app = TestApp::start().await;
    let alpha = mesh
        .sidecar("alpha", Some(app.port()), &["--max-body-size", "1Ki"])
        .await;
    let beta = mesh.sidecar("beta", Some(beta_app.port()), &[]).await;
    for target in ["alpha", "beta"] {
        let url = format!("{}/v1.0/invoke/{target}/method/x", api(&alpha));
        let res = send(Method::POST, &url, &[], Body::from(vec![b'a'; 2048]))
            .await
            .unwrap();
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{target}");
        assert_eq!(res.json()["errorCode"], "ERR_BODY_READ");
        // A chunked body declares no length: the limit is enforced while it streams.
        let res = send(
            Method::POST,
            &url,
            &[],
            Body::from_stream(pattern_stream(64 * 1024)),
        )
        .await
        .unwrap();
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{target}");
    }
    assert_eq!(
        app.state.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused body never reaches an app handler"
    );
    assert_eq!(
        beta_app
            .state
            .calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test]
async fn cors_when_origins_are_allowed() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let alpha = mesh
        .sidecar(
            "alpha",
            Some(app.port()),
            &["--allowed-origins", "http://ui.example"],
        )
        .await;
    let res = send(
        Method::GET,
        &format!("{}/v1.0/metadata", api(&alpha)),
        &[("origin", "http://ui.example")],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "http://ui.example"
    );
    alpha.stop().await;
}
