//! Criterion micro-benches for the pure functions every invocation runs through, so a regression
//! in one shows up without the whole mesh harness: header filtering and stamping, the
//! headers <-> daprd metadata conversion, path cleaning, the metrics path label and a metrics
//! update, and encoding the internal request head.
//!
//! `cargo bench --bench hot_path` (add `-- --test` to run each once, as a smoke check).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use outrigger::invoke::headers::{
    canonical_key, from_metadata, stamp_caller, strip_hop_by_hop, to_metadata, CallerStamp,
};
use outrigger::proto::common::{HttpExtension, InvokeRequest};
use outrigger::proto::internals::{ApiVersion, InternalInvokeRequest};
use outrigger::telemetry::metrics::{normalize_path, InvocationKind, SidecarMetrics};
use prost::Message as _;

/// What a typical HTTP client sends to `/v1.0/invoke/...`: a few standard headers, a trace
/// context and one hop-by-hop header that must be dropped.
fn client_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:3500"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("connection", "keep-alive"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("x-request-id", "7f9c2ba4-e88f-4a2c-9d3f-1b2c3d4e5f60"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

const ME: CallerStamp<'static> = CallerStamp {
    app_id: "alpha",
    namespace: "default",
    host_ip: "127.0.0.1",
    hostname: "pod-alpha-7d9f",
};

/// The headers as they leave the caller sidecar: filtered and stamped.
fn outgoing_headers() -> HeaderMap {
    let mut h = client_headers();
    strip_hop_by_hop(&mut h);
    stamp_caller(&mut h, &ME, "beta");
    h
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("headers");
    g.bench_function("strip_hop_by_hop", |b| {
        b.iter_batched_ref(client_headers, strip_hop_by_hop, BatchSize::SmallInput)
    });
    g.bench_function("stamp_caller", |b| {
        b.iter_batched_ref(
            client_headers,
            |h| stamp_caller(h, &ME, "beta"),
            BatchSize::SmallInput,
        )
    });
    let out = outgoing_headers();
    g.bench_function("to_metadata", |b| b.iter(|| to_metadata(black_box(&out))));
    let md = to_metadata(&out);
    g.bench_function("from_metadata", |b| {
        b.iter_batched(|| md.clone(), from_metadata, BatchSize::SmallInput)
    });
    g.bench_function("canonical_key", |b| {
        b.iter(|| canonical_key(black_box("x-forwarded-for")))
    });
    g.finish();
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("paths");
    g.bench_function("clean/plain", |b| {
        b.iter(|| outrigger::http_path::clean(black_box("/v1.0/invoke/beta/method/orders/7")))
    });
    g.bench_function("clean/dots", |b| {
        b.iter(|| outrigger::http_path::clean(black_box("/v1.0//invoke/./beta/method/a/../b")))
    });
    g.bench_function("clean_method", |b| {
        b.iter(|| outrigger::http_path::clean_method(black_box("orders/7")))
    });
    g.bench_function("normalize_path/invoke", |b| {
        b.iter(|| normalize_path(black_box("/v1.0/invoke/beta/method/orders/7")))
    });
    g.bench_function("normalize_path/actor", |b| {
        b.iter(|| normalize_path(black_box("/v1.0/actors/Cart/42/method/add/item")))
    });
    g.finish();
}

fn metrics(c: &mut Criterion) {
    let mut registry = prometheus_client::registry::Registry::default();
    let m = SidecarMetrics::new(&mut registry, "alpha");
    let mut g = c.benchmark_group("metrics");
    // The per-request updates of one outbound call: HTTP server series plus invocation series.
    g.bench_function("http_server", |b| {
        b.iter(|| {
            m.http_server(
                &Method::POST,
                black_box("/v1.0/invoke/beta/method/orders/7"),
                200,
                Duration::from_micros(180),
            )
        })
    });
    g.bench_function("invocation_sent_and_received", |b| {
        b.iter(|| {
            m.invocation_request_sent(black_box("beta"), InvocationKind::Streaming);
            m.invocation_response_received(black_box("beta"), 200, Duration::from_micros(150));
        })
    });
    g.finish();
}

fn proto(c: &mut Criterion) {
    let head = InternalInvokeRequest {
        ver: ApiVersion::V1 as i32,
        metadata: to_metadata(&outgoing_headers()),
        message: Some(InvokeRequest {
            method: "orders/7".to_owned(),
            data: None,
            content_type: "application/json".to_owned(),
            http_extension: Some(HttpExtension {
                verb: outrigger::proto::common::http_extension::Verb::Post as i32,
                querystring: String::new(),
            }),
        }),
        actor: None,
    };
    let bytes = head.encode_to_vec();
    let mut g = c.benchmark_group("proto");
    g.bench_function("encode_request_head", |b| {
        b.iter(|| black_box(&head).encode_to_vec())
    });
    g.bench_function("decode_request_head", |b| {
        b.iter(|| InternalInvokeRequest::decode(black_box(bytes.as_slice())))
    });
    g.finish();
}

criterion_group!(benches, headers, paths, metrics, proto);
criterion_main!(benches);
