use std::collections::BTreeMap;
use std::path::PathBuf;

/// A Dapr `Component` resource after templating and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// `spec.type`, e.g. `state.redis`.
    pub type_name: String,
    /// `spec.version`, e.g. `v1`.
    pub version: String,
    pub ignore_errors: bool,
    /// Resolved metadata (`value` or `envRef`), templates expanded.
    pub metadata: BTreeMap<String, String>,
    /// App ids allowed to use this component; empty means every app.
    pub scopes: Vec<String>,
    pub source: ComponentSource,
}

/// Where a resource came from, for error messages. `Embedded` is a built-in default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    Embedded,
    File { path: PathBuf, document: usize },
}

impl Component {
    /// `state`, `pubsub`, ...: the part of `type_name` before the first dot.
    pub fn category(&self) -> &str {
        self.type_name.split('.').next().unwrap_or_default()
    }

    /// Whether `app_id` may use this component (`scopes` empty = all apps).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}
