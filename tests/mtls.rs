//! mTLS between sidecars with a real (test) CA: invocation, refused handshakes, rotation under
//! load, the CA going away and coming back, and a root rotation through the anchors file.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, StatusCode};
use outrigger::proto::common::http_extension::Verb;
use outrigger::sidecar::Sidecar;
use support::ca::{metric_value, metrics_text, MtlsMesh, Root};
use support::tls_client::{call_local, issuer, serial, served_certificate};
use support::*;

const ALPHA: &str = "spiffe://public/ns/default/alpha";

/// `app_id`'s sidecar in front of its own test app, ready.
async fn sidecar_with_app(m: &MtlsMesh, app_id: &str) -> (Sidecar, TestApp) {
    let app = TestApp::start().await;
    let sidecar = m.sidecar(app_id, Some(app.port()), &[]).await;
    ready(&sidecar).await;
    (sidecar, app)
}

/// The caller and callee of most tests: alpha without an app, beta with one, both ready.
async fn alpha_and_beta(m: &MtlsMesh) -> (Sidecar, Sidecar, TestApp) {
    let alpha = m.sidecar("alpha", None, &[]).await;
    let (beta, beta_app) = sidecar_with_app(m, "beta").await;
    ready(&alpha).await;
    (alpha, beta, beta_app)
}

/// Invokes `target`'s method `x` through `from`.
async fn invoke_x(from: &Sidecar, target: &str) -> StatusCode {
    let url = format!("{}/v1.0/invoke/{target}/method/x", api(from));
    send(Method::GET, &url, &[], Body::empty())
        .await
        .unwrap()
        .status
}

/// A sidecar started now is reached from `from` over a fresh handshake, with the
/// certificates both sides hold at this point.
async fn assert_new_sidecar_is_reachable(m: &MtlsMesh, from: &Sidecar) {
    let (_gamma, _gamma_app) = sidecar_with_app(m, "gamma").await;
    assert_eq!(invoke_x(from, "gamma").await, StatusCode::OK);
}

fn rotations(metrics: &str) -> Option<f64> {
    metric_value(
        metrics,
        "dapr_runtime_mtls_workload_cert_rotated_total",
        &[],
    )
}

