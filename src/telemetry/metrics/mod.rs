//! daprd's metric families (`dapr_http_server_*`, `dapr_http_client_*`,
//! `dapr_runtime_service_invocation_*`, `dapr_component_*` in [`ComponentMetrics`]) with daprd's
//! exact names, labels and buckets, plus the `:9090` exporter ([`serve`]). The registry is owned
//! by the caller, never global.
//!
//! Labels follow daprd with `metrics.http.increasedCardinality: true` (its default): HTTP series
//! carry `method`, the normalized `path` ([`normalize_path`]) and `status`.

mod component;
mod counter;
mod grpc_server;
mod labels;
mod path;
mod security;
mod serve;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use component::ComponentMetrics;
pub use counter::DaprCounter;
pub use grpc_server::GrpcServerMetrics;
pub use labels::{method_label, InvocationKind};
pub use path::normalize_path;
pub use security::{AclLevel, SecurityMetrics};
pub use serve::{serve, CONTENT_TYPE};

use labels::{
    AppId, AppLabels, HttpLabels, LabelStr, ReqRecvLabels, ReqSentLabels, ResRecvLabels,
    ResRecvLatencyLabels, ResSentLabels,
};

/// daprd's default latency distribution, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 34] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1_000.0, 2_000.0,
    5_000.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0,
];

