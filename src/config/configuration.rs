//! `kind: Configuration` (`--config` files). Every spec key Dapr defines is accepted so existing
//! files load; only the keys the sidecar acts on are type-checked in depth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value as JsonValue;
use serde_yaml_ng::Value;

use super::access_control::{AccessControlDoc, AccessControlSpec, MtlsDoc, MtlsSpec};
use super::component_yaml::ObjectMeta;
use super::yaml::{self, decode, invalid, render};
use super::{expand, ConfigError};

/// The Dapr `Configuration` the sidecar runs with: `--config` files merged in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    pub name: String,
    pub name_resolution: Option<NameResolutionSpec>,
    /// `spec.accessControl` over daprd's built-in default.
    pub access_control: AccessControlSpec,
    /// `spec.mtls`, when a file sets it.
    pub mtls: Option<MtlsSpec>,
    /// Spec keys Dapr defines that Outrigger accepts but does not act on yet, by their YAML name
    /// (`tracing`, `accessControl`, ...), as written. Keys move out of here as they are
    /// implemented.
    pub unsupported: BTreeMap<String, JsonValue>,
}

/// `spec.nameResolution`.
#[derive(Debug, Clone, PartialEq)]
pub struct NameResolutionSpec {
    /// e.g. `sqlite`, `mdns`, `kubernetes`. Empty means the mode's default resolver, as in daprd.
    pub component: String,
    /// As written; empty means the resolver's first version.
    pub version: String,
    /// `configuration`, flattened to strings as Dapr's metadata decoder sees it: scalars as
    /// text, nested lists and maps as JSON text.
    pub configuration: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigurationDoc {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<Spec>,
}

/// Every top-level key of daprd's `ConfigurationSpec` (`pkg/config/configuration.go`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    name_resolution: Option<NameResolutionDoc>,
    #[serde(default)]
    http_pipeline: Option<JsonValue>,
    #[serde(default)]
    app_http_pipeline: Option<JsonValue>,
    #[serde(default)]
    tracing: Option<JsonValue>,
    #[serde(default)]
    mtls: Option<MtlsDoc>,
    #[serde(default)]
    metric: Option<JsonValue>,
    #[serde(default)]
    metrics: Option<JsonValue>,
    #[serde(default)]
    secrets: Option<JsonValue>,
    #[serde(default)]
    access_control: Option<AccessControlDoc>,
    #[serde(default)]
    features: Option<JsonValue>,
    #[serde(default)]
    api: Option<JsonValue>,
    #[serde(default)]
    components: Option<JsonValue>,
    #[serde(default)]
    logging: Option<JsonValue>,
    #[serde(default)]
    wasm: Option<JsonValue>,
    #[serde(default)]
    workflow: Option<JsonValue>,
}

impl Spec {
    fn unsupported(self) -> impl Iterator<Item = (&'static str, JsonValue)> {
        [
            ("httpPipeline", self.http_pipeline),
            ("appHttpPipeline", self.app_http_pipeline),
            ("tracing", self.tracing),
            ("metric", self.metric),
            ("metrics", self.metrics),
            ("secrets", self.secrets),
            ("features", self.features),
            ("api", self.api),
            ("components", self.components),
            ("logging", self.logging),
            ("wasm", self.wasm),
            ("workflow", self.workflow),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameResolutionDoc {
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    configuration: Option<Value>,
}

/// Loads and merges `files` in order; for each top-level spec key the last file that sets it
/// wins. `$VAR`/`${VAR}` are expanded in the file text first, as daprd does in standalone mode.
pub(super) fn load_files(files: &[PathBuf]) -> Result<Configuration, ConfigError> {
    let mut merged = Configuration::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let text = expand::expand_env(&text);
        let mut found = false;
        for doc in yaml::documents(path, &text)? {
            match yaml::header(&doc.value) {
                Some(("dapr.io/v1alpha1", "Configuration")) => {}
                other => {
                    let (api_version, kind) = other.unwrap_or(("(none)", "(none)"));
                    return Err(invalid(
                        path,
                        doc.index,
                        "kind",
                        format!(
                            "a --config file holds `apiVersion: dapr.io/v1alpha1` + `kind: \
                             Configuration` documents; found apiVersion `{api_version}`, kind \
                             `{kind}` (components go in a --resources-path directory)"
                        ),
                    ));
                }
            }
            found = true;
            merge_document(&mut merged, path, doc.index, doc.value)?;
        }
        if !found {
            return Err(invalid(
                path,
                0,
                "",
                "the file holds no `kind: Configuration` document".to_owned(),
            ));
        }
    }
    for key in merged.unsupported.keys() {
        tracing::warn!(
            key = %key,
            "Configuration spec.{key} is set but not supported yet by Outrigger; it is ignored"
        );
    }
    Ok(merged)
}

fn merge_document(
    merged: &mut Configuration,
    path: &Path,
    document: usize,
    value: Value,
) -> Result<(), ConfigError> {
    let doc: ConfigurationDoc = decode(path, document, value)?;
    if let Some(name) = doc.metadata.and_then(|m| m.name).filter(|n| !n.is_empty()) {
        merged.name = name;
    }
    let Some(mut spec) = doc.spec else {
        return Ok(());
    };
    if let Some(nr) = spec.name_resolution.take() {
        merged.name_resolution = Some(name_resolution(path, document, nr)?);
    }
    if let Some(acl) = spec.access_control.take() {
        acl.apply(&mut merged.access_control)
            .map_err(|reason| invalid(path, document, "spec.accessControl", reason))?;
    }
    if let Some(mtls) = spec.mtls.take() {
        merged.mtls = Some(
            mtls.into_spec()
                .map_err(|reason| invalid(path, document, "spec.mtls", reason))?,
        );
    }
    for (key, value) in spec.unsupported() {
        merged.unsupported.insert(key.to_owned(), value);
    }
    Ok(())
}

fn name_resolution(
    path: &Path,
    document: usize,
    doc: NameResolutionDoc,
) -> Result<NameResolutionSpec, ConfigError> {
    const FIELD: &str = "spec.nameResolution.configuration";
    let mut configuration = BTreeMap::new();
    match doc.configuration {
        None => {}
        Some(Value::Mapping(map)) => {
            for (key, value) in map {
                let Some(key) = key.as_str().map(str::to_owned) else {
                    let shown = render(&key).unwrap_or_default();
                    return Err(invalid(
                        path,
                        document,
                        FIELD,
                        format!("key `{shown}` is not a string; quote it"),
                    ));
                };
                let text = render(&value)
                    .map_err(|r| invalid(path, document, &format!("{FIELD}.{key}"), r))?;
                configuration.insert(key, text);
            }
        }
        Some(_) => {
            return Err(invalid(
                path,
                document,
                FIELD,
                "must be a mapping of setting names to values".to_owned(),
            ))
        }
    }
    Ok(NameResolutionSpec {
        component: doc.component.unwrap_or_default(),
        version: doc.version.unwrap_or_default(),
        configuration,
    })
}
