//! The mesh with our own control plane: `outrigger-control` signs the sidecars' workload
//! certificates (the sidecars speak Sentry's API to it, as daprd would), and invocation between
//! two sidecars runs over mTLS with those certificates.

mod support;

use axum::body::Body;
use http::{Method, StatusCode};
use outrigger::control::options::Cli;
use outrigger::control::ControlPlane;
use support::ca::{metric_value, metrics_text};
use support::*;

#[tokio::test]
async fn sidecars_get_certificates_from_outrigger_control_and_invoke_over_mtls() {
    let ca_dir = tempfile::tempdir().unwrap();
    let dir = ca_dir.path().display().to_string();
    let control_args = vec![
        "outrigger-control",
        "--port",
        "0",
        "--healthz-port",
        "0",
        "--metrics-port",
        "0",
        "--ca-dir",
        &dir,
    ];
    let control = ControlPlane::start(Cli::parse_args(control_args).expect("flags").run)
        .await
        .expect("control plane starts");

    let mesh = Mesh::new();
    let sentry = control.grpc_addr().to_string();
    // The CA writes its trust bundle where Dapr keeps it; the sidecars read it from there.
    let anchors = ca_dir.path().join("ca.crt").display().to_string();
    let args = [
        "--enable-mtls",
        "--sentry-address",
        &sentry,
        "--trust-anchors-file",
        &anchors,
        "--dapr-internal-grpc-listen-address",
        "127.0.0.1",
    ];
    let options = |app_id: &str, app_port: Option<u16>| {
        let mut o = mesh.options(app_id, app_port, &args);
        o.trust_anchors = None;
        o.sentry_token_file = None;
        o.sentry_local_identity = None;
        o
    };
    let beta_app = TestApp::start().await;
    let alpha = outrigger::sidecar::Sidecar::start(options("alpha", None))
        .await
        .expect("alpha starts");
    let beta = outrigger::sidecar::Sidecar::start(options("beta", Some(beta_app.port())))
        .await
        .expect("beta starts");
    ready(&alpha).await;
    ready(&beta).await;

    let url = format!("{}/v1.0/invoke/beta/method/hello", api(&alpha));
    let res = send(Method::POST, &url, &[], Body::from("hi"))
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let echo = res.json();
    assert_eq!(echo["body"], "hi");
    // Taken from alpha's certificate by beta, not from a header.
    assert_eq!(echo["headers"]["dapr-caller-app-id"][0], "alpha");

    for sidecar in [&alpha, &beta] {
        let text = metrics_text(sidecar).await;
        assert_eq!(
            metric_value(&text, "dapr_runtime_mtls_init_total", &[]),
            Some(1.0),
            "{text}"
        );
    }
    alpha.stop().await;
    beta.stop().await;
    control.shutdown().await;
}
