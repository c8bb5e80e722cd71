//! Large bodies stream through two sidecars with bounded memory. This is its own test binary so
//! the process's peak RSS belongs to this test alone.

mod support;

use axum::body::Body;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::*;

const TOTAL: u64 = 256 * 1024 * 1024;
/// Peak growth allowed while 256 MiB pass each way: a fraction of one body.
const MAX_GROWTH_KIB: u64 = 96 * 1024;

fn proc_status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_gib_streams_both_ways_with_flat_memory() {
    let mesh = Mesh::new();
    let alpha_app = TestApp::start().await;
    let beta_app = TestApp::start().await;
    let alpha = mesh
        .sidecar("alpha", Some(alpha_app.port()), &["--max-body-size", "1Gi"])
        .await;
    let beta = mesh
        .sidecar("beta", Some(beta_app.port()), &["--max-body-size", "1Gi"])
        .await;
    ready(&alpha).await;
    ready(&beta).await;
    let before = proc_status_kib("VmRSS:");

    // Upload: the app counts bytes as they arrive and checks their sum.
    let url = format!("{}/v1.0/invoke/beta/method/count", api(&alpha));
    let res = send(
        Method::POST,
        &url,
        &[("content-type", "application/octet-stream")],
        Body::from_stream(pattern_stream(TOTAL)),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    let counted = res.json();
    assert_eq!(counted["bytes"], TOTAL);
    assert_eq!(counted["sum"], pattern_sum(TOTAL));

    // Download: consumed frame by frame, never collected.
    let url = format!("{}/v1.0/invoke/beta/method/download/{TOTAL}", api(&alpha));
    let req = http::Request::get(url).body(Body::empty()).unwrap();
    let res = client().request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let (mut bytes, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len() as u64;
            sum = data
                .iter()
                .fold(sum, |acc, b| acc.wrapping_add(u64::from(*b)));
        }
    }
    assert_eq!(bytes, TOTAL);
    assert_eq!(sum, pattern_sum(TOTAL));

    let peak = proc_status_kib("VmHWM:");
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KIB,
        "peak RSS grew by {} KiB while streaming (before {before} KiB, peak {peak} KiB)",
        peak.saturating_sub(before)
    );
    alpha.stop().await;
    beta.stop().await;
}
