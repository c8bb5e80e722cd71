//! Dapr's gRPC API on a whole sidecar, called with tonic clients generated from our protos:
//! every served RPC, daprd's status codes and rich error details, the API token, the message
//! size limit, reflection, unserved RPCs and metrics. Streaming subscriptions are in
//! `grpc_subscribe.rs`.

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use http::Method;
use outrigger::proto::common::{
    http_extension::Verb, Etag, HttpExtension, InvokeRequest, StateItem,
};
use outrigger::proto::runtime::{
    BulkPublishRequest, BulkPublishRequestEntry, DeleteBulkStateRequest, DeleteStateRequest,
    ExecuteStateTransactionRequest, GetBulkStateRequest, GetMetadataRequest, GetStateRequest,
    InvokeServiceRequest, PublishEventRequest, QueryStateRequest, SaveStateRequest,
    SetMetadataRequest, ShutdownRequest, TransactionalStateOperation,
};
use support::grpc::{self, channel, component, next_cloud_event, tap, Fixture};
use support::{send, write, Api, TestApp, DEADLINE};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

fn resources() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "state.yaml",
        &component("statestore", "state.in-memory", " []"),
    );
    write(
        dir.path(),
        "pubsub.yaml",
        &component("pubsub", "pubsub.in-memory", " []"),
    );
    write(
        dir.path(),
        "scoped.yaml",
        &component(
            "scoped",
            "pubsub.in-memory",
            "\n  - name: publishingScopes\n    value: \"alpha=ok\"\n  - name: subscriptionScopes\n    value: \"alpha=ok\"",
        ),
    );
    dir
}

async fn start(extra: &[&str], token: Option<&str>, app_port: Option<u16>) -> Fixture {
    grpc::start(resources(), extra, token, app_port).await
}

fn item(key: &str, value: &str, etag: Option<&str>) -> StateItem {
    StateItem {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        etag: etag.map(|e| Etag { value: e.into() }),
        ..Default::default()
    }
}

fn get(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: "statestore".into(),
        key: key.into(),
        ..Default::default()
    }
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

