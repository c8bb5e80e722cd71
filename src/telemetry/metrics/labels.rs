//! Label sets of the metric families, with fields in alphabetical order: daprd's Go Prometheus
//! client sorts labels by name, and prometheus-client writes them in field order.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// A free-form label value, escaped as the text format requires. prometheus-client writes label
/// values verbatim, and app ids and paths come from callers we do not control.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct LabelStr<T>(pub(crate) T);

impl<T: AsRef<str>> EncodeLabelValue for LabelStr<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.as_ref();
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escaped = match b {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                b'\n' => "\\n",
                _ => continue,
            };
            encoder.write_str(&s[start..i])?;
            encoder.write_str(escaped)?;
            start = i + 1;
        }
        encoder.write_str(&s[start..])
    }
}

/// Our own app id: shared, so building a label set costs a reference count, not a copy.
pub(crate) type AppId = LabelStr<Arc<str>>;

/// `dapr_http_server_*` and `dapr_http_client_*` with method, path and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) app_id: AppId,
    pub(crate) method: &'static str,
    pub(crate) path: LabelStr<String>,
    pub(crate) status: u16,
}

/// Families labelled by app id only (body size histograms).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppLabels {
    pub(crate) app_id: AppId,
}

/// `dapr_runtime_service_invocation_req_sent_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReqSentLabels {
    pub(crate) app_id: AppId,
    pub(crate) dst_app_id: LabelStr<String>,
    pub(crate) r#type: InvocationKind,
}

/// `dapr_runtime_service_invocation_req_recv_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReqRecvLabels {
    pub(crate) app_id: AppId,
    pub(crate) src_app_id: LabelStr<String>,
}

/// `dapr_runtime_service_invocation_res_sent_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResSentLabels {
    pub(crate) app_id: AppId,
    pub(crate) dst_app_id: LabelStr<String>,
    pub(crate) status: i32,
}

/// `dapr_runtime_service_invocation_res_recv_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResRecvLabels {
    pub(crate) app_id: AppId,
    pub(crate) src_app_id: LabelStr<String>,
    pub(crate) status: i32,
    pub(crate) r#type: InvocationKind,
}

/// `dapr_runtime_service_invocation_res_recv_latency_ms` (daprd gives it no `type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResRecvLatencyLabels {
    pub(crate) app_id: AppId,
    pub(crate) src_app_id: LabelStr<String>,
    pub(crate) status: i32,
}

/// The `type` label of the service invocation counters.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum InvocationKind {
    /// One request, one response (`unary`).
    Unary,
    /// A proxied gRPC stream (`streaming`).
    Streaming,
}

impl EncodeLabelValue for InvocationKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Unary => "unary",
            Self::Streaming => "streaming",
        })
    }
}

/// The `method` label: the standard verb, or `UNKNOWN` for anything else (daprd's
/// `getMetricsMethod`), which also keeps arbitrary extension methods from adding series.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "UNKNOWN",
    }
}

/// `dapr_component_state_count` and `dapr_component_state_latencies`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentStateLabels {
    pub(crate) app_id: AppId,
    pub(crate) component: LabelStr<Arc<str>>,
    pub(crate) namespace: AppId,
    pub(crate) operation: &'static str,
    pub(crate) success: &'static str,
}

/// `dapr_component_pubsub_egress_count` and `dapr_component_pubsub_egress_latencies`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentPubsubEgressLabels {
    pub(crate) app_id: AppId,
    pub(crate) component: LabelStr<Arc<str>>,
    pub(crate) namespace: AppId,
    pub(crate) success: &'static str,
    pub(crate) topic: LabelStr<Arc<str>>,
}

/// `dapr_component_pubsub_ingress_count` and `dapr_component_pubsub_ingress_latencies`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentPubsubIngressLabels {
    pub(crate) app_id: AppId,
    pub(crate) component: LabelStr<Arc<str>>,
    pub(crate) namespace: AppId,
    pub(crate) process_status: &'static str,
    pub(crate) status: &'static str,
    pub(crate) topic: LabelStr<Arc<str>>,
}

/// The bulk ingress families. daprd declares `process_status` on all three views but records
/// the per-call count and latency without it, so those series carry it empty.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentPubsubBulkIngressLabels {
    pub(crate) app_id: AppId,
    pub(crate) component: LabelStr<Arc<str>>,
    pub(crate) namespace: AppId,
    pub(crate) process_status: &'static str,
    pub(crate) topic: LabelStr<Arc<str>>,
}
