//! Reading daprd's configuration keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Result<SqliteSettings, ResolveError> {
    SqliteSettings::from_configuration(&config(pairs))
}

/// The configuration error's message, failing the test on success.
fn error(pairs: &[(&str, &str)]) -> String {
    match parse(pairs) {
        Err(ResolveError::Config(msg)) => msg,
        other => panic!("expected a configuration error for {pairs:?}, got {other:?}"),
    }
}

#[test]
fn defaults_are_daprds() {
    let s = parse(&[("connectionString", "/var/lib/nr.db")]).unwrap();
    assert_eq!(s, SqliteSettings::new("/var/lib/nr.db"));
    assert_eq!(s.table_name, "hosts");
    assert_eq!(s.metadata_table_name, "metadata");
    assert_eq!(s.update_interval, Duration::from_secs(5));
    assert_eq!(s.timeout, Duration::from_secs(1));
    assert_eq!(s.busy_timeout, Duration::from_millis(800));
    assert_eq!(s.cleanup_interval, Duration::from_secs(3600));
    assert!(!s.disable_wal);
}

#[test]
fn every_key_is_read() {
    let s = parse(&[
        ("connectionString", "nr.db"),
        ("tableName", "h"),
        ("metadataTableName", "m"),
        ("updateInterval", "1m"),
        ("timeout", "1m30s"),
        ("busyTimeout", "2500ms"),
        ("cleanupInterval", "0"),
        ("disableWAL", "true"),
        ("someOtherResolversKey", "ignored"),
    ])
    .unwrap_err();
    // 1m - 1m30s is negative: refused like daprd does.
    assert!(matches!(s, ResolveError::Config(ref m) if m.contains("updateInterval")));

    let s = parse(&[
        ("connectionString", "nr.db"),
        ("tableName", "h"),
        ("metadataTableName", "m"),
        ("updateInterval", "1m"),
        ("timeout", "2s"),
        ("busyTimeout", "2500ms"),
        ("cleanupInterval", "0"),
        ("disableWAL", "true"),
    ])
    .unwrap();
    assert_eq!(s.path, PathBuf::from("nr.db"));
    assert_eq!(
        (s.table_name.as_str(), s.metadata_table_name.as_str()),
        ("h", "m")
    );
    assert_eq!(s.update_interval, Duration::from_secs(60));
    assert_eq!(s.timeout, Duration::from_secs(2));
    assert_eq!(s.busy_timeout, Duration::from_millis(2500));
    assert_eq!(s.cleanup_interval, Duration::ZERO);
    assert!(s.disable_wal);
}

#[test]
fn keys_match_case_insensitively_with_daprds_aliases() {
    let s = parse(&[
        ("URL", "nr.db"),
        ("TIMEOUTINSECONDS", "2"),
        ("updateinterval", "10"),
        ("cleanupIntervalInSeconds", "-1"),
        ("busyTimeout", "-1s"),
        ("tableName", ""), // empty values keep the default
    ])
    .unwrap();
    assert_eq!(s.path, PathBuf::from("nr.db"));
    assert_eq!(s.timeout, Duration::from_secs(2));
    assert_eq!(s.update_interval, Duration::from_secs(10));
    assert_eq!(s.cleanup_interval, Duration::ZERO, "<= 0 turns cleanup off");
    assert_eq!(s.busy_timeout, Duration::ZERO, "<= 0 sets no busy timeout");
    assert_eq!(s.table_name, "hosts");
}

#[test]
fn file_uris_are_split_into_path_params_and_pragmas() {
    let s = parse(&[(
        "connectionString",
        "file:/tmp/my%20dir/nr.db?cache=shared&_txlock=immediate&_pragma=synchronous(NORMAL)\
         &vfs=unix-dotfile",
    )])
    .unwrap();
    assert_eq!(s.path, PathBuf::from("/tmp/my dir/nr.db"));
    assert_eq!(
        s.uri_params,
        [
            ("cache".to_owned(), "shared".to_owned()),
            ("vfs".to_owned(), "unix-dotfile".to_owned())
        ]
    );
    assert_eq!(s.pragmas, ["synchronous(NORMAL)"]);
    assert_eq!(
        s.uri().unwrap(),
        "file:/tmp/my%20dir/nr.db?cache=shared&vfs=unix-dotfile"
    );

    let s = parse(&[("connectionString", "file:///var/nr.db")]).unwrap();
    assert_eq!(s.path, PathBuf::from("/var/nr.db"));
    let s = parse(&[("connectionString", "FILE://localhost/var/nr.db")]).unwrap();
    assert_eq!(s.path, PathBuf::from("/var/nr.db"));
    // Characters that would end the path in a URI are escaped on the way to SQLite.
    let s = SqliteSettings::new("/tmp/a#b%c.db");
    assert_eq!(s.uri().unwrap(), "file:/tmp/a%23b%25c.db");
}

#[test]
fn unusable_configurations_say_what_to_fix() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "connectionString is missing"),
        (&[("connectionString", ":memory:")], "in-memory"),
        (
            &[("connectionString", "file::memory:?cache=shared")],
            "in-memory",
        ),
        (
            &[("connectionString", "file:nr.db?mode=memory")],
            "mode=memory",
        ),
        (&[("connectionString", "file:nr.db?mode=ro")], "mode=ro"),
        (
            &[("connectionString", "file:nr.db?immutable=1")],
            "immutable",
        ),
        (
            &[("connectionString", "file:?cache=shared")],
            "names no file",
        ),
        (
            &[("connectionString", "file://server/share/nr.db")],
            "only local files",
        ),
        (
            &[("connectionString", "nr.db?_pragma=busy_timeout(10)")],
            "busyTimeout",
        ),
        (
            &[("connectionString", "nr.db?_pragma=journal_mode(WAL)")],
            "disableWAL",
        ),
        (
            &[("connectionString", "nr.db?_pragma=x(1);DROP")],
            "name(value)",
        ),
        (
            &[("connectionString", "nr.db"), ("tableName", "h;drop")],
            "tableName",
        ),
        (
            &[("connectionString", "nr.db"), ("metadataTableName", "a-b")],
            "metadataTableName",
        ),
        (
            &[("connectionString", "nr.db"), ("updateInterval", "5.5s")],
            "whole seconds",
        ),
        (
            &[("connectionString", "nr.db"), ("updateInterval", "1s")],
            "1s longer than timeout",
        ),
        (
            &[
                ("connectionString", "nr.db"),
                ("timeout", "500ms"),
                ("updateInterval", "5s"),
            ],
            "timeout must be at least 1s",
        ),
        (
            &[("connectionString", "nr.db"), ("timeout", "soon")],
            "not a duration",
        ),
        (
            &[("connectionString", "nr.db"), ("disableWAL", "yes")],
            "true or false",
        ),
    ];
    for (pairs, expected) in cases {
        let msg = error(pairs);
        assert!(
            msg.contains(expected),
            "{pairs:?}: {msg:?} should mention {expected:?}"
        );
    }
}

#[test]
fn standalone_default_lives_in_the_state_dir() {
    let s = SqliteSettings::default_for_standalone().unwrap();
    assert!(
        s.path.ends_with("outrigger/nameresolution.db")
            || s.path.ends_with(".outrigger/nameresolution.db")
    );
    assert!(s.path.parent().unwrap().is_dir());
    assert_eq!(s.update_interval, Duration::from_secs(5));
}
