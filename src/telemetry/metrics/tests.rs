use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::text::encode_registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    encode_registry(&mut out, registry).unwrap();
    out
}

/// One sample line: name, labels and value, independent of spacing and label order.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').unwrap()),
        None => (series, ""),
    };
    let labels = labels
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once("=\"").unwrap();
            (k.to_owned(), v.trim_end_matches('"').to_owned())
        })
        .collect();
    Sample {
        name: name.to_owned(),
        labels,
        value: value.parse().unwrap(),
    }
}

fn find<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    all.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn label_names(sample: &Sample) -> Vec<&str> {
    sample.labels.keys().map(String::as_str).collect()
}

#[test]
fn http_server_counter_has_daprd_name_and_labels() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "a");
    metrics.http_server(&Method::GET, "/v1.0/healthz", 204, Duration::from_millis(3));
    metrics.http_server(&Method::GET, "/v1.0/healthz", 204, Duration::from_millis(3));
    metrics.http_server(
        &Method::POST,
        "/v1.0/state/store/key-1",
        500,
        Duration::from_millis(1),
    );

    let text = exposition(&registry);
    assert!(
        text.contains("# TYPE dapr_http_server_request_count counter\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndapr_http_server_request_count{app_id=\"a\",method=\"GET\",path=\"/v1.0/healthz\",status=\"204\"} 2\n"),
        "{text}"
    );
    assert!(!text.contains("_total{app_id=\"a\",method"), "{text}");
    assert!(
        !text.contains("dapr_http_server_request_count_total"),
        "{text}"
    );

    let all = samples(&text);
    let state = find(
        &all,
        "dapr_http_server_request_count",
        &[("path", "/v1.0/state/store")],
    )
    .unwrap();
    assert_eq!(label_names(state), ["app_id", "method", "path", "status"]);
    assert_eq!(state.labels["method"], "POST");
    assert_eq!(state.labels["status"], "500");
    assert_eq!(state.value, 1.0);
}

#[test]
fn latency_histograms_use_dapr_buckets_in_milliseconds() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "a");
    metrics.http_server(
        &Method::GET,
        "/v1.0/metadata",
        200,
        Duration::from_micros(4_500),
    );
    metrics.http_client(&Method::PUT, "/orders/1", 201, Duration::from_millis(250));

    let text = exposition(&registry);
    assert!(
        text.contains("# TYPE dapr_http_server_latency histogram\n"),
        "{text}"
    );
    let all = samples(&text);
    let bounds: Vec<String> = all
        .iter()
        .filter(|s| s.name == "dapr_http_server_latency_bucket")
        .map(|s| s.labels["le"].clone())
        .collect();
    let mut expected: Vec<String> = LATENCY_BUCKETS_MS
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    expected.push("+Inf".to_owned());
    assert_eq!(bounds, expected);

    let bucket = |le: &str| {
        find(&all, "dapr_http_server_latency_bucket", &[("le", le)])
            .unwrap()
            .value
    };
    assert_eq!(bucket("4.0"), 0.0);
    assert_eq!(bucket("5.0"), 1.0);
    let sum = find(&all, "dapr_http_server_latency_sum", &[]).unwrap();
    assert!((sum.value - 4.5).abs() < 1e-9);

    let client = find(
        &all,
        "dapr_http_client_completed_count",
        &[("path", "/orders/1")],
    )
    .unwrap();
    assert_eq!(label_names(client), ["app_id", "method", "path", "status"]);
    assert_eq!(client.labels["status"], "201");
    let rt = |le: &str| {
        find(
            &all,
            "dapr_http_client_roundtrip_latency_bucket",
            &[("le", le)],
        )
        .unwrap()
        .value
    };
    assert_eq!((rt("200.0"), rt("250.0")), (0.0, 1.0));
}

#[test]
fn size_histograms_use_dapr_buckets_and_only_app_id() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "a");
    assert!(!exposition(&registry).contains("dapr_http_server_request_bytes"));

    metrics.http_server_body_sizes(Some(2000), None);
    metrics.http_server_body_sizes(Some(0), Some(5_000_000));

    let all = samples(&exposition(&registry));
    let bounds: Vec<&str> = all
        .iter()
        .filter(|s| s.name == "dapr_http_server_request_bytes_bucket")
        .map(|s| s.labels["le"].as_str())
        .collect();
    let mut expected: Vec<String> = SIZE_BUCKETS_BYTES
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    expected.push("+Inf".to_owned());
    assert_eq!(bounds, expected);
    let count = find(&all, "dapr_http_server_request_bytes_count", &[]).unwrap();
    assert_eq!((label_names(count), count.value), (vec!["app_id"], 2.0));
    let response = find(
        &all,
        "dapr_http_server_response_bytes_count",
        &[("app_id", "a")],
    )
    .unwrap();
    assert_eq!(response.value, 1.0);
}

