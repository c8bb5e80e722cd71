use std::path::PathBuf;

use super::super::expand::expand_env;
use super::super::*;
use super::{invalid_parts, write};

const HEAD: &str = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\n";

fn load_configs(files: &[PathBuf]) -> Result<Configuration, ConfigError> {
    load(&LoadOptions {
        config_files: files.to_vec(),
        ..Default::default()
    })
    .map(|r| r.configuration)
}

fn load_config_text(text: &str) -> (tempfile::TempDir, Result<Configuration, ConfigError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "config.yaml", text);
    let res = load_configs(&[file]);
    (dir, res)
}

#[test]
fn sqlite_name_resolution() {
    let text = format!(
        "{HEAD}metadata:\n  name: appconfig\nspec:\n  nameResolution:\n    component: sqlite\n    \
         version: v1\n    configuration:\n      connectionString: /tmp/nr.db\n      \
         updateInterval: 5s\n      cleanupInterval: 0\n      enabled: true\n      \
         nested: {{b: 1, a: x}}\n"
    );
    let (_d, res) = load_config_text(&text);
    let cfg = res.expect("load");
    assert_eq!(cfg.name, "appconfig");
    let nr = cfg.name_resolution.expect("nameResolution");
    assert_eq!(
        (nr.component.as_str(), nr.version.as_str()),
        ("sqlite", "v1")
    );
    let got: Vec<_> = nr
        .configuration
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("cleanupInterval", "0"),
            ("connectionString", "/tmp/nr.db"),
            ("enabled", "true"),
            ("nested", "{\"a\":\"x\",\"b\":1}"),
            ("updateInterval", "5s"),
        ]
    );
    assert!(cfg.unsupported.is_empty());
}

#[test]
fn later_files_win_per_top_level_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write(
        dir.path(),
        "a.yaml",
        &format!(
            "{HEAD}metadata: {{name: first}}\nspec:\n  nameResolution: {{component: sqlite}}\n  \
             tracing: {{samplingRate: \"1\", stdout: true}}\n"
        ),
    );
    let second = write(
        dir.path(),
        "b.yaml",
        &format!(
            "{HEAD}metadata: {{name: second}}\nspec:\n  tracing: {{samplingRate: \"0\"}}\n  \
             features: [{{name: HotReload, enabled: false}}]\n"
        ),
    );
    let cfg = load_configs(&[first, second]).expect("load");
    assert_eq!(cfg.name, "second");
    assert_eq!(
        cfg.name_resolution.map(|n| n.component).as_deref(),
        Some("sqlite")
    );
    // The whole `tracing` key is replaced, not merged field by field.
    assert_eq!(
        cfg.unsupported["tracing"],
        serde_json::json!({"samplingRate": "0"})
    );
    assert_eq!(
        cfg.unsupported["features"],
        serde_json::json!([{"name": "HotReload", "enabled": false}])
    );
}

#[test]
fn unknown_configuration_key_is_an_error() {
    let (dir, res) = load_config_text(&format!("{HEAD}spec:\n  tracng: {{stdout: true}}\n"));
    let (path, document, field, reason) = invalid_parts(res.expect_err("unknown key"));
    assert_eq!(path, dir.path().join("config.yaml"));
    assert_eq!((document, field.as_str()), (0, "spec.tracng"));
    assert!(reason.contains("unknown field `tracng`"), "{reason}");

    let (_d, res) = load_config_text(&format!(
        "{HEAD}spec:\n  nameResolution: {{componnet: sqlite}}\n"
    ));
    let (_, _, field, _) = invalid_parts(res.expect_err("unknown nested key"));
    assert_eq!(field, "spec.nameResolution.componnet");
}

#[test]
fn every_dapr_spec_key_is_accepted() {
    let text = format!(
        "{HEAD}spec:\n  httpPipeline: {{handlers: []}}\n  appHttpPipeline: {{handlers: []}}\n  \
         tracing: {{samplingRate: \"1\"}}\n  mtls: {{enabled: true}}\n  metric: {{enabled: true}}\n  \
         metrics: {{enabled: true}}\n  secrets: {{scopes: []}}\n  accessControl: {{defaultAction: \
         allow}}\n  features: []\n  api: {{allowed: []}}\n  components: {{deny: []}}\n  logging: \
         {{apiLogging: {{enabled: true}}}}\n  wasm: {{strictSandbox: true}}\n  workflow: \
         {{maxConcurrentWorkflowInvocations: 5}}\n  nameResolution: {{component: mdns}}\n"
    );
    let (_d, res) = load_config_text(&text);
    let cfg = res.expect("every key");
    assert_eq!(cfg.unsupported.len(), 12);
    assert!(cfg.name_resolution.is_some());
    assert_eq!(cfg.mtls.and_then(|m| m.enabled), Some(true));
    assert_eq!(
        cfg.access_control.default_action,
        crate::config::access_control::Action::Allow
    );
}

