use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{component_yaml, configuration, subscription, yaml};
use super::{Component, ConfigError, Resources, Subscription};

/// Values substituted into `{appID}`, `{namespace}`, `{podName}` in component metadata. `app_id`
/// also decides which scoped components this sidecar keeps.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    pub app_id: String,
    pub namespace: String,
    pub pod_name: String,
}

/// What to load: `--resources-path` dirs and `--config` files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub resources_paths: Vec<PathBuf>,
    pub config_files: Vec<PathBuf>,
    pub template: TemplateContext,
}

/// Loads and validates every resource.
///
/// * With no resources path the embedded defaults (`statestore`, `pubsub`, both in-memory) are
///   returned; with one or more, only what the directories hold.
/// * Every `*.yaml`/`*.yml` file of each directory is read (not recursively, in name order).
///   `kind: Component` and `kind: Subscription` (v1alpha1, v2alpha1) documents are loaded;
///   other Dapr kinds are skipped with a warning and non-Dapr documents are ignored.
/// * Every component is validated, including those scoped to other apps, and names must be
///   unique across all directories. Then components whose `scopes` exclude
///   `template.app_id` are dropped: [`Resources::components`] holds only in-scope components.
///   Subscriptions are validated the same way (routes compiled) and filtered by their `scopes`.
/// * `config_files` are merged in order (see [`super::Configuration`]).
pub fn load(opts: &LoadOptions) -> Result<Resources, ConfigError> {
    let (components, subscriptions) = if opts.resources_paths.is_empty() {
        let defaults = vec![
            Component::embedded("statestore", "state.in-memory"),
            Component::embedded("pubsub", "pubsub.in-memory"),
        ];
        (defaults, Vec::new())
    } else {
        let (all, subscriptions) = load_dirs(&opts.resources_paths, &opts.template)?;
        check_unique_names(&all)?;
        let app_id = &opts.template.app_id;
        (
            keep_in_scope(all, app_id),
            keep_subscriptions_in_scope(subscriptions, app_id),
        )
    };
    let configuration = configuration::load_files(&opts.config_files)?;
    Ok(Resources {
        components,
        subscriptions,
        configuration,
    })
}

type Loaded = (Vec<Component>, Vec<Subscription>);

fn load_dirs(dirs: &[PathBuf], ctx: &TemplateContext) -> Result<Loaded, ConfigError> {
    let mut out = Vec::new();
    let mut subscriptions = Vec::new();
    for dir in dirs {
        for file in yaml_files(dir)? {
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            for doc in yaml::documents(&file, &text)? {
                match yaml::header(&doc.value) {
                    Some(("dapr.io/v1alpha1", "Component")) => {
                        out.push(component_yaml::parse(&file, doc.index, doc.value, ctx)?);
                    }
                    Some((
                        api_version @ ("dapr.io/v1alpha1" | "dapr.io/v2alpha1"),
                        "Subscription",
                    )) => {
                        let api_version = api_version.to_owned();
                        subscriptions.push(subscription::parse(
                            &file,
                            doc.index,
                            &api_version,
                            doc.value,
                        )?);
                    }
                    Some((api_version, "Component")) if yaml::is_dapr_group(api_version) => {
                        tracing::warn!(
                            file = %file.display(),
                            document = doc.index,
                            api_version,
                            "only apiVersion dapr.io/v1alpha1 Components exist; skipping this \
                             document"
                        );
                    }
                    Some((api_version, kind)) if yaml::is_dapr_group(api_version) => {
                        tracing::warn!(
                            file = %file.display(),
                            document = doc.index,
                            api_version,
                            kind,
                            "{kind} resources are not supported yet; skipping this document"
                        );
                    }
                    _ => tracing::debug!(
                        file = %file.display(),
                        document = doc.index,
                        "not a Dapr resource (no dapr.io apiVersion and kind); ignoring it"
                    ),
                }
            }
        }
    }
    Ok((out, subscriptions))
}

/// The YAML files directly in `dir`, sorted by name so load order (and errors) are stable.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        // Follows symlinks, so a linked file (e.g. a mounted ConfigMap) still counts.
        if !path.is_file() {
            continue;
        }
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml {
            files.push(path);
        } else {
            tracing::warn!(
                file = %path.display(),
                "a non-YAML file in a resources path is not loaded"
            );
        }
    }
    files.sort();
    Ok(files)
}

fn check_unique_names(components: &[Component]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, &Component> = HashMap::new();
    for c in components {
        if let Some(first) = seen.insert(&c.name, c) {
            return Err(ConfigError::DuplicateComponent {
                name: c.name.clone(),
                first: first.source.clone(),
                second: c.source.clone(),
            });
        }
    }
    Ok(())
}

fn keep_in_scope(components: Vec<Component>, app_id: &str) -> Vec<Component> {
    components
        .into_iter()
        .filter(|c| {
            let keep = c.is_in_scope(app_id);
            if !keep {
                tracing::debug!(
                    component = %c.name,
                    app_id,
                    scopes = ?c.scopes,
                    "component is scoped to other apps; not loading it"
                );
            }
            keep
        })
        .collect()
}

fn keep_subscriptions_in_scope(subs: Vec<Subscription>, app_id: &str) -> Vec<Subscription> {
    subs.into_iter()
        .filter(|s| {
            let keep = s.is_in_scope(app_id);
            if !keep {
                tracing::debug!(
                    subscription = %s.name,
                    app_id,
                    scopes = ?s.scopes,
                    "subscription is scoped to other apps; not loading it"
                );
            }
            keep
        })
        .collect()
}
