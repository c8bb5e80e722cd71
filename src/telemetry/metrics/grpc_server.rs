//! daprd's gRPC server views on the API port (`dapr_grpc_io_server_*`, OpenCensus `ocgrpc`
//! names): completed RPCs and latency by method and status, and bytes per RPC by method.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::counter::DaprCounter;
use super::labels::{AppId, LabelStr};
use super::{latency_histogram, millis, size_histogram, Histograms};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    app_id: AppId,
    grpc_server_method: LabelStr<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatusLabels {
    app_id: AppId,
    grpc_server_method: LabelStr<String>,
    grpc_server_status: &'static str,
}

/// The gRPC server families, registered once into a registry the caller owns.
#[derive(Clone, Debug)]
pub struct GrpcServerMetrics {
    app_id: AppId,
    completed: Family<MethodStatusLabels, DaprCounter>,
    latency: Histograms<MethodStatusLabels>,
    received_bytes: Histograms<MethodLabels>,
    sent_bytes: Histograms<MethodLabels>,
}

impl GrpcServerMetrics {
    pub fn new(registry: &mut Registry, app_id: &str) -> Self {
        let metrics = Self {
            app_id: LabelStr(Arc::from(app_id)),
            completed: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            received_bytes: Family::new_with_constructor(size_histogram as fn() -> Histogram),
            sent_bytes: Family::new_with_constructor(size_histogram as fn() -> Histogram),
        };
        registry.register(
            "dapr_grpc_io_server_completed_rpcs",
            "Count of RPCs by method and status",
            metrics.completed.clone(),
        );
        registry.register(
            "dapr_grpc_io_server_server_latency",
            "Distribution of server latency in milliseconds, by method",
            metrics.latency.clone(),
        );
        registry.register(
            "dapr_grpc_io_server_received_bytes_per_rpc",
            "Distribution of received bytes per RPC, by method",
            metrics.received_bytes.clone(),
        );
        registry.register(
            "dapr_grpc_io_server_sent_bytes_per_rpc",
            "Distribution of total sent bytes per RPC, by method",
            metrics.sent_bytes.clone(),
        );
        metrics
    }

    /// One finished RPC. `method` is the full method without the leading slash
    /// (`dapr.proto.runtime.v1.Dapr/GetState`), as ocgrpc labels it; `code` is the gRPC code.
    pub fn rpc(&self, method: &str, code: i32, elapsed: Duration, received: u64, sent: u64) {
        let method = LabelStr(method.to_owned());
        let status = MethodStatusLabels {
            app_id: self.app_id.clone(),
            grpc_server_method: method.clone(),
            grpc_server_status: status_name(code),
        };
        self.completed.get_or_create(&status).inc();
        self.latency.get_or_create(&status).observe(millis(elapsed));
        let labels = MethodLabels {
            app_id: self.app_id.clone(),
            grpc_server_method: method,
        };
        // f64 is exact up to 2^53 bytes, far past the largest bucket.
        self.received_bytes
            .get_or_create(&labels)
            .observe(received as f64);
        self.sent_bytes.get_or_create(&labels).observe(sent as f64);
    }
}

/// ocgrpc's status label: the canonical upper-case code name.
fn status_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "CODE(unknown)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_is_recorded_under_daprd_names() {
        let mut registry = Registry::default();
        let m = GrpcServerMetrics::new(&mut registry, "app");
        m.rpc(
            "dapr.proto.runtime.v1.Dapr/GetState",
            5,
            Duration::from_millis(3),
            10,
            20,
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"dapr_grpc_io_server_completed_rpcs{app_id="app",grpc_server_method="dapr.proto.runtime.v1.Dapr/GetState",grpc_server_status="NOT_FOUND"} 1"#
        ), "{text}");
        assert!(text.contains("dapr_grpc_io_server_server_latency_bucket"));
        assert!(text.contains("dapr_grpc_io_server_received_bytes_per_rpc_sum"));
        assert!(text.contains("dapr_grpc_io_server_sent_bytes_per_rpc_count"));
    }
}