/// Invokes `target` through `from` until `stop`, counting successes and failures.
fn load(
    from: &Sidecar,
    target: &'static str,
    stop: Arc<AtomicBool>,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1.0/invoke/{target}/method/load", api(from));
    let task = {
        let (ok, failed) = (ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match send(Method::POST, &url, &[], Body::from("ping")).await {
                    Ok(res) if res.status == StatusCode::OK => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("failed invocation: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    (task, ok, failed)
}

#[tokio::test]
async fn invocation_works_over_mtls_and_the_callee_sees_the_certificate_identity() {
    let m = MtlsMesh::new(Duration::from_secs(3600)).await;
    let (alpha, beta, _beta_app) = alpha_and_beta(&m).await;

    let url = format!("{}/v1.0/invoke/beta/method/hello", api(&alpha));
    let res = send(Method::POST, &url, &[], Body::from("hi"))
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let echo = res.json();
    assert_eq!(echo["body"], "hi");
    assert_eq!(echo["headers"]["dapr-caller-app-id"][0], "alpha");
    assert_eq!(echo["headers"]["dapr-caller-namespace"][0], "default");

    // The callee's internal port presents beta's SPIFFE ID, issued by the CA.
    let cert = served_certificate(beta.internal_addr, m.ca.root.client_identity(ALPHA))
        .await
        .unwrap();
    assert_eq!(
        outrigger::identity::spiffe::uri_of(&cert).as_deref(),
        Some("spiffe://public/ns/default/beta")
    );
    let text = metrics_text(&beta).await;
    assert_eq!(
        metric_value(&text, "dapr_runtime_mtls_init_total", &[]),
        Some(1.0)
    );
    let expiry = metric_value(
        &text,
        "outrigger_mtls_workload_cert_expiry_timestamp_seconds",
        &[],
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 3000.0 && expiry < now + 3700.0, "{expiry}");
}

#[tokio::test]
async fn clients_without_a_valid_certificate_cannot_reach_the_internal_port() {
    let m = MtlsMesh::new(Duration::from_secs(3600)).await;
    let (beta, beta_app) = sidecar_with_app(&m, "beta").await;
    let addr = beta.internal_addr;

    let no_cert = call_local(addr, None, "hello", Verb::Post, &[]).await;
    assert!(no_cert.is_err(), "{no_cert:?}");
    let stranger = Root::new("stranger").client_identity(ALPHA);
    let other_bundle = call_local(addr, Some(stranger), "hello", Verb::Post, &[]).await;
    assert!(other_bundle.is_err(), "{other_bundle:?}");
    let plaintext = {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        outrigger::proto::internals::service_invocation_client::ServiceInvocationClient::new(
            channel,
        )
        .call_local(outrigger::proto::internals::InternalInvokeRequest::default())
        .await
    };
    assert!(plaintext.is_err(), "{plaintext:?}");
    assert_eq!(beta_app.state.calls.load(Ordering::SeqCst), 0);

    let text = eventually("handshake failures to be counted", || async {
        let text = metrics_text(&beta).await;
        (metric_value(
            &text,
            "outrigger_mtls_handshake_fail_total",
            &["reason=\"no_client_cert\""],
        )
        .is_some()
            && metric_value(
                &text,
                "outrigger_mtls_handshake_fail_total",
                &["reason=\"unknown_issuer\""],
            )
            .is_some())
        .then_some(text)
    })
    .await;
    assert!(text.contains("side=\"server\""));

    // The same call with a certificate from the mesh's CA reaches the app.
    let ok = call_local(
        addr,
        Some(m.ca.root.client_identity(ALPHA)),
        "hello",
        Verb::Post,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(ok.status.unwrap().code, 200);
    assert_eq!(beta_app.state.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_request() {
    // A 3 s certificate renews about every 1.5 s.
    let m = MtlsMesh::new(Duration::from_secs(3)).await;
    let (alpha, beta, _beta_app) = alpha_and_beta(&m).await;
    let client = || m.ca.root.client_identity(ALPHA);
    let first = serial(
        &served_certificate(beta.internal_addr, client())
            .await
            .unwrap(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, failed) = load(&alpha, "beta", stop.clone());
    // Several rotation periods of both sidecars.
    eventually("four rotations of each sidecar", || async {
        let a = metrics_text(&alpha).await;
        let b = metrics_text(&beta).await;
        let rotated = |t: &str| rotations(t).unwrap_or(0.0);
        // Traffic must have flowed across the rotations, however fast this machine is.
        (rotated(&a) >= 4.0 && rotated(&b) >= 4.0 && ok.load(Ordering::SeqCst) > 20).then_some(())
    })
    .await;
    let now = serial(
        &served_certificate(beta.internal_addr, client())
            .await
            .unwrap(),
    );
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();

    assert_ne!(first, now, "the served certificate did not change");
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) > 20, "{ok:?}");
    // A connection made now (new handshake, new certificates on both sides) works too.
    assert_new_sidecar_is_reachable(&m, &beta).await;
}

#[tokio::test]
async fn sidecars_keep_serving_while_the_ca_is_down_and_renew_when_it_returns() {
    let mut m = MtlsMesh::new(Duration::from_secs(4)).await;
    let (alpha, beta, _beta_app) = alpha_and_beta(&m).await;
    assert_eq!(invoke_x(&alpha, "beta").await, StatusCode::OK);

    m.ca.stop().await;
    eventually("a failed renewal while the CA is down", || async {
        let text = metrics_text(&beta).await;
        metric_value(
            &text,
            "dapr_runtime_mtls_workload_cert_rotated_fail_total",
            &["reason=\"sentry_conn\""],
        )
        .filter(|v| *v >= 1.0)
    })
    .await;
    // Still serving with the certificate it has.
    assert_eq!(invoke_x(&alpha, "beta").await, StatusCode::OK);
    let before = rotations(&metrics_text(&beta).await).unwrap_or(0.0);

    m.ca.restart().await;
    eventually("a renewal once the CA is back", || async {
        let text = metrics_text(&beta).await;
        rotations(&text).filter(|v| *v > before)
    })
    .await;
    assert_eq!(invoke_x(&alpha, "beta").await, StatusCode::OK);
    // New handshakes get a valid certificate again.
    let cert = served_certificate(beta.internal_addr, m.ca.root.client_identity(ALPHA)).await;
    assert!(cert.is_ok(), "{cert:?}");
}

#[tokio::test]
async fn a_new_root_in_the_anchors_file_takes_over_without_a_restart() {
    let mut m = MtlsMesh::new(Duration::from_secs(4)).await;
    let (alpha, _alpha_app) = sidecar_with_app(&m, "alpha").await;
    let (beta, _beta_app) = sidecar_with_app(&m, "beta").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (task, ok, failed) = load(&alpha, "beta", stop.clone());

    let old = m.ca.root.clone();
    let new = Arc::new(Root::new("b"));
    m.set_anchors(&format!("{}{}", old.pem, new.pem));
    let sidecars = [&alpha, &beta];
    eventually("both sidecars to trust the new root", || async {
        for s in sidecars {
            let id = new.client_identity(ALPHA);
            call_local(s.internal_addr, Some(id), "x", Verb::Get, &[])
                .await
                .ok()?;
        }
        Some(())
    })
    .await;

    m.ca.move_to(new.clone()).await;
    eventually(
        "both sidecars to present certificates from the new root",
        || async {
            for s in sidecars {
                let cert = served_certificate(s.internal_addr, old.client_identity(ALPHA))
                    .await
                    .ok()?;
                if !issuer(&cert).contains("test root b") {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    m.set_anchors(&new.pem);
    eventually("the old root to be dropped", || async {
        for s in sidecars {
            let id = old.client_identity(ALPHA);
            if call_local(s.internal_addr, Some(id), "x", Verb::Get, &[])
                .await
                .is_ok()
            {
                return None;
            }
        }
        Some(())
    })
    .await;

    // A sidecar started now knows only the new root, and is reached over a fresh handshake.
    assert_new_sidecar_is_reachable(&m, &beta).await;

    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) > 10, "{ok:?}");
}

#[tokio::test]
async fn readiness_waits_for_the_first_certificate() {
    let mut m = MtlsMesh::new(Duration::from_secs(3600)).await;
    m.ca.stop().await;
    let beta = m.sidecar("beta", None, &[]).await;
    let health = format!("{}/v1.0/healthz", api(&beta));
    let outbound = format!("{}/v1.0/healthz/outbound", api(&beta));
    // The CA is down: the sidecar keeps asking and stays not ready.
    eventually("a failed first request", || async {
        let text = metrics_text(&beta).await;
        metric_value(
            &text,
            "dapr_runtime_mtls_init_fail_total",
            &["reason=\"sentry_conn\""],
        )
        .filter(|v| *v >= 2.0)
    })
    .await;
    for url in [&health, &outbound] {
        let res = send(Method::GET, url, &[], Body::empty()).await.unwrap();
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{url}");
    }
    m.ca.restart().await;
    ready(&beta).await;
    let res = send(Method::GET, &outbound, &[], Body::empty())
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn mtls_without_trust_anchors_fails_startup() {
    let m = MtlsMesh::new(Duration::from_secs(3600)).await;
    let mut options = m.options("beta", None, &[]);
    options.trust_anchors_file = String::new();
    let err = Sidecar::start(options).await.err().expect("startup fails");
    assert!(
        format!("{err:#}").contains("trust anchors are required"),
        "{err:#}"
    );
}
