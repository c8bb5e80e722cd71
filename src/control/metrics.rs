//! Sentry's metric families (`dapr_sentry_*`), so its dashboards and alerts keep working, plus
//! the root's expiry, which Sentry does not export but a rotation schedule needs.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

type Reason = Vec<(&'static str, &'static str)>;

/// Cheap to clone; clones record into the same series.
#[derive(Clone, Debug, Default)]
pub struct ControlMetrics {
    requests: Counter,
    signed: Counter,
    failures: Family<Reason, Counter>,
    issuer_expiry: Gauge,
    root_expiry: Gauge,
    issuer_changed: Counter,
    server_cert_failures: Counter,
}

impl ControlMetrics {
    /// Registers every family; prometheus-client appends `_total` to counters.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "dapr_sentry_cert_sign_request_received",
            "The number of CSRs received",
            m.requests.clone(),
        );
        registry.register(
            "dapr_sentry_cert_sign_success",
            "The number of certificates issued successfully",
            m.signed.clone(),
        );
        registry.register(
            "dapr_sentry_cert_sign_failure",
            "The number of errors occurred when signing a CSR, by reason",
            m.failures.clone(),
        );
        registry.register(
            "dapr_sentry_issuercert_expiry_timestamp",
            "The unix timestamp, in seconds, when the issuer certificate will expire",
            m.issuer_expiry.clone(),
        );
        registry.register(
            "dapr_sentry_rootcert_expiry_timestamp",
            "The unix timestamp, in seconds, when the first root of the trust bundle will expire",
            m.root_expiry.clone(),
        );
        registry.register(
            "dapr_sentry_issuercert_changed",
            "The number of times the issuer certificate or trust bundle changed on disk",
            m.issuer_changed.clone(),
        );
        registry.register(
            "dapr_sentry_servercert_issue_failed",
            "The number of failures to issue the CA's own serving certificate",
            m.server_cert_failures.clone(),
        );
        m
    }

    pub fn request(&self) {
        self.requests.inc();
    }

    pub fn signed(&self) {
        self.signed.inc();
    }

    pub fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub fn ca_loaded(&self, issuer_not_after: OffsetDateTime, roots_not_after: OffsetDateTime) {
        self.issuer_expiry.set(issuer_not_after.unix_timestamp());
        self.root_expiry.set(roots_not_after.unix_timestamp());
    }

    pub fn ca_changed(&self) {
        self.issuer_changed.inc();
    }

    pub fn server_cert_failed(&self) {
        self.server_cert_failures.inc();
    }
}
