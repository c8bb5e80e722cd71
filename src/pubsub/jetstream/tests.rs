use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};

use super::consumer::{config, consumer_name, NON_DURABLE_INACTIVE};
use super::metadata::{Auth, Concurrency, Settings};
use super::{cloud_event_id, connect_options};
use crate::pubsub::PubSubError;

fn parse(pairs: &[(&str, &str)]) -> Result<Settings, PubSubError> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::parse(&map)
}

fn config_error(pairs: &[(&str, &str)]) -> String {
    match parse(pairs) {
        Err(PubSubError::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    }
}

const URL: (&str, &str) = ("natsURL", "nats://127.0.0.1:4222");

#[test]
fn defaults_match_daprd() {
    let s = parse(&[URL]).unwrap();
    assert_eq!(s.connection_name, "dapr.io - pubsub.jetstream");
    assert_eq!(s.deliver_policy, DeliverPolicy::All);
    assert_eq!(s.ack_policy, AckPolicy::Explicit);
    assert_eq!(s.concurrency, Concurrency::Single);
    assert_eq!(s.auth, Auth::None);
    assert!(s.ack_wait.is_none() && s.max_deliver.is_none() && s.backoff.is_empty());
    assert!(s.durable_name.is_none() && s.queue_group_name.is_none());
}

#[test]
fn nats_url_is_required() {
    assert!(config_error(&[]).contains("natsURL"));
    assert!(config_error(&[("natsURL", "")]).contains("natsURL"));
}

#[test]
fn keys_match_case_insensitively_and_values_decode_like_dapr_kit() {
    let s = parse(&[
        ("NATSURL", "nats://x:4222"),
        ("durablename", "orders"),
        ("ACKWAIT", "90"), // whole seconds
        ("maxDeliver", "5"),
        ("backOff", "1s, 2s,4s"),
        ("memoryStorage", "yes"),
        ("replicas", "3"),
        ("maxAckPending", "-1"),
        ("ackPolicy", "all"),
        ("concurrency", "parallel"),
    ])
    .unwrap();
    assert_eq!(s.nats_url, "nats://x:4222");
    assert_eq!(s.durable_name.as_deref(), Some("orders"));
    assert_eq!(s.ack_wait, Some(Duration::from_secs(90)));
    assert_eq!(s.max_deliver, Some(5));
    assert_eq!(
        s.backoff,
        [1, 2, 4].map(Duration::from_secs).to_vec(),
        "comma list"
    );
    assert!(s.memory_storage);
    assert_eq!(s.replicas, Some(3));
    assert_eq!(s.max_ack_pending, Some(-1));
    assert_eq!(s.ack_policy, AckPolicy::All);
    assert_eq!(s.concurrency, Concurrency::Parallel);
    assert_eq!(
        parse(&[URL, ("backOff", "[500ms, 1s]")]).unwrap().backoff,
        vec![Duration::from_millis(500), Duration::from_secs(1)]
    );
}

#[test]
fn bad_values_name_their_key() {
    assert!(config_error(&[URL, ("ackWait", "soon")]).contains("ackWait"));
    assert!(config_error(&[URL, ("maxDeliver", "many")]).contains("maxDeliver"));
    assert!(config_error(&[URL, ("heartbeat", "x")]).contains("heartbeat"));
    assert!(config_error(&[URL, ("concurrency", "some")]).contains("concurrency"));
    assert!(config_error(&[URL, ("deliverPolicy", "starttime")]).contains("not one of"));
    assert!(config_error(&[URL, ("natsurl", "nats://y")]).contains("duplicate"));
}

#[test]
fn concurrency_mode_key_wins_with_its_exact_spelling() {
    let s = parse(&[
        URL,
        ("concurrency", "single"),
        ("concurrencyMode", "parallel"),
    ])
    .unwrap();
    assert_eq!(s.concurrency, Concurrency::Parallel);
    assert!(config_error(&[URL, ("concurrencyMode", "both")]).contains("concurrencyMode"));
}

#[test]
fn deliver_policies_and_their_start_keys() {
    let policy = |pairs: &[(&str, &str)]| parse(pairs).unwrap().deliver_policy;
    assert_eq!(
        policy(&[URL, ("deliverPolicy", "last")]),
        DeliverPolicy::Last
    );
    assert_eq!(policy(&[URL, ("deliverPolicy", "new")]), DeliverPolicy::New);
    assert_eq!(
        policy(&[URL, ("deliverPolicy", "sequence"), ("startSequence", "42")]),
        DeliverPolicy::ByStartSequence { start_sequence: 42 }
    );
    match policy(&[URL, ("deliverPolicy", "time"), ("startTime", "1640995200")]) {
        DeliverPolicy::ByStartTime { start_time } => {
            assert_eq!(start_time.unix_timestamp(), 1_640_995_200)
        }
        other => panic!("{other:?}"),
    }
    assert!(config_error(&[URL, ("deliverPolicy", "sequence")]).contains("startSequence"));
    assert!(config_error(&[URL, ("deliverPolicy", "time")]).contains("startTime"));
    assert!(config_error(&[URL, ("startSequence", "3")]).contains("deliverPolicy is `all`"));
}

#[test]
fn auth_follows_daprd_precedence_and_pairing() {
    assert!(config_error(&[URL, ("jwt", "j")]).contains("seedKey"));
    assert!(config_error(&[URL, ("seedKey", "s")]).contains("jwt"));
    assert!(config_error(&[URL, ("tls_client_cert", "/c.pem")]).contains("tls_client_key"));
    assert!(config_error(&[URL, ("tls_client_key", "/k.pem")]).contains("tls_client_cert"));
    let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----";
    assert!(
        config_error(&[URL, ("tls_client_cert", pem), ("tls_client_key", "/k.pem")])
            .contains("tls_client_cert must be the path")
    );
    assert_eq!(
        parse(&[URL, ("token", "t")]).unwrap().auth,
        Auth::Token("t".into())
    );
    let cert = parse(&[
        URL,
        ("token", "t"),
        ("tls_client_cert", "/c.pem"),
        ("tls_client_key", "/k.pem"),
    ])
    .unwrap();
    assert!(
        matches!(cert.auth, Auth::ClientCert { .. }),
        "cert wins over token"
    );
    let jwt = parse(&[
        URL,
        ("jwt", "j"),
        ("seedKey", "s"),
        ("tls_client_cert", "/c.pem"),
        ("tls_client_key", "/k.pem"),
    ])
    .unwrap();
    assert!(matches!(jwt.auth, Auth::Jwt { .. }), "jwt wins over all");
    assert_eq!(format!("{:?}", jwt.auth), "Jwt(..)", "no secrets in Debug");
}

#[test]
fn a_bad_seed_key_is_a_config_error() {
    let s = parse(&[URL, ("jwt", "eyJ.x.y"), ("seedKey", "not-a-seed")]).unwrap();
    match connect_options(&s) {
        Err(PubSubError::Config(msg)) => assert!(msg.contains("seedKey"), "{msg}"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn push_only_keys_are_accepted_and_reported() {
    let s = parse(&[
        URL,
        ("flowControl", "true"),
        ("rateLimit", "1000"),
        ("heartbeat", "10s"),
    ])
    .unwrap();
    assert_eq!(s.push_only, ["flowControl", "rateLimit", "heartbeat"]);
    assert!(parse(&[URL, ("flowControl", "false")])
        .unwrap()
        .push_only
        .is_empty());
}

#[test]
fn subscription_ack_wait_overrides_the_component() {
    let s = parse(&[URL, ("ackWait", "30s")]).unwrap();
    let sub = HashMap::from([("ackWait".to_owned(), "1s".to_owned())]);
    assert_eq!(s.ack_wait_for(&sub).unwrap(), Some(Duration::from_secs(1)));
    assert_eq!(
        s.ack_wait_for(&HashMap::new()).unwrap(),
        Some(Duration::from_secs(30))
    );
}

#[test]
fn consumer_names_carry_the_topic() {
    assert_eq!(consumer_name("app", "orders"), "app-orders");
    let dotted = consumer_name("app", "orders.created");
    assert!(dotted.starts_with("app-orders_created-"), "{dotted}");
    assert_ne!(dotted, consumer_name("app", "orders_created"));
    let long = consumer_name("app", &"x".repeat(500));
    assert!(long.len() < 80, "{long}");
}

#[test]
fn group_mapping() {
    let durable = parse(&[URL, ("durableName", "d"), ("queueGroupName", "q")]).unwrap();
    let c = config(&durable, "t", None);
    assert_eq!(c.durable_name.as_deref(), Some("d-t"));
    assert_eq!(c.filter_subject, "t");
    assert!(c.inactive_threshold.is_zero());

    let queue = parse(&[URL, ("queueGroupName", "q")]).unwrap();
    let c = config(&queue, "t", Some(Duration::from_secs(2)));
    assert_eq!((c.durable_name, c.name.as_deref()), (None, Some("q-t")));
    assert_eq!(c.inactive_threshold, NON_DURABLE_INACTIVE);
    assert_eq!(c.ack_wait, Duration::from_secs(2));

    let c = config(&parse(&[URL]).unwrap(), "t", None);
    assert_eq!((c.durable_name, c.name), (None, None));
}

#[test]
fn cloud_event_id_becomes_the_message_id() {
    assert_eq!(
        cloud_event_id(br#"{"id":"abc","specversion":"1.0","data":{"id":1}}"#).as_deref(),
        Some("abc")
    );
    assert_eq!(cloud_event_id(br#"{"id":7}"#), None);
    assert_eq!(cloud_event_id(br#"{"n":1}"#), None);
    assert_eq!(cloud_event_id(b"\x00\xff"), None);
}