#[test]
fn access_control_is_typed_and_validated() {
    use crate::config::access_control::Action;
    let (_d, res) = load_config_text(&format!(
        "{HEAD}spec:\n  accessControl:\n    defaultAction: Deny\n    policies:\n    - appId: a\n      \
         trustDomain: public\n      namespace: default\n      operations:\n      - name: /op/*\n        \
         httpVerb: [GET]\n        action: allow\n"
    ));
    let acl = res.expect("valid").access_control;
    assert_eq!(acl.default_action, Action::Deny);
    // Left out: daprd's built-in default.
    assert_eq!(acl.trust_domain, "public");
    assert_eq!(acl.policies[0].operations[0].action, Action::Allow);
    assert_eq!(acl.policies[0].default_action, None);

    let (_d, res) = load_config_text(&format!(
        "{HEAD}spec:\n  accessControl:\n    policies:\n    - appId: a\n      trustDomain: public\n      \
         namespace: default\n      operations:\n      - {{name: /x, action: maybe}}\n"
    ));
    let (_, _, field, reason) = invalid_parts(res.expect_err("bad action"));
    assert_eq!(field, "spec.accessControl");
    assert!(
        reason.contains("`maybe` is not `allow` or `deny`"),
        "{reason}"
    );

    let (_d, res) = load_config_text(&format!("{HEAD}spec:\n  mtls: {{workloadCertTTL: soon}}\n"));
    let (_, _, field, _) = invalid_parts(res.expect_err("bad duration"));
    assert_eq!(field, "spec.mtls");
}

#[test]
fn environment_is_expanded_in_configuration_files() {
    std::env::set_var("OUTRIGGER_CFG_TEST_NR", "sqlite");
    std::env::set_var("OUTRIGGER_CFG_TEST_DB", "/var/lib/nr.db");
    let text = format!(
        "{HEAD}spec:\n  nameResolution:\n    component: $OUTRIGGER_CFG_TEST_NR\n    \
         configuration:\n      connectionString: ${{OUTRIGGER_CFG_TEST_DB}}\n      \
         other: \"x${{OUTRIGGER_CFG_TEST_UNSET}}y\"\n"
    );
    let (_d, res) = load_config_text(&text);
    let nr = res.expect("load").name_resolution.expect("nameResolution");
    assert_eq!(nr.component, "sqlite");
    assert_eq!(nr.configuration["connectionString"], "/var/lib/nr.db");
    assert_eq!(nr.configuration["other"], "xy");
}

#[test]
fn expansion_matches_go_os_expand_env() {
    std::env::set_var("OUTRIGGER_CFG_TEST_X", "v");
    assert_eq!(expand_env("a $OUTRIGGER_CFG_TEST_X b"), "a v b");
    assert_eq!(expand_env("${OUTRIGGER_CFG_TEST_X}z"), "vz");
    assert_eq!(expand_env("price: 5$"), "price: 5$");
    assert_eq!(expand_env("a $ b $/"), "a $ b $/");
    assert_eq!(expand_env("x${}y"), "xy");
    assert_eq!(expand_env("x${unclosed"), "xunclosed");
    assert_eq!(expand_env("é$OUTRIGGER_CFG_TEST_X-é"), "év-é");
}

#[test]
fn config_file_must_hold_a_configuration() {
    let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: c}\n";
    let (_d, res) = load_config_text(text);
    let (_, document, field, _) = invalid_parts(res.expect_err("wrong kind"));
    assert_eq!((document, field.as_str()), (0, "kind"));

    let (_d, res) = load_config_text("# nothing here\n");
    assert!(res.is_err());
}

#[test]
fn configuration_in_a_resources_dir_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "config.yaml",
        &format!("{HEAD}spec:\n  tracing: {{}}\n"),
    );
    let res = super::load_dirs(&[dir.path()]).expect("load");
    assert!(res.components.is_empty());
    assert_eq!(res.configuration, Configuration::default());
}
