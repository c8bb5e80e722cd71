use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

fn ctx() -> TemplateContext {
    TemplateContext {
        app_id: "myapp".into(),
        namespace: "prod".into(),
        pod_name: "pod-1".into(),
    }
}

fn load_dirs(dirs: &[&Path]) -> Result<Resources, ConfigError> {
    load(&LoadOptions {
        resources_paths: dirs.iter().map(|d| d.to_path_buf()).collect(),
        config_files: vec![],
        template: ctx(),
    })
}

/// Loads one `components.yaml` holding `text`; returns the temp dir so paths stay valid.
fn load_text(text: &str) -> (tempfile::TempDir, Result<Resources, ConfigError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "components.yaml", text);
    let res = load_dirs(&[dir.path()]);
    (dir, res)
}

/// A Component document; `metadata` holds the lines of `spec.metadata` ("" for none).
fn component(name: &str, ty: &str, metadata: &str) -> String {
    let metadata = if metadata.is_empty() { " []\n" } else { "\n" }.to_owned() + metadata;
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
         type: {ty}\n  version: v1\n  metadata:{metadata}"
    )
}

/// The metadata of the single component `c` loaded from a one-item metadata list.
fn one_value(value_yaml: &str) -> String {
    let (_d, res) = load_text(&component(
        "c",
        "state.in-memory",
        &format!("  - name: k\n    {value_yaml}\n"),
    ));
    let res = res.expect("load");
    res.components[0].metadata["k"].clone()
}

