use super::*;

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn event(content_type: Option<&str>, body: &'static [u8], meta: &[(&str, &str)]) -> Value {
    let metadata: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let trace = TraceContext {
        traceparent: Some(PARENT.into()),
        tracestate: Some("k=v".into()),
    };
    let out = build(EventInput {
        app_id: "app",
        pubsub: "ps",
        topic: "t",
        data: &Bytes::from_static(body),
        content_type,
        metadata: &metadata,
        trace: &trace,
        broker_has_ttl: false,
    })
    .unwrap();
    assert_eq!(out.content_type.as_deref(), Some(CLOUDEVENT_JSON));
    serde_json::from_slice(&out.data).unwrap()
}

#[test]
fn new_event_has_daprd_fields() {
    let e = event(Some("application/json"), br#"{"a":1}"#, &[]);
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "data",
            "datacontenttype",
            "id",
            "pubsubname",
            "source",
            "specversion",
            "time",
            "topic",
            "traceid",
            "traceparent",
            "tracestate",
            "type"
        ]
    );
    assert_eq!(e["data"]["a"], 1);
    assert_eq!(e["source"], "app");
    assert_eq!(e["traceid"], e["traceparent"]);
    assert_eq!(e["tracestate"], "k=v");
    assert_eq!(event(None, b"hi", &[])["datacontenttype"], "text/plain");
    assert_eq!(
        event(Some("application/json"), b"{bad", &[])["data"],
        "{bad"
    );
}

#[test]
fn overrides_are_case_insensitive_and_traceparent_wins() {
    let e = event(
        Some("text/plain"),
        b"x",
        &[
            ("cloudevent.ID", "my-id"),
            ("CloudEvent.source", "src"),
            ("cloudevent.type", "ty"),
            ("cloudevent.subject", "sub"),
            ("cloudevent.traceid", "tid"),
            ("cloudevent.traceparent", "tp"),
            ("cloudevent.tracestate", "ts"),
        ],
    );
    assert_eq!(
        (&e["id"], &e["source"], &e["type"], &e["subject"]),
        (&"my-id".into(), &"src".into(), &"ty".into(), &"sub".into())
    );
    assert_eq!(
        (&e["traceid"], &e["traceparent"]),
        (&"tp".into(), &"tp".into())
    );
    assert_eq!(e["tracestate"], "ts");
}

#[test]
fn cloud_event_bodies_are_kept_with_defaults() {
    let e = event(
        Some("application/cloudevents+json; charset=utf-8"),
        br#"{"id":"1","topic":"other","data":"d","traceid":"keep"}"#,
        &[],
    );
    assert_eq!(e["topic"], "t");
    assert_eq!(e["pubsubname"], "ps");
    assert_eq!(e["source"], "Dapr");
    assert_eq!(e["traceid"], "keep");
    assert!(e.get("traceparent").is_none());
    assert_eq!(e["tracestate"], "k=v");
}

#[test]
fn binary_ttl_and_raw() {
    let e = event(
        Some("application/octet-stream"),
        &[0, 255],
        &[("ttlInSeconds", "60")],
    );
    assert_eq!(e["data_base64"], "AP8=");
    assert!(e["expiration"].as_str().unwrap().ends_with('Z'));
    let metadata = HashMap::from([("rawPayload".to_owned(), "true".to_owned())]);
    let body = Bytes::from_static(b"raw");
    let input = EventInput {
        app_id: "a",
        pubsub: "p",
        topic: "t",
        data: &body,
        content_type: Some("text/plain"),
        metadata: &metadata,
        trace: &TraceContext::default(),
        broker_has_ttl: false,
    };
    assert_eq!(build(input).unwrap().data, body);
    let bad = HashMap::from([("rawPayload".to_owned(), "maybe".to_owned())]);
    assert!(matches!(
        build(EventInput {
            metadata: &bad,
            ..input
        }),
        Err(CloudEventError::Metadata(_))
    ));
}
