//! Startup, readiness, API token, resource errors and shutdown, as daprd users observe them.

mod support;

use axum::body::Body;
use http::{Method, StatusCode};
use support::*;
use tokio::net::TcpListener;

const TOKEN: (&str, &str) = ("dapr-api-token", "s3cret");

/// The outbound health check ignores the app: it only says the sidecar's own APIs are up.
async fn assert_outbound_healthy(http: &Api) {
    let outbound = http.get("/v1.0/healthz/outbound").await;
    assert_eq!(outbound.status, StatusCode::NO_CONTENT);
}

/// Starts a sidecar over a resources directory holding `files` (name, text); startup must
/// fail, and the error chain is returned for the caller's assertions. `why` names the case.
async fn startup_error(files: &[(&str, &str)], why: &str) -> String {
    let mesh = Mesh::new();
    let resources = mesh.dir.path().join("resources");
    std::fs::create_dir(&resources).unwrap();
    for (name, text) in files {
        write(&resources, name, text);
    }
    let options = mesh.options(
        "alpha",
        None,
        &["--resources-path", resources.to_str().unwrap()],
    );
    match outrigger::sidecar::Sidecar::start(options).await {
        Ok(_) => panic!("{why}: startup must fail"),
        Err(err) => format!("{err:#}"),
    }
}

/// A GET that runs on its own while the test goes on (calls the app holds on to).
fn spawn_get(url: String) -> tokio::task::JoinHandle<anyhow::Result<Reply>> {
    tokio::spawn(async move { send(Method::GET, &url, &[], Body::empty()).await })
}

#[tokio::test]
async fn healthz_waits_for_the_app_port_but_outbound_does_not() {
    let mesh = Mesh::new();
    // Reserve a port, release it, and open the app there only later.
    let port = unused_port().await;
    let sidecar = mesh.sidecar("alpha", Some(port), &[]).await;
    let http = Api::new(&sidecar);

    assert_outbound_healthy(&http).await;
    let health = http.get("/v1.0/healthz").await;
    assert_eq!(health.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(health.json()["errorCode"], "ERR_HEALTH_NOT_READY");

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("app port still free");
    let _app = TestApp::serve(listener).await;
    ready(&sidecar).await;

    let wrong = http.get("/v1.0/healthz?appid=other").await;
    assert_eq!(wrong.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(wrong.json()["errorCode"], "ERR_HEALTH_APPID_NOT_MATCH");
    let right = http.get("/v1.0/healthz?appid=alpha").await;
    assert_eq!(right.status, StatusCode::NO_CONTENT);
    sidecar.stop().await;
}

#[tokio::test]
async fn without_app_port_the_sidecar_is_ready_at_once() {
    let mesh = Mesh::new();
    let sidecar = mesh.sidecar("alpha", None, &[]).await;
    ready(&sidecar).await;
    sidecar.stop().await;
}

#[tokio::test]
async fn api_token_is_enforced_except_on_healthz() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let mut options = mesh.options("alpha", Some(app.port()), &[]);
    options.api_token = Some("s3cret".to_owned());
    let sidecar = outrigger::sidecar::Sidecar::start(options).await.unwrap();
    let http = Api::new(&sidecar);
    ready(&sidecar).await;

    for headers in [vec![], vec![("dapr-api-token", "wrong")]] {
        let res = http.call(Method::GET, "/v1.0/metadata", &headers, "").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(res.body, "invalid api token\n");
    }
    let res = http.call(Method::GET, "/v1.0/metadata", &[TOKEN], "").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["id"], "alpha");

    assert_outbound_healthy(&http).await;

    // The token is for the sidecar: the app never sees it.
    let res = http
        .call(Method::GET, "/v1.0/invoke/alpha/method/echo", &[TOKEN], "")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.json()["headers"].get("dapr-api-token").is_none());
    sidecar.stop().await;
}

#[tokio::test]
async fn app_api_token_is_sent_to_the_app() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let mut options = mesh.options("alpha", Some(app.port()), &[]);
    options.app_api_token = Some("for-the-app".to_owned());
    let sidecar = outrigger::sidecar::Sidecar::start(options).await.unwrap();
    let res = Api::new(&sidecar).get("/v1.0/invoke/alpha/method/x").await;
    assert_eq!(res.json()["headers"]["dapr-api-token"][0], "for-the-app");
    sidecar.stop().await;
}

#[tokio::test]
async fn metadata_lists_defaults_and_extended_attributes() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let sidecar = mesh
        .sidecar("alpha", Some(app.port()), &["--app-max-concurrency", "4"])
        .await;
    let http = Api::new(&sidecar);
    let put = http
        .call(Method::PUT, "/v1.0/metadata/team", &[], "payments")
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    let md = http.get("/v1.0/metadata").await.json();
    assert_eq!(md["id"], "alpha");
    assert_eq!(md["extended"]["team"], "payments");
    assert!(md["extended"]["daprRuntimeVersion"].is_string());
    let components = md["components"].as_array().unwrap();
    let names: Vec<_> = components
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert!(
        names.contains(&("statestore", "state.in-memory")),
        "{names:?}"
    );
    assert!(names.contains(&("pubsub", "pubsub.in-memory")), "{names:?}");
    let conn = &md["appConnectionProperties"];
    assert_eq!(conn["port"], app.port());
    assert_eq!(conn["protocol"], "http");
    assert_eq!(conn["channelAddress"], "127.0.0.1");
    assert_eq!(conn["maxConcurrency"], 4);
    sidecar.stop().await;
}

