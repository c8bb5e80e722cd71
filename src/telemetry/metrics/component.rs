//! daprd's component metric families (`dapr_component_*`, pkg/diagnostics
//! `component_monitoring.go`): one count and one latency distribution per building block,
//! labelled by component, namespace, operation and success.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::{
    AppId, ComponentPubsubBulkIngressLabels, ComponentPubsubEgressLabels,
    ComponentPubsubIngressLabels, ComponentStateLabels, LabelStr,
};
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
    ingress_count: Family<ComponentPubsubIngressLabels, DaprCounter>,
    ingress_latencies: Histograms<ComponentPubsubIngressLabels>,
    bulk_ingress_count: Family<ComponentPubsubBulkIngressLabels, DaprCounter>,
    bulk_ingress_event_count: Family<ComponentPubsubBulkIngressLabels, DaprCounter>,
    bulk_ingress_latencies: Histograms<ComponentPubsubBulkIngressLabels>,
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
            ingress_count: Family::default(),
            ingress_latencies: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            bulk_ingress_count: Family::default(),
            bulk_ingress_event_count: Family::default(),
            bulk_ingress_latencies: Family::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
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
        registry.register(
            "dapr_component_pubsub_ingress_count",
            "The number of incoming messages arriving from the pub/sub component",
            metrics.ingress_count.clone(),
        );
        registry.register(
            "dapr_component_pubsub_ingress_latencies",
            "The consuming app event processing latency",
            metrics.ingress_latencies.clone(),
        );
        registry.register(
            "dapr_component_pubsub_ingress_bulk_count",
            "The number of incoming bulk subscribe calls arriving from the bulk pub/sub component",
            metrics.bulk_ingress_count.clone(),
        );
        registry.register(
            "dapr_component_pubsub_ingress_bulk_event_count",
            "Total number of incoming messages arriving from the bulk pub/sub component via Bulk Subscribe",
            metrics.bulk_ingress_event_count.clone(),
        );
        registry.register(
            "dapr_component_pubsub_ingress_bulk_latencies",
            "The consuming app event processing latency for the bulk pub/sub component",
            metrics.bulk_ingress_latencies.clone(),
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

    /// One message from the pub/sub component `component` settled: `process_status` is
    /// `success`, `retry` or `drop`; `status` is daprd's second label (the process status, or
    /// `success` for a drop the app asked for). `elapsed` is the app's processing time; `None`
    /// (the message never reached the app) records no latency, as daprd does.
    pub fn pubsub_ingress(
        &self,
        component: &Arc<str>,
        topic: &Arc<str>,
        process_status: &'static str,
        status: &'static str,
        elapsed: Option<Duration>,
    ) {
        let labels = ComponentPubsubIngressLabels {
            app_id: self.app_id.clone(),
            component: LabelStr(component.clone()),
            namespace: self.namespace.clone(),
            process_status,
            status,
            topic: LabelStr(topic.clone()),
        };
        if let Some(elapsed) = elapsed {
            self.ingress_latencies
                .get_or_create(&labels)
                .observe(millis(elapsed));
        }
        self.ingress_count.get_or_create(&labels).inc();
    }

    /// One bulk delivery to the app: the call and its latency, and the process statuses its
    /// entries ended with. daprd records `..._bulk_event_count` as a *count* view over
    /// measurements of the entry count, so each status with at least one entry adds one per
    /// call, not the number of entries; dashboards built on daprd read it that way.
    pub fn pubsub_bulk_ingress(
        &self,
        component: &Arc<str>,
        topic: &Arc<str>,
        entries_by_status: &[(&'static str, u64)],
        elapsed: Duration,
    ) {
        let call = ComponentPubsubBulkIngressLabels {
            app_id: self.app_id.clone(),
            component: LabelStr(component.clone()),
            namespace: self.namespace.clone(),
            process_status: "",
            topic: LabelStr(topic.clone()),
        };
        self.bulk_ingress_count.get_or_create(&call).inc();
        self.bulk_ingress_latencies
            .get_or_create(&call)
            .observe(millis(elapsed));
        for &(process_status, _) in entries_by_status.iter().filter(|(_, n)| *n > 0) {
            let labels = ComponentPubsubBulkIngressLabels {
                process_status,
                ..call.clone()
            };
            self.bulk_ingress_event_count.get_or_create(&labels).inc();
        }
    }
}