#[test]
fn invocation_families_match_daprd_label_sets() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "alpha");
    metrics.invocation_request_sent("beta", InvocationKind::Unary);
    metrics.invocation_request_sent("beta", InvocationKind::Streaming);
    metrics.invocation_request_received("gamma");
    metrics.invocation_response_sent("gamma", 200);
    metrics.invocation_response_received("beta", 404, Duration::from_millis(12));
    metrics.invocation_streaming_response_received("beta", 14);

    let text = exposition(&registry);
    assert!(text.contains("# TYPE dapr_runtime_service_invocation_req_sent_total counter\n"));
    assert!(!text.contains("_total_total"), "{text}");
    let all = samples(&text);
    // (family suffix, labels identifying the series, its complete label names)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 6] = [
        (
            "req_sent_total",
            &[("type", "unary")],
            &["app_id", "dst_app_id", "type"],
        ),
        (
            "req_sent_total",
            &[("type", "streaming")],
            &["app_id", "dst_app_id", "type"],
        ),
        (
            "req_recv_total",
            &[("src_app_id", "gamma")],
            &["app_id", "src_app_id"],
        ),
        (
            "res_sent_total",
            &[("status", "200")],
            &["app_id", "dst_app_id", "status"],
        ),
        (
            "res_recv_total",
            &[("type", "unary"), ("status", "404")],
            &["app_id", "src_app_id", "status", "type"],
        ),
        (
            "res_recv_total",
            &[("type", "streaming"), ("status", "14")],
            &["app_id", "src_app_id", "status", "type"],
        ),
    ];
    for (suffix, labels, names) in cases {
        let name = format!("dapr_runtime_service_invocation_{suffix}");
        let sample =
            find(&all, &name, labels).unwrap_or_else(|| panic!("{name} {labels:?}\n{text}"));
        assert_eq!(label_names(sample), names, "{name}");
        assert_eq!(sample.labels["app_id"], "alpha");
        assert_eq!(sample.value, 1.0);
    }
    let latency = find(
        &all,
        "dapr_runtime_service_invocation_res_recv_latency_ms_count",
        &[],
    )
    .unwrap();
    assert_eq!(label_names(latency), ["app_id", "src_app_id", "status"]);
    assert_eq!(
        (latency.labels["src_app_id"].as_str(), latency.value),
        ("beta", 1.0)
    );
}

#[test]
fn families_appear_only_after_their_first_observation() {
    let mut registry = Registry::default();
    let _metrics = SidecarMetrics::new(&mut registry, "a");
    assert_eq!(exposition(&registry), "");
}

#[test]
fn unknown_methods_and_odd_label_values_stay_well_formed() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "a");
    let purge = Method::from_bytes(b"PURGE").unwrap();
    metrics.http_client(&purge, "/x", 200, Duration::ZERO);
    metrics.invocation_request_received("we\"ird\\app\n");

    let text = exposition(&registry);
    assert!(text.contains("method=\"UNKNOWN\""), "{text}");
    assert!(
        text.contains("src_app_id=\"we\\\"ird\\\\app\\n\""),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| !l.starts_with('#')).count(),
        1 + 37 + 1
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn serve_answers_any_path_and_stops_on_shutdown() {
    let mut registry = Registry::default();
    let metrics = SidecarMetrics::new(&mut registry, "a");
    metrics.http_server(&Method::GET, "/v1.0/healthz", 204, Duration::from_millis(1));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Arc::new(registry), async move {
        let _ = stopped.await;
    }));

    for path in ["/", "/metrics", "/anything/at/all"] {
        let response = get(addr, path).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response
            .to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")));
        assert!(response.contains(
            "\ndapr_http_server_request_count{app_id=\"a\",method=\"GET\",path=\"/v1.0/healthz\",status=\"204\"} 1\n"
        ));
        assert!(!response.contains("# EOF"));
    }

    // An idle keep-alive connection must not hold shutdown up.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(3), server).await;
    result.expect("serve did not stop").unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open"
    );
}
