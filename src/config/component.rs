use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A Dapr `Component` resource after templating and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// `spec.type` in the canonical lower-case spelling of the supported-types table, e.g.
    /// `state.redis`.
    pub type_name: String,
    /// `spec.version`, canonical: daprd's "initial version" spellings (empty, `v0`, `v1`) all
    /// become `v1`.
    pub version: String,
    pub ignore_errors: bool,
    /// Resolved metadata (`value` or `envRef`), templates expanded.
    pub metadata: BTreeMap<String, String>,
    /// App ids allowed to use this component; empty means every app.
    pub scopes: Vec<String>,
    pub source: ComponentSource,
    /// `metadata.namespace`, if the YAML sets one.
    pub namespace: Option<String>,
    /// `spec.initTimeout`, if set.
    pub init_timeout: Option<Duration>,
    /// `auth.secretStore`: the store `secretKeyRef` values would be read from.
    pub secret_store: Option<String>,
}

/// Where a resource came from, for error messages. `Embedded` is a built-in default.
/// `document` is the 0-based index of the YAML document in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSource {
    Embedded,
    File { path: PathBuf, document: usize },
}

impl fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("the built-in defaults"),
            Self::File { path, document } => {
                write!(f, "{} document {document} (0-based)", path.display())
            }
        }
    }
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

    /// A built-in component with no metadata, as used when no resources path is given.
    pub(crate) fn embedded(name: &str, type_name: &str) -> Self {
        Self {
            name: name.to_owned(),
            type_name: type_name.to_owned(),
            version: "v1".to_owned(),
            ignore_errors: false,
            metadata: BTreeMap::new(),
            scopes: Vec::new(),
            source: ComponentSource::Embedded,
            namespace: None,
            init_timeout: None,
            secret_store: None,
        }
    }
}
