//! Unit tests that need no database: metadata, connection strings, value encoding, query SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::settings::Settings;
use super::{connstr, query, value};
use crate::state::query::Query;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    let metadata: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_metadata(&metadata)
}

#[test]
fn daprd_defaults_and_aliases() {
    let s = settings(&[("connectionString", "host=db user=u password=p")]).unwrap();
    assert_eq!(s.table, "state");
    assert_eq!(s.metadata_table, "dapr_metadata");
    assert_eq!(s.timeout, Duration::from_secs(20));
    assert_eq!(s.cleanup_interval, Some(Duration::from_secs(3600)));
    assert!(s.max_conns >= 4);
    assert_eq!(s.pg.get_connect_timeout(), Some(&Duration::from_secs(20)));

    let s = settings(&[
        ("URL", "host=db user=u"),
        ("timeoutInSeconds", "5"),
        ("cleanupIntervalInSeconds", "0"),
        ("TableName", "app.items"),
        ("maxConns", "9"),
    ])
    .unwrap();
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.cleanup_interval, None, "0 disables the cleanup");
    assert_eq!(s.table, "app.items");
    assert_eq!(s.max_conns, 9);

    let s = settings(&[("connectionString", "host=db"), ("cleanupInterval", "-1")]).unwrap();
    assert_eq!(s.cleanup_interval, None, "negative disables the cleanup");
    let s = settings(&[("connectionString", "host=db"), ("timeout", "1m30s")]).unwrap();
    assert_eq!(s.timeout, Duration::from_secs(90));
}

#[test]
fn bad_metadata_is_refused() {
    for (pairs, needle) in [
        (vec![], "missing connection string"),
        (
            vec![("connectionString", "host=db"), ("timeout", "500ms")],
            "timeout",
        ),
        (
            vec![
                ("connectionString", "host=db"),
                ("tableName", "x; DROP TABLE y"),
            ],
            "tableName",
        ),
        (
            vec![
                ("connectionString", "host=db"),
                ("metadataTableName", "a.b.c"),
            ],
            "metadataTableName",
        ),
        (
            vec![("connectionString", "host=db"), ("queryExecMode", "fast")],
            "queryExecMode",
        ),
        (
            vec![("connectionString", "host=db"), ("useAzureAD", "true")],
            "useAzureAD",
        ),
        (
            vec![("connectionString", "host=db sslmode=verify-full")],
            "sslmode=verify-full",
        ),
        (
            vec![("connectionString", "host=db bogus=1")],
            "invalid connection string",
        ),
    ] {
        let err = settings(&pairs).unwrap_err();
        assert!(err.contains(needle), "{pairs:?}: {err}");
    }
}

#[test]
fn connection_strings_written_for_daprd_parse() {
    // The form in Dapr's docs: `database`, not `dbname`.
    let p = connstr::parse(
        "host=localhost user=postgres password='a b\\'c' port=5433 connect_timeout=10 database=my_dapr",
    )
    .unwrap();
    assert_eq!(p.config.get_dbname(), Some("my_dapr"));
    assert_eq!(p.config.get_password(), Some(&b"a b'c"[..]));
    assert_eq!(p.config.get_ports(), &[5433]);

    let p = connstr::parse(
        "postgres://u:p%40ss@db:6000/app?sslmode=allow&pool_max_conns=12&pool_min_conns=2&database=other",
    )
    .unwrap();
    assert_eq!(p.pool_max_conns, Some(12));
    assert_eq!(p.config.get_password(), Some(&b"p@ss"[..]));
    assert_eq!(p.config.get_dbname(), Some("other"));
    assert_eq!(
        p.config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Prefer
    );

    assert!(connstr::parse("postgresql://db/app?sslmode=require")
        .unwrap_err()
        .contains("TLS"));
    assert!(connstr::parse("host='unterminated").is_err());
    let s = settings(&[("connectionString", "postgres://db/x?pool_max_conns=7")]).unwrap();
    assert_eq!(s.max_conns, 7);
}

#[test]
fn values_are_stored_like_daprd() {
    let json = value::encode(&Bytes::from_static(br#"{"a":1}"#));
    assert!(!json.is_binary);
    assert_eq!(json.json, r#"{"a":1}"#);

    let bin = value::encode(&Bytes::from_static(&[0, 159, 146, 150]));
    assert!(bin.is_binary);
    assert_eq!(bin.json, "\"AJ+Slg==\"");
    assert_eq!(
        value::decode(&bin.json, true).unwrap(),
        &[0, 159, 146, 150][..]
    );

    // Not JSON, or JSON that JSONB cannot hold: stored the binary way, read back unchanged.
    for raw in [&b"plain text"[..], b"", br#""nul \u0000""#, br#""\ud800""#] {
        let enc = value::encode(&Bytes::copy_from_slice(raw));
        assert!(enc.is_binary, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(value::decode(&enc.json, true).unwrap(), raw);
    }
    assert!(!value::encode(&Bytes::from_static(br#""\u00e9""#)).is_binary);

    // PostgreSQL's JSONB text, compacted; string contents untouched.
    assert_eq!(
        value::compact(br#"{"a": "x, y: \"z\"", "b": [1, 2, {"c": null}]}"#),
        r#"{"a":"x, y: \"z\"","b":[1,2,{"c":null}]}"#
    );
}

#[test]
fn etags_are_32_bit_numbers() {
    assert_eq!(
        value::parse_etag("4294967295").unwrap(),
        value::Xid(u32::MAX)
    );
    for bad in ["4294967296", "-1", "+1", "abc", " 1", "1.0"] {
        assert!(value::parse_etag(bad).is_err(), "{bad}");
    }
}

fn built(q: serde_json::Value) -> query::Built {
    let q: Query = serde_json::from_value(q).unwrap();
    query::build("state", &q).unwrap()
}

#[test]
fn query_sql_follows_daprd_shape() {
    let b = built(json!({
        "filter": {"AND": [{"EQ": {"person.org": "A"}}, {"IN": {"state": ["CA", "WA"]}}]},
        "sort": [{"key": "state", "order": "DESC"}],
        "page": {"limit": 2, "token": "4"}
    }));
    assert_eq!(
        b.sql,
        "SELECT key, value, xmin FROM state \
         WHERE (expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP) \
         AND ((value->$1::text->>$2::text = $3::text) AND \
         ((value->>$4::text = $5::text) OR (value->>$6::text = $7::text))) \
         ORDER BY value->$8::text DESC, key LIMIT 2 OFFSET 4"
    );
    assert_eq!(
        b.params,
        ["person", "org", "A", "state", "CA", "state", "WA", "state"]
    );
    assert_eq!((b.limit, b.offset), (Some(2), 4));

    let b = built(json!({"filter": {"GT": {"age": 3}}}));
    assert!(
        b.sql.contains("jsonb_typeof(value->$1::text) = 'number'"),
        "{}",
        b.sql
    );
    assert!(b.sql.ends_with("ORDER BY key"), "{}", b.sql);
    assert_eq!(b.limit, None);

    // Path segments are parameters, never SQL text.
    let b = built(json!({"filter": {"EQ": {"a'); DROP TABLE state; --": 1}}}));
    assert!(!b.sql.contains("DROP"), "{}", b.sql);

    for bad in [
        json!({"filter": {"LT": {"name": "x"}}}),
        json!({"filter": {"GTE": {"ok": true}}}),
        json!({"page": {"limit": 1, "token": "-3"}}),
    ] {
        let q: Query = serde_json::from_value(bad.clone()).unwrap();
        assert!(query::build("state", &q).is_err(), "{bad}");
    }
}
