//! Identity and access-control metrics: daprd's `dapr_runtime_mtls_*` and
//! `dapr_runtime_acl_*` counters, plus two of ours daprd has no equivalent for (certificate
//! expiry time and TLS handshake failures by reason), named `outrigger_*` so nobody mistakes
//! them for daprd series.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DaprCounter;

type Labels = Vec<(&'static str, String)>;

/// Which policy level decided an access-control check (daprd's two metric families).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclLevel {
    App,
    Global,
}

#[derive(Debug)]
pub struct SecurityMetrics {
    app_id: Arc<str>,
    init: Family<Labels, DaprCounter>,
    init_fail: Family<Labels, DaprCounter>,
    rotated: Family<Labels, DaprCounter>,
    rotated_fail: Family<Labels, DaprCounter>,
    expiry: Family<Labels, Gauge>,
    handshake_fail: Family<Labels, DaprCounter>,
    acl: [Family<Labels, DaprCounter>; 4],
}

impl SecurityMetrics {
    pub fn new(registry: &mut Registry, app_id: &str) -> Self {
        let metrics = Self {
            app_id: Arc::from(app_id),
            init: Family::default(),
            init_fail: Family::default(),
            rotated: Family::default(),
            rotated_fail: Family::default(),
            expiry: Family::default(),
            handshake_fail: Family::default(),
            acl: Default::default(),
        };
        registry.register(
            "dapr_runtime_mtls_init_total",
            "The number of successful mTLS authenticator initializations",
            metrics.init.clone(),
        );
        registry.register(
            "dapr_runtime_mtls_init_fail_total",
            "The number of mTLS authenticator init failures",
            metrics.init_fail.clone(),
        );
        registry.register(
            "dapr_runtime_mtls_workload_cert_rotated_total",
            "The number of the successful workload certificate rotations",
            metrics.rotated.clone(),
        );
        registry.register(
            "dapr_runtime_mtls_workload_cert_rotated_fail_total",
            "The number of the failed workload certificate rotations",
            metrics.rotated_fail.clone(),
        );
        registry.register(
            "outrigger_mtls_workload_cert_expiry_timestamp_seconds",
            "When the current workload certificate expires (unix seconds)",
            metrics.expiry.clone(),
        );
        registry.register(
            "outrigger_mtls_handshake_fail_total",
            "TLS handshakes on sidecar-to-sidecar and CA connections that failed, by side and reason",
            metrics.handshake_fail.clone(),
        );
        for (family, (name, help)) in metrics.acl.iter().zip([
            ("dapr_runtime_acl_app_policy_action_allowed_total", "The number of requests allowed by the app specific action specified in the access control policy"),
            ("dapr_runtime_acl_global_policy_action_allowed_total", "The number of requests allowed by the global action specified in the access control policy"),
            ("dapr_runtime_acl_app_policy_action_blocked_total", "The number of requests blocked by the app specific action specified in the access control policy"),
            ("dapr_runtime_acl_global_policy_action_blocked_total", "The number of requests blocked by the global action specified in the access control policy"),
        ]) {
            registry.register(name, help, family.clone());
        }
        metrics
    }

    fn app(&self) -> Labels {
        vec![("app_id", self.app_id.to_string())]
    }

    fn with_reason(&self, reason: &str) -> Labels {
        vec![
            ("app_id", self.app_id.to_string()),
            ("reason", reason.to_owned()),
        ]
    }

    pub fn mtls_init(&self) {
        self.init.get_or_create(&self.app()).inc();
    }

    pub fn mtls_init_failed(&self, reason: &str) {
        self.init_fail
            .get_or_create(&self.with_reason(reason))
            .inc();
    }

    pub fn cert_rotated(&self) {
        self.rotated.get_or_create(&self.app()).inc();
    }

    pub fn cert_rotation_failed(&self, reason: &str) {
        self.rotated_fail
            .get_or_create(&self.with_reason(reason))
            .inc();
    }

    pub fn set_cert_expiry(&self, not_after: &SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.expiry.get_or_create(&self.app()).set(secs);
    }

    pub fn handshake_failed(&self, side: &'static str, reason: &'static str) {
        self.handshake_fail
            .get_or_create(&vec![
                ("app_id", self.app_id.to_string()),
                ("side", side.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// One access-control decision. As in daprd, `app_id` is the caller's.
    pub fn acl_decision(
        &self,
        level: AclLevel,
        allowed: bool,
        caller_app_id: &str,
        trust_domain: &str,
        namespace: &str,
    ) {
        let index = match (allowed, level) {
            (true, AclLevel::App) => 0,
            (true, AclLevel::Global) => 1,
            (false, AclLevel::App) => 2,
            (false, AclLevel::Global) => 3,
        };
        self.acl[index]
            .get_or_create(&vec![
                ("app_id", caller_app_id.to_owned()),
                ("trustDomain", trust_domain.to_owned()),
                ("namespace", namespace.to_owned()),
            ])
            .inc();
    }
}