/// daprd's default size distribution, in bytes (1 KiB .. 4 GiB).
pub const SIZE_BUCKETS_BYTES: [f64; 13] = [
    1024.0,
    2048.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

/// Histogram families need a nameable constructor type to be stored in a struct.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS_BYTES)
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// A histogram whose only label is our app id. The series is created on first use (daprd shows
/// no series before the first observation) and then kept, so recording skips the family lookup.
#[derive(Clone, Debug)]
struct AppHistogram {
    family: Histograms<AppLabels>,
    labels: AppLabels,
    series: Arc<OnceLock<Histogram>>,
}

impl AppHistogram {
    fn new(app_id: &AppId) -> Self {
        Self {
            family: Family::new_with_constructor(size_histogram as fn() -> Histogram),
            labels: AppLabels {
                app_id: app_id.clone(),
            },
            series: Arc::default(),
        }
    }

    fn observe(&self, value: f64) {
        self.series
            .get_or_init(|| self.family.get_or_create_owned(&self.labels))
            .observe(value);
    }
}

/// The sidecar's metric families, registered once into a registry the caller owns. Cheap to
/// clone; clones record into the same series.
#[derive(Clone, Debug)]
pub struct SidecarMetrics {
    app_id: AppId,
    server_request_count: Family<HttpLabels, DaprCounter>,
    server_latency: Histograms<HttpLabels>,
    server_request_bytes: AppHistogram,
    server_response_bytes: AppHistogram,
    client_completed_count: Family<HttpLabels, DaprCounter>,
    client_roundtrip_latency: Histograms<HttpLabels>,
    invocation_req_sent: Family<ReqSentLabels, DaprCounter>,
    invocation_req_recv: Family<ReqRecvLabels, DaprCounter>,
    invocation_res_sent: Family<ResSentLabels, DaprCounter>,
    invocation_res_recv: Family<ResRecvLabels, DaprCounter>,
    invocation_res_recv_latency: Histograms<ResRecvLatencyLabels>,
}

impl SidecarMetrics {
    /// Registers every family under its daprd name. Help texts are daprd's view descriptions
    /// (prometheus-client appends the final period).
    pub fn new(registry: &mut Registry, app_id: &str) -> Self {
        let app_id = LabelStr(Arc::<str>::from(app_id));
        let metrics = Self {
            app_id: app_id.clone(),
            server_request_count: Family::default(),
            server_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            server_request_bytes: AppHistogram::new(&app_id),
            server_response_bytes: AppHistogram::new(&app_id),
            client_completed_count: Family::default(),
            client_roundtrip_latency: Family::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
            invocation_req_sent: Family::default(),
            invocation_req_recv: Family::default(),
            invocation_res_sent: Family::default(),
            invocation_res_recv: Family::default(),
            invocation_res_recv_latency: Family::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
        };
        metrics.register(registry);
        metrics
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "dapr_http_server_request_count",
            "Count of HTTP requests processed by the server",
            self.server_request_count.clone(),
        );
        registry.register(
            "dapr_http_server_latency",
            "HTTP request end-to-end latency in server",
            self.server_latency.clone(),
        );
        registry.register(
            "dapr_http_server_request_bytes",
            "HTTP request body size if set as ContentLength (uncompressed) in server",
            self.server_request_bytes.family.clone(),
        );
        registry.register(
            "dapr_http_server_response_bytes",
            "HTTP response body size (uncompressed) in server",
            self.server_response_bytes.family.clone(),
        );
        registry.register(
            "dapr_http_client_completed_count",
            "Count of completed requests",
            self.client_completed_count.clone(),
        );
        registry.register(
            "dapr_http_client_roundtrip_latency",
            "Time between first byte of request headers sent to last byte of response received, or terminal error",
            self.client_roundtrip_latency.clone(),
        );
        registry.register(
            "dapr_runtime_service_invocation_req_sent_total",
            "The number of requests sent via service invocation",
            self.invocation_req_sent.clone(),
        );
        registry.register(
            "dapr_runtime_service_invocation_req_recv_total",
            "The number of requests received via service invocation",
            self.invocation_req_recv.clone(),
        );
        registry.register(
            "dapr_runtime_service_invocation_res_sent_total",
            "The number of responses sent via service invocation",
            self.invocation_res_sent.clone(),
        );
        registry.register(
            "dapr_runtime_service_invocation_res_recv_total",
            "The number of responses received via service invocation",
            self.invocation_res_recv.clone(),
        );
        registry.register(
            "dapr_runtime_service_invocation_res_recv_latency_ms",
            "The latency of service invocation response",
            self.invocation_res_recv_latency.clone(),
        );
    }

    fn http_labels(&self, method: &http::Method, path: &str, status: u16) -> HttpLabels {
        HttpLabels {
            app_id: self.app_id.clone(),
            method: method_label(method),
            path: LabelStr(normalize_path(path).into_owned()),
            status,
        }
    }

    /// One request served on the HTTP API: `dapr_http_server_request_count` and
    /// `dapr_http_server_latency`. `path` is the raw request path; it is normalized here.
    pub fn http_server(&self, method: &http::Method, path: &str, status: u16, elapsed: Duration) {
        let labels = self.http_labels(method, path, status);
        self.server_request_count.get_or_create(&labels).inc();
        self.server_latency
            .get_or_create(&labels)
            .observe(millis(elapsed));
    }

    /// Body sizes of one request served on the HTTP API (`dapr_http_server_request_bytes`,
    /// `..._response_bytes`). `None` means unknown and records nothing; daprd counts a request
    /// without `Content-Length` as 0 bytes, so pass `Some(0)` for a known-empty body.
    pub fn http_server_body_sizes(&self, request_bytes: Option<u64>, response_bytes: Option<u64>) {
        // f64 is exact up to 2^53 bytes, far past the largest bucket.
        if let Some(bytes) = request_bytes {
            self.server_request_bytes.observe(bytes as f64);
        }
        if let Some(bytes) = response_bytes {
            self.server_response_bytes.observe(bytes as f64);
        }
    }

    /// One request the sidecar sent to its own app: `dapr_http_client_completed_count` and
    /// `dapr_http_client_roundtrip_latency`.
    pub fn http_client(&self, method: &http::Method, path: &str, status: u16, elapsed: Duration) {
        let labels = self.http_labels(method, path, status);
        self.client_completed_count.get_or_create(&labels).inc();
        self.client_roundtrip_latency
            .get_or_create(&labels)
            .observe(millis(elapsed));
    }

    /// Caller side: a service invocation request was sent to `dst_app_id`.
    pub fn invocation_request_sent(&self, dst_app_id: &str, kind: InvocationKind) {
        let labels = ReqSentLabels {
            app_id: self.app_id.clone(),
            dst_app_id: LabelStr(dst_app_id.to_owned()),
            r#type: kind,
        };
        self.invocation_req_sent.get_or_create(&labels).inc();
    }

    /// Callee side: a service invocation request arrived from `src_app_id`.
    pub fn invocation_request_received(&self, src_app_id: &str) {
        let labels = ReqRecvLabels {
            app_id: self.app_id.clone(),
            src_app_id: LabelStr(src_app_id.to_owned()),
        };
        self.invocation_req_recv.get_or_create(&labels).inc();
    }

    /// Callee side: the response went back to the caller `dst_app_id`. `status` is the HTTP
    /// status, or the gRPC code for gRPC apps, as daprd records it.
    pub fn invocation_response_sent(&self, dst_app_id: &str, status: i32) {
        let labels = ResSentLabels {
            app_id: self.app_id.clone(),
            dst_app_id: LabelStr(dst_app_id.to_owned()),
            status,
        };
        self.invocation_res_sent.get_or_create(&labels).inc();
    }

    /// Caller side: the unary response from `src_app_id` (the callee) arrived after `elapsed`.
    pub fn invocation_response_received(&self, src_app_id: &str, status: i32, elapsed: Duration) {
        let src_app_id = LabelStr(src_app_id.to_owned());
        let latency = ResRecvLatencyLabels {
            app_id: self.app_id.clone(),
            src_app_id: src_app_id.clone(),
            status,
        };
        self.invocation_res_recv_latency
            .get_or_create(&latency)
            .observe(millis(elapsed));
        let count = ResRecvLabels {
            app_id: self.app_id.clone(),
            src_app_id,
            status,
            r#type: InvocationKind::Unary,
        };
        self.invocation_res_recv.get_or_create(&count).inc();
    }

    /// Caller side: a proxied stream to `src_app_id` ended with `status`. daprd records no
    /// latency for streams, only the count.
    pub fn invocation_streaming_response_received(&self, src_app_id: &str, status: i32) {
        let labels = ResRecvLabels {
            app_id: self.app_id.clone(),
            src_app_id: LabelStr(src_app_id.to_owned()),
            status,
            r#type: InvocationKind::Streaming,
        };
        self.invocation_res_recv.get_or_create(&labels).inc();
    }
}
