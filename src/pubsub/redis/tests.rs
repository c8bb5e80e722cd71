//! Metadata parsing and reply parsing, without a server (tests/pubsub_redis.rs runs the real
//! thing).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use redis::Value;

use super::settings::{Redelivery, Settings, Trim};
use super::wire::{self, Claimed, Entry, Pending};
use crate::pubsub::PubSubError;

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Result<Settings, PubSubError> {
    Settings::parse(&meta(pairs), "checkout")
}

fn config_error(pairs: &[(&str, &str)]) -> String {
    match parse(pairs) {
        Err(PubSubError::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn defaults_are_daprds() {
    let s = parse(&[("redisHost", "localhost:6379")]).unwrap();
    assert_eq!((s.host.as_str(), s.port), ("localhost", 6379));
    assert_eq!(
        s.consumer_id, "checkout",
        "consumerID defaults to the app id"
    );
    assert_eq!(s.db, 0);
    assert_eq!(
        s.redelivery,
        Redelivery {
            interval: Duration::from_secs(15),
            processing_timeout: Duration::from_secs(60),
        }
    );
    assert_eq!((s.queue_depth, s.concurrency), (100, 10));
    assert_eq!(s.trim, Trim::None);
    assert_eq!(s.dial_timeout, Duration::from_secs(5));
    assert_eq!(s.read_timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.write_timeout, s.read_timeout);
    assert_eq!(s.min_retry_interval, Duration::from_millis(8));
    assert_eq!(s.max_retry_interval, Duration::from_millis(512));
}

#[test]
fn durations_take_go_syntax_and_legacy_milliseconds() {
    let s = parse(&[
        ("redisHost", "redis"),
        ("redeliverInterval", "1m"),
        ("processingTimeout", "2500"),
        ("dialTimeout", "200ms"),
        ("readTimeout", "-1"),
        ("writeTimeout", "750"),
    ])
    .unwrap();
    assert_eq!(s.port, 6379, "a bare host gets the default port");
    assert_eq!(s.redelivery.interval, Duration::from_secs(60));
    assert_eq!(s.redelivery.processing_timeout, Duration::from_millis(2500));
    assert_eq!(s.dial_timeout, Duration::from_millis(200));
    assert_eq!(s.read_timeout, None, "-1 disables the read timeout");
    assert_eq!(s.write_timeout, Some(Duration::from_millis(750)));
    assert!(
        config_error(&[("redisHost", "r:1"), ("processingTimeout", "soon")])
            .contains("processingTimeout")
    );
}

#[test]
fn keys_ignore_case_and_empty_values_count_as_unset() {
    let s = parse(&[
        ("REDISHOST", "10.0.0.1:7000"),
        ("consumerid", "orders"),
        ("QueueDepth", "5"),
        ("redisPassword", ""),
    ])
    .unwrap();
    assert_eq!((s.host.as_str(), s.port), ("10.0.0.1", 7000));
    assert_eq!(s.consumer_id, "orders");
    assert_eq!(s.queue_depth, 5);
    assert_eq!(s.password, None);
}

#[test]
fn zero_disables_redelivery_and_overrides_apply_per_subscription() {
    let s = parse(&[("redisHost", "r:1"), ("redeliverInterval", "0")]).unwrap();
    assert_eq!(s.redelivery.timeout(), None);
    let sub: HashMap<String, String> = [
        ("redeliverInterval".to_owned(), "200ms".to_owned()),
        ("processingTimeout".to_owned(), "300".to_owned()),
    ]
    .into();
    let over = s.redelivery.with_overrides(&sub).unwrap();
    assert_eq!(over.interval, Duration::from_millis(200));
    assert_eq!(over.timeout(), Some(Duration::from_millis(300)));
    let untouched = s.redelivery.with_overrides(&HashMap::new()).unwrap();
    assert_eq!(untouched, s.redelivery);
}

#[test]
fn trimming_prefers_maxlen_like_daprd() {
    let maxlen = parse(&[
        ("redisHost", "r:1"),
        ("maxLenApprox", "1000"),
        ("streamTTL", "1h"),
    ]);
    assert_eq!(maxlen.unwrap().trim, Trim::MaxLenApprox(1000));
    let ttl = parse(&[("redisHost", "r:1"), ("streamTTL", "90")]).unwrap();
    assert_eq!(
        ttl.trim,
        Trim::MinAge(Duration::from_secs(90)),
        "bare numbers are seconds"
    );
}

#[test]
fn unsupported_or_broken_metadata_is_refused_clearly() {
    assert!(config_error(&[]).contains("redisHost is required"));
    assert!(config_error(&[("redisHost", "r:1"), ("enableTLS", "true")]).contains("enableTLS"));
    assert!(config_error(&[("redisHost", "a:1,b:2")]).contains("Cluster"));
    assert!(config_error(&[("redisHost", "r:1"), ("redisType", "cluster")]).contains("redisType"));
    assert!(config_error(&[("redisHost", "r:1"), ("failover", "true")]).contains("Sentinel"));
    assert!(config_error(&[("redisHost", "r:port")]).contains("bad port"));
    assert!(config_error(&[("redisHost", "r:1"), ("concurrency", "0")]).contains("concurrency"));
    assert!(config_error(&[("redisHost", "r:1"), ("queueDepth", "-3")]).contains("queueDepth"));
    let no_app = Settings::parse(&meta(&[("redisHost", "r:1")]), "");
    assert!(matches!(no_app, Err(PubSubError::Config(m)) if m.contains("consumerID")));
}

#[test]
fn ipv6_hosts_need_brackets() {
    let s = parse(&[("redisHost", "[::1]:6380")]).unwrap();
    assert_eq!((s.host.as_str(), s.port), ("::1", 6380));
    assert_eq!(s.address(), "[::1]:6380");
    assert!(config_error(&[("redisHost", "::1:6380")]).contains("IPv6"));
}

#[test]
fn password_is_not_in_debug_output() {
    let s = parse(&[("redisHost", "r:1"), ("redisPassword", "hunter2")]).unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
}

fn args(cmd: &redis::Cmd) -> Vec<String> {
    cmd.args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "<not a plain argument>".to_owned(),
        })
        .collect()
}

#[test]
fn xadd_is_daprds_command() {
    let none = HashMap::new();
    let plain = wire::xadd("orders", Trim::None, b"{}", &none).unwrap();
    assert_eq!(args(&plain), ["XADD", "orders", "*", "data", "{}"]);

    let metadata: HashMap<String, String> = [
        ("b".to_owned(), "2".to_owned()),
        ("a".to_owned(), "1".to_owned()),
    ]
    .into();
    let capped = wire::xadd("orders", Trim::MaxLenApprox(10), b"x", &metadata).unwrap();
    assert_eq!(
        args(&capped),
        [
            "XADD",
            "orders",
            "MAXLEN",
            "~",
            "10",
            "*",
            "data",
            "x",
            "metadata",
            r#"{"a":"1","b":"2"}"#
        ]
    );

    let aged = wire::xadd("orders", Trim::MinAge(Duration::from_secs(60)), b"x", &none).unwrap();
    let aged = args(&aged);
    assert_eq!(aged[..4], ["XADD", "orders", "MINID", "~"]);
    let min_ms: u128 = aged[4].parse().unwrap();
    let now_ms = UNIX_EPOCH.elapsed().unwrap().as_millis();
    assert!(now_ms - 61_000 < min_ms && min_ms <= now_ms - 60_000);
}

#[test]
fn reads_entries_with_data_and_metadata() {
    let reply = Value::Array(vec![Value::Array(vec![
        Value::BulkString(b"orders".to_vec()),
        Value::Array(vec![
            Value::Array(vec![
                Value::BulkString(b"1-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"data".to_vec()),
                    Value::BulkString(vec![0, 255]),
                    Value::BulkString(b"metadata".to_vec()),
                    Value::BulkString(br#"{"k":"v"}"#.to_vec()),
                ]),
            ]),
            // A raw XADD without the data field: delivered empty, as daprd does.
            Value::Array(vec![
                Value::BulkString(b"2-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"other".to_vec()),
                    Value::BulkString(b"x".to_vec()),
                ]),
            ]),
        ]),
    ])]);
    let entries = wire::parse_read(reply).unwrap();
    assert_eq!(
        entries,
        [
            Entry {
                id: "1-0".into(),
                data: vec![0u8, 255].into(),
                metadata: [("k".to_owned(), "v".to_owned())].into(),
            },
            Entry {
                id: "2-0".into(),
                data: Default::default(),
                metadata: HashMap::new(),
            },
        ]
    );
    assert!(wire::parse_read(Value::Nil).unwrap().is_empty());
}

