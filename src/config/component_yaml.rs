//! The `kind: Component` document as Dapr writes it (`pkg/apis/components/v1alpha1`), decoded
//! strictly, then validated and resolved into a [`Component`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::yaml::{decode, invalid, render};
use super::{component_types, duration, expand};
use super::{Component, ComponentSource, ConfigError, TemplateContext};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentDoc {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    metadata: ObjectMeta,
    spec: ComponentSpec,
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// Kubernetes `ObjectMeta`. Only `name` and `namespace` matter; the rest is accepted so a
/// manifest exported with `kubectl get -o yaml` loads, while a misspelt key is still an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, rename = "labels")]
    _labels: IgnoredAny,
    #[serde(default, rename = "annotations")]
    _annotations: IgnoredAny,
    #[serde(default, rename = "generateName")]
    _generate_name: IgnoredAny,
    #[serde(default, rename = "uid")]
    _uid: IgnoredAny,
    #[serde(default, rename = "resourceVersion")]
    _resource_version: IgnoredAny,
    #[serde(default, rename = "generation")]
    _generation: IgnoredAny,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: IgnoredAny,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: IgnoredAny,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: IgnoredAny,
    #[serde(default, rename = "ownerReferences")]
    _owner_references: IgnoredAny,
    #[serde(default, rename = "finalizers")]
    _finalizers: IgnoredAny,
    #[serde(default, rename = "managedFields")]
    _managed_fields: IgnoredAny,
    #[serde(default, rename = "selfLink")]
    _self_link: IgnoredAny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ComponentSpec {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    ignore_errors: Option<bool>,
    #[serde(default)]
    init_timeout: Option<String>,
    #[serde(default)]
    metadata: Option<Vec<MetadataItem>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetadataItem {
    name: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    env_ref: Option<String>,
    #[serde(default)]
    secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyRef {
    #[serde(rename = "name")]
    _name: String,
    #[serde(default, rename = "key")]
    _key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Auth {
    #[serde(default)]
    secret_store: Option<String>,
}

/// Decodes, validates and resolves one `kind: Component` document.
pub(super) fn parse(
    path: &Path,
    document: usize,
    value: Value,
    ctx: &TemplateContext,
) -> Result<Component, ConfigError> {
    let doc: ComponentDoc = decode(path, document, value)?;
    let err = |field: &str, reason: String| invalid(path, document, field, reason);

    let name = doc.metadata.name.unwrap_or_default();
    check_name(&name).map_err(|r| err("metadata.name", r))?;

    let spec = doc.spec;
    let (category, _) = spec.type_name.split_once('.').unwrap_or_default();
    if category.is_empty() || spec.type_name.ends_with('.') {
        return Err(err(
            "spec.type",
            format!(
                "`{}` is not of the form <category>.<name> (for example state.redis)",
                spec.type_name
            ),
        ));
    }
    let Some(known) = component_types::find(&spec.type_name) else {
        return Err(err(
            "spec.type",
            format!(
                "unknown component type `{}`; supported types: {}",
                spec.type_name,
                component_types::supported_list()
            ),
        ));
    };
    let written_version = spec.version.unwrap_or_default();
    let Some(version) = known.accept_version(&written_version) else {
        return Err(err(
            "spec.version",
            format!(
                "version `{written_version}` of `{}` is not supported; supported: {}",
                known.type_name,
                known.versions.join(", ")
            ),
        ));
    };

    let init_timeout = match spec.init_timeout.as_deref() {
        None | Some("") => None,
        Some(text) => Some(duration::parse(text).map_err(|r| err("spec.initTimeout", r))?),
    };

    let mut metadata = BTreeMap::new();
    for (i, item) in spec.metadata.unwrap_or_default().into_iter().enumerate() {
        let at = |leaf: &str| format!("spec.metadata[{i}]{leaf}");
        let (item_name, raw, leaf) = resolve_item(item).map_err(|(leaf, r)| err(&at(leaf), r))?;
        let resolved = expand::apply_templates(&raw, ctx).map_err(|r| err(&at(leaf), r))?;
        if metadata.insert(item_name.clone(), resolved).is_some() {
            // daprd keeps the last one silently; say so, since it is almost always a slip.
            tracing::warn!(
                file = %path.display(),
                document,
                component = %name,
                metadata = %item_name,
                "metadata name appears more than once; the last value wins"
            );
        }
    }

    Ok(Component {
        name,
        type_name: known.type_name.to_owned(),
        version: version.to_owned(),
        ignore_errors: spec.ignore_errors.unwrap_or(false),
        metadata,
        scopes: doc.scopes.unwrap_or_default(),
        source: ComponentSource::File {
            path: path.to_owned(),
            document,
        },
        namespace: doc.metadata.namespace.filter(|n| !n.is_empty()),
        init_timeout,
        secret_store: doc
            .auth
            .and_then(|a| a.secret_store)
            .filter(|s| !s.is_empty()),
    })
}

/// daprd's name rule (Kubernetes path-segment names): non-empty, not `.`/`..`, no `/` or `%`,
/// because the name appears in API URL paths.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a component needs a non-empty metadata.name".to_owned());
    }
    if name == "." || name == ".." || name.contains(['/', '%']) {
        return Err(format!(
            "`{name}` cannot be used as a name: it may not be `.` or `..` nor contain `/` or `%`"
        ));
    }
    Ok(())
}

/// The item's name, its raw (untemplated) value and the field it came from (`.value` or
/// `.envRef`); on error, the field suffix and the reason.
fn resolve_item(
    item: MetadataItem,
) -> Result<(String, String, &'static str), (&'static str, String)> {
    if item.name.is_empty() {
        return Err((".name", "a metadata item needs a non-empty name".to_owned()));
    }
    let sources = [
        item.value.is_some(),
        item.env_ref.is_some(),
        item.secret_key_ref.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err((
            "",
            format!(
                "metadata `{}` sets more than one of value, envRef and secretKeyRef; keep one",
                item.name
            ),
        ));
    }
    if item.secret_key_ref.is_some() {
        return Err((
            ".secretKeyRef",
            "secretKeyRef is not supported yet: no secret store building block; use value or \
             envRef"
                .to_owned(),
        ));
    }
    if let Some(var) = item.env_ref {
        return match std::env::var(&var) {
            Ok(v) => Ok((item.name, v, ".envRef")),
            Err(std::env::VarError::NotPresent) => Err((
                ".envRef",
                format!("environment variable `{var}` is not set"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err((
                ".envRef",
                format!("environment variable `{var}` is not valid UTF-8"),
            )),
        };
    }
    let value = match item.value {
        Some(v) => render(&v).map_err(|r| (".value", r))?,
        None => String::new(),
    };
    Ok((item.name, value, ".value"))
}