fn invalid_parts(err: ConfigError) -> (PathBuf, usize, String, String) {
    match err {
        ConfigError::Invalid {
            path,
            document,
            field,
            reason,
        } => (path, document, field, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn multi_document_file_with_two_components() {
    let text = format!(
        "{}---\n{}---\n# empty document\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n\
         ---\napiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {{name: s}}\n",
        component("statestore", "state.in-memory", "  - name: a\n    value: b\n"),
        component("pubsub", "pubsub.in-memory", ""),
    );
    let (dir, res) = load_text(&text);
    let res = res.expect("load");
    assert_eq!(res.components.len(), 2);
    let state = &res.components[0];
    assert_eq!(state.name, "statestore");
    assert_eq!(state.type_name, "state.in-memory");
    assert_eq!(state.category(), "state");
    assert_eq!(state.version, "v1");
    assert_eq!(state.metadata["a"], "b");
    assert_eq!(
        state.source,
        ComponentSource::File {
            path: dir.path().join("components.yaml"),
            document: 0
        }
    );
    assert_eq!(res.components[1].name, "pubsub");
    assert_eq!(res.components[1].category(), "pubsub");
}

#[test]
fn templates_are_expanded() {
    let uuids = one_value("value: \"{uuid}/{uuid}\"");
    let (a, b) = uuids.split_once('/').expect("two uuids");
    assert_ne!(a, b, "each {{uuid}} gets a fresh value");
    assert!(uuid::Uuid::parse_str(a).is_ok() && uuid::Uuid::parse_str(b).is_ok());
    assert_eq!(one_value("value: \"id-{appID}\""), "id-myapp");
    // daprd expands {namespace} to <namespace>.<appID>.
    assert_eq!(one_value("value: \"{namespace}\""), "prod.myapp");
    assert_eq!(one_value("value: \"{podName}-x\""), "pod-1-x");
}

#[test]
fn pod_name_template_without_pod_name_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = component(
        "c",
        "state.in-memory",
        "  - name: k\n    value: \"{podName}\"\n",
    );
    write(dir.path(), "c.yaml", &text);
    let err = load(&LoadOptions {
        resources_paths: vec![dir.path().into()],
        template: TemplateContext {
            app_id: "a".into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .expect_err("no pod name");
    let (_, _, field, reason) = invalid_parts(err);
    assert_eq!(field, "spec.metadata[0].value");
    assert!(reason.contains("POD_NAME"), "{reason}");
}

#[test]
fn env_ref_reads_the_environment() {
    std::env::set_var("OUTRIGGER_CFG_TEST_ENVREF", "from-env-{appID}");
    assert_eq!(
        one_value("envRef: OUTRIGGER_CFG_TEST_ENVREF"),
        "from-env-myapp"
    );
    let (_d, res) = load_text(&component(
        "c",
        "state.in-memory",
        "  - name: a\n    value: x\n  - name: k\n    envRef: OUTRIGGER_CFG_TEST_MISSING\n",
    ));
    let (_, _, field, reason) = invalid_parts(res.expect_err("missing env"));
    assert_eq!(field, "spec.metadata[1].envRef");
    assert!(reason.contains("OUTRIGGER_CFG_TEST_MISSING"), "{reason}");
}

#[test]
fn secret_key_ref_is_a_clear_error() {
    let (_d, res) = load_text(&component(
        "c",
        "state.in-memory",
        "  - name: k\n    secretKeyRef: {name: s, key: p}\n",
    ));
    let (_, _, field, reason) = invalid_parts(res.expect_err("secretKeyRef"));
    assert_eq!(field, "spec.metadata[0].secretKeyRef");
    assert!(
        reason.contains("secretKeyRef is not supported yet"),
        "{reason}"
    );
}

#[test]
fn scalar_values_are_rendered_as_text() {
    assert_eq!(one_value("value: true"), "true");
    assert_eq!(one_value("value: 5"), "5");
    assert_eq!(one_value("value: 1.5"), "1.5");
    assert_eq!(one_value("value: 2.0"), "2");
    assert_eq!(one_value("value: \"5\""), "5");
    assert_eq!(one_value("value:"), "");
    assert_eq!(one_value("value: [1, a]"), "[1,\"a\"]");
    assert_eq!(one_value("value: {b: 1, a: x}"), "{\"a\":\"x\",\"b\":1}");
}

#[test]
fn unknown_field_names_file_document_and_field() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\n---\n{}",
        component(
            "c",
            "state.in-memory",
            "  - name: a\n    value: b\n  - name: k\n    valeu: x\n"
        )
    );
    let (dir, res) = load_text(&text);
    let err = res.expect_err("unknown field");
    let msg = err.to_string();
    let (path, document, field, reason) = invalid_parts(err);
    assert_eq!(path, dir.path().join("components.yaml"));
    assert_eq!(document, 1);
    assert_eq!(field, "spec.metadata[1].valeu");
    assert!(reason.contains("unknown field `valeu`"), "{reason}");
    assert!(msg.contains("document 1 (0-based)"), "{msg}");
    assert!(msg.contains("components.yaml"), "{msg}");
}

#[test]
fn wrong_type_names_the_field() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\nspec:\n  \
                type: state.in-memory\n  version: v1\n  ignoreErrors: [x]\n";
    let (_d, res) = load_text(text);
    let (_, _, field, _) = invalid_parts(res.expect_err("bad type"));
    assert_eq!(field, "spec.ignoreErrors");
}

#[test]
fn bad_yaml_syntax_reports_line_and_column() {
    let text = format!(
        "{}---\napiVersion: dapr.io/v1alpha1\nkind: [unclosed\n",
        component("c", "state.in-memory", "")
    );
    let (_d, res) = load_text(&text);
    match res.expect_err("syntax") {
        ConfigError::Syntax { document, line, .. } => {
            assert_eq!(document, 1);
            assert!(line >= 12, "line {line} counts from the start of the file");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
}

#[test]
fn unknown_component_type_lists_supported_ones() {
    let (_d, res) = load_text(&component("c", "state.nonesuch", ""));
    let (_, _, field, reason) = invalid_parts(res.expect_err("unknown type"));
    assert_eq!(field, "spec.type");
    assert!(reason.contains("state.nonesuch"), "{reason}");
    assert!(reason.contains("state.in-memory/v1"), "{reason}");
    assert!(reason.contains("pubsub.in-memory/v1"), "{reason}");
}

#[test]
fn versions_follow_daprd_initial_version_rule() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\nspec:\n  \
                type: State.In-Memory\n";
    let (_d, res) = load_text(text);
    let c = &res.expect("version may be omitted").components[0];
    assert_eq!(
        (c.type_name.as_str(), c.version.as_str()),
        ("state.in-memory", "v1")
    );
    let (_d, res) =
        load_text(&component("c", "state.in-memory", "").replace("version: v1", "version: v2"));
    let (_, _, field, _) = invalid_parts(res.expect_err("v2 unsupported"));
    assert_eq!(field, "spec.version");
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    write(
        a.path(),
        "one.yaml",
        &component("dup", "state.in-memory", ""),
    );
    let second = format!(
        "{}---\n{}",
        component("other", "state.in-memory", ""),
        component("dup", "pubsub.in-memory", "")
    );
    write(b.path(), "two.yml", &second);
    let err = load_dirs(&[a.path(), b.path()]).expect_err("duplicate");
    let msg = err.to_string();
    match err {
        ConfigError::DuplicateComponent {
            name,
            first,
            second,
        } => {
            assert_eq!(name, "dup");
            assert_eq!(
                first,
                ComponentSource::File {
                    path: a.path().join("one.yaml"),
                    document: 0
                }
            );
            assert_eq!(
                second,
                ComponentSource::File {
                    path: b.path().join("two.yml"),
                    document: 1
                }
            );
        }
        other => panic!("expected DuplicateComponent, got {other:?}"),
    }
    assert!(msg.contains("one.yaml") && msg.contains("two.yml"), "{msg}");
}

#[test]
fn missing_name_is_an_error() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {namespace: x}\nspec:\n  \
                type: state.in-memory\n  version: v1\n";
    let (_d, res) = load_text(text);
    let (_, _, field, _) = invalid_parts(res.expect_err("no name"));
    assert_eq!(field, "metadata.name");
}

#[test]
fn out_of_scope_components_are_dropped() {
    let text = format!(
        "{}scopes: [myapp, other]\n---\n{}scopes: [other]\n---\n{}",
        component("mine", "state.in-memory", ""),
        component("theirs", "state.in-memory", ""),
        component("everyone", "pubsub.in-memory", ""),
    );
    let (_d, res) = load_text(&text);
    let names: Vec<_> = res
        .expect("load")
        .components
        .into_iter()
        .map(|c| (c.name, c.scopes))
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "mine".to_owned(),
                vec!["myapp".to_owned(), "other".to_owned()]
            ),
            ("everyone".to_owned(), vec![]),
        ]
    );
}