#[test]
fn claim_reports_deleted_entries() {
    let reply = Value::Array(vec![
        Value::Array(vec![Value::BulkString(b"5-1".to_vec()), Value::Nil]),
        Value::Array(vec![
            Value::BulkString(b"6-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"data".to_vec()),
                Value::BulkString(b"d".to_vec()),
            ]),
        ]),
    ]);
    let claimed = wire::parse_claim(reply).unwrap();
    assert_eq!(claimed[0], Claimed::Deleted("5-1".into()));
    assert!(matches!(&claimed[1], Claimed::Entry(e) if e.id == "6-0" && e.data == "d"));
}

#[test]
fn pending_lines_and_paging() {
    let reply = Value::Array(vec![Value::Array(vec![
        Value::BulkString(b"7-3".to_vec()),
        Value::BulkString(b"group".to_vec()),
        Value::Int(1500),
        Value::Int(2),
    ])]);
    assert_eq!(
        wire::parse_pending(reply).unwrap(),
        [Pending {
            id: "7-3".into(),
            idle: Duration::from_millis(1500),
        }]
    );
    assert_eq!(wire::next_id("7-3").as_deref(), Some("7-4"));
    assert_eq!(
        wire::next_id(&format!("7-{}", u64::MAX)).as_deref(),
        Some("8-0")
    );
    assert_eq!(wire::next_id("nonsense"), None);
}
