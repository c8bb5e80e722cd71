//! daprd's component metric families (`dapr_component_*`, pkg/diagnostics
//! `component_monitoring.go`): one count and one latency distribution per building block,
//! labelled by component, namespace, operation and success.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::{AppId, ComponentPubsubEgressLabels, ComponentStateLabels, LabelStr};
use super::{latency_histogram, millis, DaprCounter, Histograms};

/// Component operation metrics, registered once into a registry the caller owns. Cheap to
/// clone; clones record into the same series.
#[derive(Clone, Debug)]
pub struct ComponentMetrics {
    app_id: AppId,
    namespace: AppId,
    state_count: Family<ComponentStateLabels, DaprCounter>,
    state_latencies: Histograms<ComponentStateLabels>,
    egress_count: Family<ComponentPubsubEgressLabels, DaprCounter>,
    egress_latencies: Histograms<ComponentPubsubEgressLabels>,
}

impl ComponentMetrics {
    /// `namespace` is the label daprd puts on component series (its own namespace).
    pub fn new(registry: &mut Registry, app_id: &str, namespace: &str) -> Self {
        let metrics = Self {
            app_id: LabelStr(Arc::<str>::from(app_id)),
            namespace: LabelStr(Arc::<str>::from(namespace)),
            state_count: Family::default(),
            state_latencies: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            egress_count: Family::default(),
            egress_latencies: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "dapr_component_state_count",
            "The number of operations performed on the state component",
            metrics.state_count.clone(),
        );
        registry.register(
            "dapr_component_state_latencies",
            "The latency of the response from the state component",
            metrics.state_latencies.clone(),
        );
        registry.register(
            "dapr_component_pubsub_egress_count",
            "The number of outbound messages published to the pub/sub component",
            metrics.egress_count.clone(),
        );
        registry.register(
            "dapr_component_pubsub_egress_latencies",
            "The latency of the response from the pub/sub component",
            metrics.egress_latencies.clone(),
        );
        metrics
    }

    /// One call on the state component `component`; `operation` is daprd's label (`get`,
    /// `set`, `delete`, `bulk_get`, `bulk_delete`, `transaction`, `query`). The name is shared
    /// so that recording a call does not copy it.
    pub fn state(
        &self,
        component: &Arc<str>,
        operation: &'static str,
        success: bool,
        elapsed: Duration,
    ) {
        let labels = ComponentStateLabels {
            app_id: self.app_id.clone(),
            component: LabelStr(component.clone()),
            namespace: self.namespace.clone(),
            operation,
            success: if success { "true" } else { "false" },
        };
        self.state_count.get_or_create(&labels).inc();
        self.state_latencies
            .get_or_create(&labels)
            .observe(millis(elapsed));
    }

    /// One message published to the pub/sub component `component` (bulk entries count one
    /// each, as daprd records them).
    pub fn pubsub_egress(
        &self,
        component: &Arc<str>,
        topic: &str,
        success: bool,
        elapsed: Duration,
    ) {
        let labels = ComponentPubsubEgressLabels {
            app_id: self.app_id.clone(),
            component: LabelStr(component.clone()),
            namespace: self.namespace.clone(),
            success: if success { "true" } else { "false" },
            topic: LabelStr(Arc::from(topic)),
        };
        self.egress_count.get_or_create(&labels).inc();
        self.egress_latencies
            .get_or_create(&labels)
            .observe(millis(elapsed));
    }
}