#[test]
fn defaults_only_without_a_resources_path() {
    let res = load(&LoadOptions::default()).expect("defaults");
    let got: Vec<_> = res
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.version.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("statestore", "state.in-memory", "v1"),
            ("pubsub", "pubsub.in-memory", "v1")
        ]
    );
    assert!(res
        .components
        .iter()
        .all(|c| c.source == ComponentSource::Embedded));

    let empty = tempfile::tempdir().expect("tempdir");
    write(empty.path(), "README.md", "not yaml");
    write(empty.path(), "empty.yaml", "");
    write(empty.path(), "comments.yml", "# only a comment\n---\n");
    assert!(load_dirs(&[empty.path()])
        .expect("load")
        .components
        .is_empty());
}

#[test]
fn other_component_fields_are_kept() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: c\n  \
                namespace: ns1\n  labels: {a: b}\nspec:\n  type: state.in-memory\n  version: v1\n  \
                ignoreErrors: true\n  initTimeout: 1m30s\nauth:\n  secretStore: vault\n";
    let (_d, res) = load_text(text);
    let c = &res.expect("load").components[0];
    assert!(c.ignore_errors);
    assert_eq!(c.namespace.as_deref(), Some("ns1"));
    assert_eq!(c.init_timeout, Some(Duration::from_secs(90)));
    assert_eq!(c.secret_store.as_deref(), Some("vault"));
}

#[test]
fn go_durations() {
    assert_eq!(duration::parse("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(duration::parse("1h2m3s"), Ok(Duration::from_secs(3723)));
    assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(duration::parse("300ms"), Ok(Duration::from_millis(300)));
    assert_eq!(duration::parse("10us"), Ok(Duration::from_micros(10)));
    assert_eq!(duration::parse("0"), Ok(Duration::ZERO));
    for bad in ["", "5", "-1s", "5x", "s", "1.2.3s"] {
        assert!(duration::parse(bad).is_err(), "{bad:?} should fail");
    }
}

mod configuration;
