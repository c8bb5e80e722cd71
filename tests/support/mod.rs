//! Shared harness for whole-sidecar tests: sidecars, a test app and an HTTP client, all on
//! loopback port 0. Nothing here sleeps to wait: every wait polls a condition with a deadline.

#![allow(dead_code)]

pub mod ca;
pub mod grpc;
pub mod pubsub_conformance;
pub mod state_conformance;
pub mod state_http;
pub mod tls_client;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outrigger::sidecar::{Options, Sidecar};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it returns `Some`, or panics after `DEADLINE` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scratch directory with a Configuration that points name resolution at its own SQLite file,
/// so tests never share registrations.
pub struct Mesh {
    pub dir: tempfile::TempDir,
}

impl Mesh {
    pub fn new() -> Self {
        Self::with_update_interval("5s")
    }

    /// `interval` is the SQLite resolver's `updateInterval` (its liveness TTL).
    pub fn with_update_interval(interval: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: test\nspec:\n  nameResolution:\n    component: sqlite\n    version: v1\n    configuration:\n      connectionString: {}\n      updateInterval: {interval}\n      timeout: 1s\n",
            dir.path().join("nr.db").display()
        );
        std::fs::write(dir.path().join("config.yaml"), config).expect("write config");
        Self { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("nr.db")
    }

    /// daprd-style flags for a sidecar of this mesh: every port chosen by the OS.
    pub fn args(&self, app_id: &str, app_port: Option<u16>) -> Vec<String> {
        let mut args = vec![
            "outrigger".to_owned(),
            "--app-id".into(),
            app_id.into(),
            "--dapr-http-port".into(),
            "0".into(),
            "--dapr-grpc-port".into(),
            "0".into(),
            "--metrics-port".into(),
            "0".into(),
            "--config".into(),
            self.config_path().display().to_string(),
        ];
        if let Some(port) = app_port {
            args.push("--app-port".into());
            args.push(port.to_string());
        }
        args
    }

    pub fn options(&self, app_id: &str, app_port: Option<u16>, extra: &[&str]) -> Options {
        let mut args = self.args(app_id, app_port);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut options = Options::parse_daprd(args).expect("valid flags");
        // Tests must not depend on the environment they run in.
        options.api_token = None;
        options.app_api_token = None;
        options.host_ip = None;
        options.namespace = "default".to_owned();
        options
    }

    pub async fn sidecar(&self, app_id: &str, app_port: Option<u16>, extra: &[&str]) -> Sidecar {
        Sidecar::start(self.options(app_id, app_port, extra))
            .await
            .expect("sidecar starts")
    }
}

/// Base URL of a sidecar's HTTP API.
pub fn api(sidecar: &Sidecar) -> String {
    format!("http://{}", sidecar.http_addrs[0])
}

/// Waits until `/v1.0/healthz` answers 204.
pub async fn ready(sidecar: &Sidecar) {
    let url = format!("{}/v1.0/healthz", api(sidecar));
    eventually("sidecar readiness", || async {
        let res = send(Method::GET, &url, &[], Body::empty()).await.ok()?;
        (res.status == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
}

/// A sidecar's HTTP API, for tests where a failed request is itself a test failure.
pub struct Api {
    base: String,
}

impl Api {
    pub fn new(sidecar: &Sidecar) -> Self {
        Self { base: api(sidecar) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        send(
            method,
            &self.url(path),
            headers,
            Body::from(body.to_owned()),
        )
        .await
        .expect("request")
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Reply {
        self.call(Method::POST, path, &[], &body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], "").await
    }
}

/// A collected HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request and collects the whole response.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> anyhow::Result<Reply> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client().request(req.body(body)?).await?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The test app: echoes what it received, answers chosen statuses, counts streamed bytes, and
/// holds `/slow` requests until the test releases them.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
}

#[derive(Default)]
pub struct AppState {
    pub slow_started: Notify,
    pub slow_release: Notify,
    pub calls: AtomicUsize,
}

impl TestApp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        Self::serve(listener).await
    }

    /// Serves on an already bound listener (tests that need the port before the app runs).
    pub async fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(AppState::default());
        let router = Router::new()
            .route("/status/{code}", any(status))
            .route("/count", any(count))
            .route("/download/{bytes}", get(download))
            .route("/slow", any(slow))
            // Like an app without pub/sub: the sidecar's discovery call finds no subscriptions.
            .route("/dapr/subscribe", get(|| async { StatusCode::NOT_FOUND }))
            .fallback(echo)
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("app serves");
        });
        Self { addr, state }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn echo(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let headers: BTreeMap<String, Vec<String>> = parts
        .headers
        .keys()
        .map(|k| {
            let values = parts
                .headers
                .get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .collect();
            (k.as_str().to_owned(), values)
        })
        .collect();
    let out = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    ([("x-echo", "1")], axum::Json(out)).into_response()
}

async fn status(UrlPath(code): UrlPath<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [("x-app-header", "custom"), ("content-type", "text/plain")],
        format!("status {code}"),
    )
        .into_response()
}

/// Consumes the body as it streams and answers how many bytes arrived and their checksum.
async fn count(req: Request) -> Response {
    let mut body = req.into_body();
    let mut total: u64 = 0;
    let mut sum: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len() as u64;
                    sum = data
                        .iter()
                        .fold(sum, |acc, b| acc.wrapping_add(u64::from(*b)));
                }
            }
            Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
        }
    }
    axum::Json(serde_json::json!({ "bytes": total, "sum": sum })).into_response()
}

/// Streams `bytes` bytes of a repeating pattern without holding them in memory.
async fn download(UrlPath(bytes): UrlPath<u64>) -> Response {
    Body::from_stream(pattern_stream(bytes)).into_response()
}

async fn slow(State(state): State<Arc<AppState>>) -> Response {
    let release = state.slow_release.notified();
    state.slow_started.notify_one();
    release.await;
    "slow done".into_response()
}

/// `total` bytes of `i % 251` in 64 KiB chunks, generated lazily.
pub fn pattern_stream(
    total: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    const CHUNK: u64 = 64 * 1024;
    futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = CHUNK.min(total - sent);
        let chunk: Vec<u8> = (sent..sent + n).map(|i| (i % 251) as u8).collect();
        Some((Ok(Bytes::from(chunk)), sent + n))
    })
}

/// The checksum `/count` computes for `pattern_stream(total)`.
pub fn pattern_sum(total: u64) -> u64 {
    (0..total).fold(0u64, |acc, i| acc.wrapping_add(i % 251))
}

/// A free loopback port nobody listens on (bound, then released).
pub async fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write file");
}
