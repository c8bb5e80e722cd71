//! Access control on the callee sidecar (Configuration `spec.accessControl`), with the caller
//! identified by its certificate.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use http::{Method, StatusCode};
use outrigger::proto::common::http_extension::Verb;
use support::ca::{metric_value, metrics_text, MtlsMesh};
use support::tls_client::call_local;
use support::*;

const ACL: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: alpha
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /read/*
        httpVerb: [GET]
        action: allow
      - name: /open/**
        httpVerb: ["*"]
        action: allow
    - appId: gamma
      defaultAction: allow
      trustDomain: elsewhere
      namespace: default
"#;

fn acl_config(dir: &std::path::Path) -> String {
    write(dir, "acl.yaml", ACL);
    dir.join("acl.yaml").display().to_string()
}

async fn invoke(from: &outrigger::sidecar::Sidecar, verb: Method, path: &str) -> Reply {
    send(
        verb,
        &format!("{}/v1.0/invoke/beta/method/{path}", api(from)),
        &[],
        Body::from("x"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn access_control_allows_and_denies_by_caller_verb_and_path() {
    let m = MtlsMesh::new(Duration::from_secs(3600)).await;
    let acl = acl_config(m.mesh.dir.path());
    let beta_app = TestApp::start().await;
    let beta = m
        .sidecar("beta", Some(beta_app.port()), &["--config", &acl])
        .await;
    let alpha = m.sidecar("alpha", None, &[]).await;
    let gamma = m.sidecar("gamma", None, &[]).await;
    for s in [&alpha, &beta, &gamma] {
        ready(s).await;
    }

    let allowed = [
        (Method::GET, "read/1"),
        (Method::GET, "READ/2"),
        (Method::DELETE, "open/a/b/c"),
        (Method::POST, "open/x"),
    ];
    for (verb, path) in allowed.clone() {
        let res = invoke(&alpha, verb.clone(), path).await;
        assert_eq!(res.status, StatusCode::OK, "{verb} {path}: {:?}", res.body);
    }
    let denied = [
        (Method::POST, "read/1"),
        (Method::GET, "read/1/2"),
        (Method::GET, "other"),
        (Method::GET, "readers"),
    ];
    for (verb, path) in denied {
        let res = invoke(&alpha, verb.clone(), path).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{verb} {path}");
        let body = res.json();
        assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
        let expected = format!(
            "access control policy has denied access to appid: alpha operation: /{path} verb: {verb}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(&expected),
            "{body}"
        );
    }
    // gamma's policy names another trust domain: the global default (deny) applies.
    let res = invoke(&gamma, Method::GET, "read/1").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(beta_app.state.calls.load(Ordering::SeqCst), allowed.len());

    let text = metrics_text(&beta).await;
    let count = |name: &str, app: &str| {
        metric_value(&text, name, &[&format!("app_id=\"{app}\"")]).unwrap_or(0.0)
    };
    assert_eq!(
        count("dapr_runtime_acl_app_policy_action_allowed_total", "alpha"),
        4.0
    );
    assert_eq!(
        count("dapr_runtime_acl_app_policy_action_blocked_total", "alpha"),
        4.0
    );
    assert_eq!(
        count(
            "dapr_runtime_acl_global_policy_action_blocked_total",
            "gamma"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_spoofed_caller_header_does_not_change_the_identity_used_by_access_control() {
    let m = MtlsMesh::new(Duration::from_secs(3600)).await;
    let acl = acl_config(m.mesh.dir.path());
    let beta_app = TestApp::start().await;
    let beta = m
        .sidecar("beta", Some(beta_app.port()), &["--config", &acl])
        .await;
    ready(&beta).await;
    let identity = |app: &str| {
        m.ca.root
            .client_identity(&format!("spiffe://public/ns/default/{app}"))
    };

    // gamma claims to be alpha in the header: refused as gamma.
    let err = call_local(
        beta.internal_addr,
        Some(identity("gamma")),
        "read/1",
        Verb::Get,
        &[("dapr-caller-app-id", "alpha")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("appid: gamma"), "{}", err.message());
    assert_eq!(beta_app.state.calls.load(Ordering::SeqCst), 0);

    // alpha claims to be gamma: allowed as alpha, and the app is told it is alpha.
    let res = call_local(
        beta.internal_addr,
        Some(identity("alpha")),
        "read/1",
        Verb::Get,
        &[
            ("dapr-caller-app-id", "gamma"),
            ("dapr-caller-namespace", "prod"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(res.status.unwrap().code, 200);
    let data = res.message.unwrap().data.unwrap().value;
    let echo: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        echo["headers"]["dapr-caller-app-id"],
        serde_json::json!(["alpha"])
    );
    assert_eq!(
        echo["headers"]["dapr-caller-namespace"],
        serde_json::json!(["default"])
    );
}

#[tokio::test]
async fn without_mtls_there_is_no_verified_caller_and_the_global_default_decides() {
    // As in daprd: the caller header is not an identity, so alpha's allow policy cannot apply.
    let mesh = Mesh::new();
    let acl = acl_config(mesh.dir.path());
    let beta_app = TestApp::start().await;
    let beta = mesh
        .sidecar("beta", Some(beta_app.port()), &["--config", &acl])
        .await;
    let alpha = mesh.sidecar("alpha", None, &[]).await;
    ready(&alpha).await;
    ready(&beta).await;
    let res = invoke(&alpha, Method::GET, "read/1").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.json()["errorCode"], "ERR_DIRECT_INVOKE");
    assert_eq!(beta_app.state.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_invalid_access_control_spec_fails_startup() {
    let mesh = Mesh::new();
    write(
        mesh.dir.path(),
        "bad.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bad\nspec:\n  accessControl:\n    defaultAction: deny\n    policies:\n    - appId: alpha\n      namespace: default\n",
    );
    let bad = mesh.dir.path().join("bad.yaml").display().to_string();
    let err = outrigger::sidecar::Sidecar::start(mesh.options("beta", None, &["--config", &bad]))
        .await
        .err()
        .expect("startup fails");
    assert!(
        format!("{err:#}").contains("policies[0].trustDomain is required"),
        "{err:#}"
    );
}
