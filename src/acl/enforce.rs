//! The callee side's one gate for both invocation and proxied gRPC calls: the policy decides,
//! the decision is counted, and a refusal reads as daprd's.

use std::sync::Arc;

use crate::identity::SpiffeId;
use crate::telemetry::metrics::SecurityMetrics;

use super::{normalize, AccessControl};

/// A policy together with the metrics its decisions are counted in.
#[derive(Clone)]
pub struct Enforcer {
    policy: Arc<AccessControl>,
    metrics: Arc<SecurityMetrics>,
}

impl Enforcer {
    pub fn new(policy: Arc<AccessControl>, metrics: Arc<SecurityMetrics>) -> Self {
        Self { policy, metrics }
    }

    /// Whether `caller` (from its certificate; `None` without mTLS) may call `method` (the app's
    /// path or gRPC method) with `verb` (daprd's proto enum name; `None` for gRPC).
    pub fn admit(
        &self,
        caller: Option<&SpiffeId>,
        method: &str,
        verb: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let operation = normalize(method);
        let decision = self.policy.check(caller, &operation, verb);
        let (app_id, trust_domain, namespace) = caller.map_or(("", "", ""), |id| {
            (
                id.app_id.as_str(),
                id.trust_domain.as_str(),
                id.namespace.as_str(),
            )
        });
        self.metrics.acl_decision(
            decision.level,
            decision.allowed,
            app_id,
            trust_domain,
            namespace,
        );
        if decision.allowed {
            return Ok(());
        }
        Err(tonic::Status::permission_denied(format!(
            "access control policy has denied access to appid: {app_id} operation: {operation} verb: {}",
            verb.unwrap_or("NONE")
        )))
    }
}
