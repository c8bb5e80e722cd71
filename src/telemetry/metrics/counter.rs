//! A counter exposed under exactly its registered name.
//!
//! daprd's OpenCensus exporter names a count view's series after the view
//! (`dapr_http_server_request_count`, no `_total` unless the view name has one), while
//! prometheus-client's `Counter` always appends `_total`. Dashboards and alerts written for
//! daprd query the former, so this counter encodes its sample like a gauge sample (bare name)
//! while still declaring `# TYPE <name> counter`.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A monotonically increasing `u64` counter without the `_total` suffix.
#[derive(Clone, Debug, Default)]
pub struct DaprCounter(Counter<u64>);

impl DaprCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for DaprCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for DaprCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The gauge path writes `<name>{labels} <value>`; only the suffix differs from a counter.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}