#[tokio::test]
async fn bad_resources_stop_startup_naming_file_and_field() {
    let cases = [
        ("bad-syntax.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [unclosed\n", "bad-syntax.yaml"),
        (
            "unknown-type.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n  type: state.nosuch\n  version: v1\n",
            "spec.type",
        ),
        (
            "unknown-field.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n  type: state.in-memory\n  version: v1\n  metadata:\n  - name: a\n    valeu: b\n",
            "spec.metadata[0]",
        ),
    ];
    for (file, text, expect) in cases {
        let err = startup_error(&[(file, text)], file).await;
        assert!(err.contains(file), "{file}: {err}");
        assert!(err.contains(expect), "{file}: {err}");
    }
}

#[tokio::test]
async fn duplicate_component_names_are_refused() {
    let doc = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: store\nspec:\n  type: state.in-memory\n  version: v1\n";
    let err = startup_error(&[("a.yaml", doc), ("b.yaml", doc)], "duplicate names").await;
    assert!(
        err.contains("a.yaml") && err.contains("b.yaml") && err.contains("store"),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_stops() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let sidecar = mesh
        .sidecar(
            "alpha",
            Some(app.port()),
            &["--dapr-graceful-shutdown-seconds", "10"],
        )
        .await;
    ready(&sidecar).await;
    let http = Api::new(&sidecar);

    let started = app.state.slow_started.notified();
    let in_flight = spawn_get(http.url("/v1.0/invoke/alpha/method/slow"));
    started.await;

    let stop = http.call(Method::POST, "/v1.0/shutdown", &[], "").await;
    assert_eq!(stop.status, StatusCode::NO_CONTENT);
    // New connections are refused once the sidecar stops accepting.
    eventually("listener closed", || {
        let addr = sidecar.http_addrs[0];
        async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;

    app.state.slow_release.notify_one();
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "slow done");
    assert_eq!(
        sidecar.wait().await,
        outrigger::lifecycle::StopKind::Graceful
    );
}

#[tokio::test]
async fn forced_shutdown_is_reported() {
    let mesh = Mesh::new();
    let sidecar = mesh.sidecar("alpha", None, &[]).await;
    let res = Api::new(&sidecar)
        .call(
            Method::POST,
            "/v1.0/shutdown",
            &[("dapr-force-shutdown", "true")],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(sidecar.wait().await, outrigger::lifecycle::StopKind::Forced);
}

#[tokio::test]
async fn max_concurrency_bounds_calls_into_the_app() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let sidecar = mesh
        .sidecar("alpha", Some(app.port()), &["--app-max-concurrency", "1"])
        .await;
    ready(&sidecar).await;
    let url = format!("{}/v1.0/invoke/alpha/method/slow", api(&sidecar));

    let first_started = app.state.slow_started.notified();
    let first = spawn_get(url.clone());
    first_started.await;
    let second_started = app.state.slow_started.notified();
    tokio::pin!(second_started);
    let second = spawn_get(url.clone());
    // With one slot taken, the second call must not reach the app.
    let early =
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut second_started).await;
    assert!(
        early.is_err(),
        "second call reached the app while the first held the only slot"
    );

    app.state.slow_release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status, StatusCode::OK);
    second_started.await;
    app.state.slow_release.notify_one();
    assert_eq!(second.await.unwrap().unwrap().status, StatusCode::OK);
    sidecar.stop().await;
}

#[tokio::test]
async fn h2c_on_the_api_and_to_the_app() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let sidecar = mesh
        .sidecar("alpha", Some(app.port()), &["--app-protocol", "h2c"])
        .await;
    ready(&sidecar).await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Body>();
    let req = http::Request::get(format!("{}/v1.0/invoke/alpha/method/h2", api(&sidecar)))
        .body(Body::empty())
        .unwrap();
    let res = h2.request(req).await.expect("h2c request");
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], "/h2");
    sidecar.stop().await;
}

#[tokio::test]
async fn unhealthy_app_is_not_called() {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let sidecar = mesh
        .sidecar(
            "alpha",
            Some(app.port()),
            &[
                "--enable-app-health-check",
                "--app-health-check-path",
                "/status/503",
                "--app-health-probe-interval",
                "1",
                "--app-health-threshold",
                "1",
            ],
        )
        .await;
    let url = format!("{}/v1.0/invoke/alpha/method/anything", api(&sidecar));
    let refusal = eventually("the probe marks the app unhealthy", || {
        let url = url.clone();
        async move {
            let res = send(Method::GET, &url, &[], Body::empty()).await.ok()?;
            (res.status == StatusCode::INTERNAL_SERVER_ERROR).then_some(res)
        }
    })
    .await;
    let body = refusal.json();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("app is not in a healthy state"),
        "{body}"
    );
    let md = Api::new(&sidecar).get("/v1.0/metadata").await.json();
    assert_eq!(
        md["appConnectionProperties"]["health"]["healthProbeInterval"],
        "1s"
    );
    assert_eq!(
        md["appConnectionProperties"]["health"]["healthCheckPath"],
        "/status/503"
    );
    sidecar.stop().await;
}
