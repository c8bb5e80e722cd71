//! Access control for service invocation, on the callee side (daprd's `pkg/acl`). The caller is
//! identified by the SPIFFE ID of its TLS certificate only; without mTLS there is no verified
//! caller and the global default action decides, exactly as in daprd (a `dapr-caller-app-id`
//! header is never trusted for this).

mod enforce;
mod operations;

use std::collections::HashMap;

use crate::config::access_control::{AccessControlSpec, Action};
use crate::identity::SpiffeId;
use crate::telemetry::metrics::AclLevel;
use operations::{OperationActions, OperationTrie};

pub use enforce::Enforcer;

/// The callee app's protocol decides how an operation's actions apply: HTTP apps match the
/// request's verb, gRPC apps take the operation's action (daprd's `appProtocol` switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Http,
    Grpc,
}

#[derive(Debug)]
struct Policy {
    trust_domain: String,
    namespace: String,
    default_action: Option<Action>,
    operations: OperationTrie<Action>,
}

/// A decision and the policy level that made it (for daprd's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub level: AclLevel,
}

/// The parsed list, built once per Configuration.
#[derive(Debug)]
pub struct AccessControl {
    default_action: Action,
    /// By caller app id, then namespace (daprd keys `appId||namespace`); looked up by `&str`
    /// so a request allocates nothing.
    policies: HashMap<String, HashMap<String, Policy>>,
    app: AppKind,
}

impl AccessControl {
    pub fn new(spec: &AccessControlSpec, app: AppKind) -> Self {
        let mut policies: HashMap<String, HashMap<String, Policy>> =
            HashMap::with_capacity(spec.policies.len());
        for p in &spec.policies {
            let mut operations = OperationTrie::default();
            for op in &p.operations {
                let mut name = if op.name.starts_with('/') {
                    op.name.clone()
                } else {
                    format!("/{}", op.name)
                };
                if app == AppKind::Http {
                    name = name.to_lowercase();
                }
                operations.insert(
                    &name,
                    OperationActions {
                        verbs: op
                            .http_verbs
                            .iter()
                            .map(|v| (v.clone(), op.action))
                            .collect(),
                        action: op.action,
                    },
                );
            }
            policies.entry(p.app_id.clone()).or_default().insert(
                p.namespace.clone(),
                Policy {
                    trust_domain: p.trust_domain.clone(),
                    namespace: p.namespace.clone(),
                    default_action: p.default_action,
                    operations,
                },
            );
        }
        Self {
            default_action: spec.default_action,
            policies,
            app,
        }
    }

    /// Whether `caller` may call `operation` (the app method, normalized) with `verb` (the HTTP
    /// verb name as in daprd's proto enum, `None` for gRPC callers).
    pub fn check(
        &self,
        caller: Option<&SpiffeId>,
        operation: &str,
        verb: Option<&str>,
    ) -> Decision {
        let global = Decision {
            allowed: self.default_action == Action::Allow,
            level: AclLevel::Global,
        };
        let Some(caller) = caller else {
            return global;
        };
        let Some(policy) = self
            .policies
            .get(caller.app_id.as_str())
            .and_then(|by_ns| by_ns.get(caller.namespace.as_str()))
        else {
            return global;
        };
        if policy.trust_domain != caller.trust_domain || policy.namespace != caller.namespace {
            return global;
        }
        let (mut action, level) = match policy.default_action {
            Some(a) => (a, AclLevel::App),
            None => (self.default_action, AclLevel::Global),
        };
        let mut op = normalize(operation);
        if self.app == AppKind::Http {
            op = op.to_lowercase();
        }
        if let Some(found) = policy.operations.search(&op) {
            match self.app {
                AppKind::Http => match verb {
                    Some(verb) => {
                        let by_verb = found
                            .verbs
                            .iter()
                            .find(|(v, _)| v == verb)
                            .or_else(|| found.verbs.iter().find(|(v, _)| v == "*"));
                        if let Some((_, a)) = by_verb {
                            action = *a;
                        }
                    }
                    // daprd then takes the app policy's own default, which may be unset (deny).
                    None => match policy.default_action {
                        Some(a) => action = a,
                        None => {
                            return Decision {
                                allowed: false,
                                level,
                            }
                        }
                    },
                },
                AppKind::Grpc => action = found.action,
            }
        }
        Decision {
            allowed: action == Action::Allow,
            level,
        }
    }
}

/// daprd's operation normalization (purell, "usually safe greedy" + duplicate slashes): a
/// leading `/`, no empty or `.` segments, `..` resolved, no trailing `/`.
pub fn normalize(operation: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in operation.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(operation.len() + 1);
    for seg in out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests;