#[tokio::test]
async fn state_with_etags() {
    let f = start(&[], None, None).await;
    let mut c = f.client.clone();
    let save = |items| SaveStateRequest {
        store_name: "statestore".into(),
        states: items,
    };
    c.save_state(save(vec![item("k", "v1", None)]))
        .await
        .unwrap();
    let got = c.get_state(get("k")).await.unwrap().into_inner();
    assert_eq!(got.data, Bytes::from_static(b"v1"));
    assert!(!got.etag.is_empty());

    let err = c
        .save_state(save(vec![item("k", "v2", Some("not-the-etag"))]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(reason(&err), "ERR_STATE_SAVE");
    assert!(err
        .message()
        .starts_with("failed saving state in state store statestore"));

    c.save_state(save(vec![item("k", "v2", Some(&got.etag))]))
        .await
        .unwrap();
    let now = c.get_state(get("k")).await.unwrap().into_inner();
    assert_eq!(now.data, Bytes::from_static(b"v2"));
    assert_ne!(now.etag, got.etag);

    let delete = |etag: &str| DeleteStateRequest {
        store_name: "statestore".into(),
        key: "k".into(),
        etag: Some(Etag { value: etag.into() }),
        ..Default::default()
    };
    let err = c.delete_state(delete(&got.etag)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(reason(&err), "ERR_STATE_DELETE");
    c.delete_state(delete(&now.etag)).await.unwrap();

    // A missing key is OK with nothing in it.
    let gone = c.get_state(get("k")).await.unwrap().into_inner();
    assert!(gone.data.is_empty() && gone.etag.is_empty());

    let err = c
        .save_state(save(vec![item("", "v", None)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    f.sidecar.stop().await;
}

#[tokio::test]
async fn bulk_transactions_and_query() {
    let f = start(&[], None, None).await;
    let mut c = f.client.clone();
    c.save_state(SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![
            item("a", r#"{"n":1}"#, None),
            item("b", r#"{"n":2}"#, None),
            item("c", r#"{"n":3}"#, None),
        ],
    })
    .await
    .unwrap();
    let bulk = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "statestore".into(),
            keys: vec!["a".into(), "b".into(), "missing".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let by_key: HashMap<_, _> = bulk.items.iter().map(|i| (i.key.as_str(), i)).collect();
    assert_eq!(by_key["a"].data, Bytes::from_static(br#"{"n":1}"#));
    assert!(!by_key["b"].etag.is_empty());
    assert!(by_key["missing"].data.is_empty() && by_key["missing"].error.is_empty());

    let op = |kind: &str, key: &str, value: &str| TransactionalStateOperation {
        operation_type: kind.into(),
        request: Some(item(key, value, None)),
    };
    c.execute_state_transaction(ExecuteStateTransactionRequest {
        store_name: "statestore".into(),
        operations: vec![op("upsert", "d", r#"{"n":4}"#), op("delete", "a", "")],
        metadata: HashMap::new(),
    })
    .await
    .unwrap();
    assert!(c
        .get_state(get("a"))
        .await
        .unwrap()
        .into_inner()
        .data
        .is_empty());
    assert_eq!(
        c.get_state(get("d")).await.unwrap().into_inner().data,
        Bytes::from_static(br#"{"n":4}"#)
    );
    let err = c
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "statestore".into(),
            operations: vec![op("merge", "d", "{}")],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert_eq!(err.message(), "operation type merge not supported");

    let query = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "statestore".into(),
            query: r#"{"filter":{"EQ":{"n":3}}}"#.into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(query.results.len(), 1, "{query:?}");
    assert_eq!(query.results[0].key, "c");
    let err = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "statestore".into(),
            query: "not json".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(reason(&err), "DAPR_STATE_QUERY_FAILED");

    c.delete_bulk_state(DeleteBulkStateRequest {
        store_name: "statestore".into(),
        states: vec![item("b", "", None), item("c", "", None)],
    })
    .await
    .unwrap();
    for key in ["b", "c"] {
        assert!(c
            .get_state(get(key))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty());
    }
    f.sidecar.stop().await;
}

#[tokio::test]
async fn unknown_store_carries_daprd_details() {
    let f = start(&[], None, None).await;
    let mut c = f.client.clone();
    let err = c
        .get_state(GetStateRequest {
            store_name: "nope".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "state store nope is not found");
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "DAPR_STATE_NOT_FOUND");
    assert_eq!(info.domain, "dapr.io");
    assert_eq!(info.metadata["appID"], "alpha");

    let err = c.get_state(get("a||b")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "DAPR_STATE_ILLEGAL_KEY");
    let resource = err.get_details_resource_info().expect("ResourceInfo");
    assert_eq!(
        (
            resource.resource_type.as_str(),
            resource.resource_name.as_str()
        ),
        ("state", "statestore")
    );
    assert!(err.get_details_bad_request().is_some());
    f.sidecar.stop().await;
}

#[tokio::test]
async fn publish_and_bulk_publish() {
    let f = start(&[], None, None).await;
    let mut c = f.client.clone();
    let (sub, mut rx) = tap(&f.sidecar, "pubsub", "orders").await;
    let mut req = Request::new(PublishEventRequest {
        pubsub_name: "pubsub".into(),
        topic: "orders".into(),
        data: Bytes::from_static(br#"{"id":7}"#),
        data_content_type: "application/json".into(),
        metadata: HashMap::new(),
    });
    req.metadata_mut().insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    c.publish_event(req).await.unwrap();
    let e = next_cloud_event(&mut rx).await;
    assert_eq!(e["data"], serde_json::json!({"id": 7}));
    assert_eq!(e["source"], "alpha");
    assert!(e["traceparent"]
        .as_str()
        .unwrap()
        .contains("0af7651916cd43dd8448eb211c80319c"));

    let entry = |id: &str, event: &str| BulkPublishRequestEntry {
        entry_id: id.into(),
        event: Bytes::from(event.to_owned()),
        content_type: "text/plain".into(),
        metadata: HashMap::new(),
    };
    let bulk = |entries| BulkPublishRequest {
        pubsub_name: "pubsub".into(),
        topic: "orders".into(),
        entries,
        metadata: HashMap::new(),
    };
    let res = c
        .bulk_publish_event(bulk(vec![entry("1", "one"), entry("2", "two")]))
        .await
        .unwrap()
        .into_inner();
    assert!(res.failed_entries.is_empty());
    let res = c
        .bulk_publish_event_alpha1(bulk(vec![entry("3", "three")]))
        .await
        .unwrap()
        .into_inner();
    assert!(res.failed_entries.is_empty());
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            next_cloud_event(&mut rx).await["data"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    got.sort();
    assert_eq!(got, ["one", "three", "two"]);
    let err = c
        .bulk_publish_event(bulk(vec![entry("1", "x"), entry("1", "y")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "DAPR_PUBSUB_MARSHAL_EVENTS");

    let publish = |pubsub: &str, topic: &str| PublishEventRequest {
        pubsub_name: pubsub.into(),
        topic: topic.into(),
        data: Bytes::from_static(b"x"),
        ..Default::default()
    };
    let err = c.publish_event(publish("nope", "t")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "DAPR_PUBSUB_NOT_FOUND");
    let err = c
        .publish_event(publish("scoped", "secret"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "DAPR_PUBSUB_FORBIDDEN");
    assert_eq!(
        err.message(),
        "topic secret is not allowed for app id alpha"
    );
    let err = c.publish_event(publish("pubsub", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "DAPR_PUBSUB_TOPIC_NAME_EMPTY");
    sub.stop().await;
    f.sidecar.stop().await;
}

#[tokio::test]
async fn invoke_service_calls_an_http_app() {
    let app = TestApp::start().await;
    let f = start(&[], None, Some(app.port())).await;
    support::ready(&f.sidecar).await;
    let mut c = f.client.clone();
    let invoke = |method: &str, verb: Verb, query: &str| InvokeServiceRequest {
        id: "alpha".into(),
        message: Some(InvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"hello".to_vec(),
            }),
            content_type: "text/plain".into(),
            http_extension: Some(HttpExtension {
                verb: verb.into(),
                querystring: query.into(),
            }),
        }),
    };
    let mut req = Request::new(invoke("orders/7", Verb::Put, "a=1&b=2"));
    req.metadata_mut()
        .insert("x-caller", "yes".parse().unwrap());
    let res = c.invoke_service(req).await.unwrap();
    assert_eq!(res.metadata().get("dapr-http-status").unwrap(), "200");
    let res = res.into_inner();
    assert_eq!(res.content_type, "application/json");
    let echo: serde_json::Value = serde_json::from_slice(&res.data.unwrap().value).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "a=1&b=2");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["headers"]["content-type"][0], "text/plain");
    assert_eq!(echo["headers"]["x-caller"][0], "yes");

    // No verb is a POST, as daprd sends it.
    let res = c
        .invoke_service(invoke("x", Verb::None, ""))
        .await
        .unwrap()
        .into_inner();
    let echo: serde_json::Value = serde_json::from_slice(&res.data.unwrap().value).unwrap();
    assert_eq!(echo["method"], "POST");

    let err = c
        .invoke_service(invoke("status/404", Verb::Get, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.metadata().get("dapr-http-status").unwrap(), "404");
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["http.code"], "404");
    assert_eq!(info.metadata["http.error_message"], "status 404 Not Found");

    let err = c
        .invoke_service(InvokeServiceRequest {
            id: "a.b.c".into(),
            message: Some(InvokeRequest::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().starts_with("failed to invoke, id: a.b.c"));
    f.sidecar.stop().await;
}

#[tokio::test]
async fn metadata_metrics_and_shutdown() {
    let f = start(&[], None, None).await;
    let mut c = f.client.clone();
    c.set_metadata(SetMetadataRequest {
        key: "colour".into(),
        value: "blue".into(),
    })
    .await
    .unwrap();
    let md = c
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.id, "alpha");
    assert_eq!(md.extended_metadata["colour"], "blue");
    assert!(md.extended_metadata.contains_key("daprRuntimeVersion"));
    let store = md
        .registered_components
        .iter()
        .find(|c| c.name == "statestore")
        .expect("statestore listed");
    assert_eq!(store.r#type, "state.in-memory");
    assert!(store.capabilities.iter().any(|c| c == "ETAG"));
    assert!(md.app_connection_properties.is_some());
    // The HTTP API answers from the same data.
    let http = Api::new(&f.sidecar).get("/v1.0/metadata").await.json();
    assert_eq!(http["extended"]["colour"], "blue");
    assert_eq!(
        http["components"].as_array().unwrap().len(),
        md.registered_components.len()
    );

    let metrics_url = format!("http://{}/", f.sidecar.metrics_addr.expect("metrics on"));
    let text = send(Method::GET, &metrics_url, &[], axum::body::Body::empty())
        .await
        .unwrap()
        .body;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(r#"dapr_grpc_io_server_completed_rpcs{app_id="alpha",grpc_server_method="dapr.proto.runtime.v1.Dapr/SetMetadata",grpc_server_status="OK"} 1"#),
        "{text}"
    );
    assert!(text.contains("dapr_grpc_io_server_server_latency_bucket"));

    c.shutdown(ShutdownRequest {}).await.unwrap();
    let stopped = tokio::time::timeout(DEADLINE, f.sidecar.wait()).await;
    assert!(stopped.is_ok(), "the sidecar stops after Shutdown");
}

#[tokio::test]
async fn api_token_is_enforced() {
    let f = start(&[], Some("s3cret"), None).await;
    let mut c = f.client.clone();
    let err = c.get_metadata(GetMetadataRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "missing api token in request metadata");
    let with = |token: &str| {
        let mut req = Request::new(GetMetadataRequest {});
        req.metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
        req
    };
    let err = c.get_metadata(with("wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "authentication error: api token mismatch");
    let md = c.get_metadata(with("s3cret")).await.unwrap().into_inner();
    assert_eq!(md.id, "alpha");
    f.sidecar.stop().await;
}

#[tokio::test]
async fn messages_over_max_body_size_are_refused() {
    let f = start(&["--max-body-size", "1Mi"], None, None).await;
    let mut c = f.client.clone();
    let big = "x".repeat(2 << 20);
    let err = c
        .save_state(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![item("big", &big, None)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Below the limit is fine.
    c.save_state(SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![item("small", &"x".repeat(512 << 10), None)],
    })
    .await
    .unwrap();
    f.sidecar.stop().await;
}

#[tokio::test]
async fn reflection_and_unserved_methods() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let f = start(&[], None, None).await;
    let ch = channel(&f.sidecar).await;
    let mut reflection = ServerReflectionClient::new(ch.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected answer {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"dapr.proto.runtime.v1.Dapr"), "{names:?}");
    assert!(
        !names.contains(&"dapr.proto.runtime.v1.AppCallback"),
        "{names:?}"
    );

    let mut grpc = tonic::client::Grpc::new(ch);
    let err = call(&mut grpc, "/dapr.proto.runtime.v1.Dapr/InvokeActor").await;
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.message(),
        "actors are not supported by this sidecar: /dapr.proto.runtime.v1.Dapr/InvokeActor"
    );
    // Any other service goes to the gRPC proxy, which needs to know the target app, as daprd's.
    let err = call(&mut grpc, "/acme.Orders/Get").await;
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found"
    );
    f.sidecar.stop().await;
}

/// A unary call with an empty message to any method, whatever its real types.
async fn call(grpc: &mut tonic::client::Grpc<Channel>, path: &'static str) -> Status {
    grpc.ready().await.expect("channel ready");
    grpc.unary(
        Request::new(()),
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::<(), ()>::default(),
    )
    .await
    .expect_err("not served")
}
