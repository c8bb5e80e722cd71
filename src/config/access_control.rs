//! `spec.accessControl` and `spec.mtls` of a Configuration, typed and validated.

use serde::Deserialize;

use super::duration::parse as parse_go_duration;

/// `allow` / `deny` as daprd compares them (case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("allow") {
            Some(Self::Allow)
        } else if value.eq_ignore_ascii_case("deny") {
            Some(Self::Deny)
        } else {
            None
        }
    }
}

/// `spec.accessControl` after daprd's defaults: the built-in Configuration carries
/// `{defaultAction: allow, trustDomain: public}` and files are decoded over it, so a key a file
/// leaves out keeps that default.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessControlSpec {
    pub default_action: Action,
    pub trust_domain: String,
    pub policies: Vec<AppPolicy>,
}

impl Default for AccessControlSpec {
    fn default() -> Self {
        Self {
            default_action: Action::Allow,
            trust_domain: "public".to_owned(),
            policies: Vec::new(),
        }
    }
}

/// One `policies[]` entry: what the caller `app_id` may do.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPolicy {
    pub app_id: String,
    pub trust_domain: String,
    pub namespace: String,
    /// `None`: the global default applies to operations not listed.
    pub default_action: Option<Action>,
    pub operations: Vec<OperationPolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationPolicy {
    /// `/op`, `/op/*` (one segment), `/op/**` (any depth); `*` inside a segment globs.
    pub name: String,
    /// Verbs as written (`GET`, `*`).
    pub http_verbs: Vec<String>,
    pub action: Action,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AccessControlDoc {
    #[serde(default)]
    default_action: Option<String>,
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    policies: Option<Vec<PolicyDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyDoc {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    default_action: Option<String>,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operations: Vec<OperationDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OperationDoc {
    name: String,
    #[serde(default)]
    http_verb: Vec<String>,
    action: String,
}

fn action(field: &str, value: &str) -> Result<Action, String> {
    Action::parse(value).ok_or_else(|| format!("{field}: `{value}` is not `allow` or `deny`"))
}

impl AccessControlDoc {
    /// Applies this document over `base` (the default or an earlier file), failing on what
    /// daprd fails on at startup (a policy without `appId`, `trustDomain` or `namespace`) and on
    /// actions that are neither allow nor deny (daprd would silently treat them as deny).
    pub(super) fn apply(self, base: &mut AccessControlSpec) -> Result<(), String> {
        if let Some(value) = self.default_action.filter(|v| !v.is_empty()) {
            base.default_action = action("defaultAction", &value)?;
        }
        if let Some(value) = self.trust_domain.filter(|v| !v.is_empty()) {
            base.trust_domain = value;
        }
        let Some(policies) = self.policies else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(policies.len());
        for (i, p) in policies.into_iter().enumerate() {
            let at = format!("policies[{i}]");
            for (field, value) in [
                ("appId", &p.app_id),
                ("trustDomain", &p.trust_domain),
                ("namespace", &p.namespace),
            ] {
                if value.is_empty() {
                    return Err(format!("{at}.{field} is required"));
                }
            }
            let default_action = match p.default_action.filter(|v| !v.is_empty()) {
                Some(v) => Some(action(&format!("{at}.defaultAction"), &v)?),
                None => None,
            };
            let mut operations = Vec::with_capacity(p.operations.len());
            for (j, op) in p.operations.into_iter().enumerate() {
                if op.name.is_empty() {
                    return Err(format!("{at}.operations[{j}].name is required"));
                }
                operations.push(OperationPolicy {
                    action: action(&format!("{at}.operations[{j}].action"), &op.action)?,
                    name: op.name,
                    http_verbs: op.http_verb,
                });
            }
            out.push(AppPolicy {
                app_id: p.app_id,
                trust_domain: p.trust_domain,
                namespace: p.namespace,
                default_action,
                operations,
            });
        }
        base.policies = out;
        Ok(())
    }
}

/// `spec.mtls`. On the sidecar only `enabled` has a meaning (`--enable-mtls` or this turns mTLS
/// on); the TTL and clock skew are the CA's settings and are validated but reported as such.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MtlsSpec {
    pub enabled: Option<bool>,
    pub workload_cert_ttl: Option<std::time::Duration>,
    pub allowed_clock_skew: Option<std::time::Duration>,
    pub sentry_address: Option<String>,
    pub control_plane_trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct MtlsDoc {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, rename = "workloadCertTTL")]
    workload_cert_ttl: Option<String>,
    #[serde(default)]
    allowed_clock_skew: Option<String>,
    #[serde(default)]
    sentry_address: Option<String>,
    #[serde(default)]
    control_plane_trust_domain: Option<String>,
    #[serde(default)]
    token_validators: Option<serde_json::Value>,
}

impl MtlsDoc {
    pub(super) fn into_spec(self) -> Result<MtlsSpec, String> {
        let duration = |field: &str, v: Option<String>| -> Result<_, String> {
            v.filter(|s| !s.is_empty())
                .map(|s| parse_go_duration(&s).map_err(|e| format!("{field}: {e}")))
                .transpose()
        };
        let _ = self.token_validators;
        Ok(MtlsSpec {
            enabled: self.enabled,
            workload_cert_ttl: duration("workloadCertTTL", self.workload_cert_ttl)?,
            allowed_clock_skew: duration("allowedClockSkew", self.allowed_clock_skew)?,
            sentry_address: self.sentry_address.filter(|s| !s.is_empty()),
            control_plane_trust_domain: self.control_plane_trust_domain.filter(|s| !s.is_empty()),
        })
    }
}
