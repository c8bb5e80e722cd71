//! The Dapr Rust SDK (the `dapr` crate, a client we did not write) against a whole sidecar's
//! gRPC API: state with etags, bulk and transactions, publish reaching a subscriber, invoke
//! and metadata. The SDK is pointed at the sidecar explicitly, never through the environment.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use dapr::client::{ClientOptions, Etag, StateItem, TonicClientWithAuth};
use dapr::dapr::proto::runtime::v1::{ExecuteStateTransactionRequest, TransactionalStateOperation};
use outrigger::pubsub::{Handler, SubscribeRequest};
use outrigger::sidecar::Sidecar;
use support::{write, Mesh, TestApp, DEADLINE};
use tokio::sync::mpsc;

type Client = dapr::Client<TonicClientWithAuth>;

async fn start(app_port: u16) -> (Sidecar, tempfile::TempDir, Mesh) {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let component = |name: &str, ty: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata: []\n"
        )
    };
    write(
        dir.path(),
        "state.yaml",
        &component("statestore", "state.in-memory"),
    );
    write(
        dir.path(),
        "pubsub.yaml",
        &component("pubsub", "pubsub.in-memory"),
    );
    let path = dir.path().display().to_string();
    let sidecar = mesh
        .sidecar("sdkapp", Some(app_port), &["--resources-path", &path])
        .await;
    (sidecar, dir, mesh)
}

async fn sdk(sidecar: &Sidecar) -> Client {
    let options = ClientOptions::new()
        .with_address(format!("http://{}", sidecar.grpc_addrs[0]))
        .without_api_token();
    dapr::Client::from_options(options)
        .await
        .expect("SDK connects")
}

#[tokio::test]
async fn sdk_state_publish_invoke_metadata() {
    let app = TestApp::start().await;
    let (sidecar, _dir, _mesh) = start(app.port()).await;
    support::ready(&sidecar).await;
    let mut client = sdk(&sidecar).await;

    // State with etags.
    client
        .save_state("statestore", "order", b"one".to_vec(), None, None, None)
        .await
        .expect("save");
    let got = client
        .get_state("statestore", "order", None)
        .await
        .expect("get");
    assert_eq!(got.data, b"one");
    assert!(!got.etag.is_empty());
    let stale = Some(Etag {
        value: "stale".into(),
    });
    let err = client
        .save_state("statestore", "order", b"two".to_vec(), stale, None, None)
        .await
        .expect_err("stale etag refused");
    assert!(format!("{err:?}").contains("Aborted"), "{err:?}");
    client
        .save_state(
            "statestore",
            "order",
            b"two".to_vec(),
            Some(Etag {
                value: got.etag.clone(),
            }),
            None,
            None,
        )
        .await
        .expect("save with the current etag");
    assert_eq!(
        client
            .get_state("statestore", "order", None)
            .await
            .unwrap()
            .data,
        b"two"
    );

    // Bulk save, bulk delete, and a transaction through the SDK's generated client.
    let item = |key: &str, value: &[u8]| StateItem {
        key: key.into(),
        value: value.to_vec(),
        ..Default::default()
    };
    client
        .save_bulk_states("statestore", vec![item("a", b"1"), item("b", b"2")])
        .await
        .expect("bulk save");
    assert_eq!(
        client
            .get_state("statestore", "b", None)
            .await
            .unwrap()
            .data,
        b"2"
    );
    client
        .delete_bulk_state("statestore", vec![("a", Vec::new()), ("b", Vec::new())])
        .await
        .expect("bulk delete");
    assert!(client
        .get_state("statestore", "a", None)
        .await
        .unwrap()
        .data
        .is_empty());
    client
        .delete_state("statestore", "order", None)
        .await
        .expect("delete");
    assert!(client
        .get_state("statestore", "order", None)
        .await
        .unwrap()
        .data
        .is_empty());

    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", sidecar.grpc_addrs[0]))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut raw = dapr::dapr::proto::runtime::v1::dapr_client::DaprClient::new(channel);
    raw.execute_state_transaction(ExecuteStateTransactionRequest {
        store_name: "statestore".into(),
        operations: vec![
            TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item("t1", b"x")),
            },
            TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item("t2", b"y")),
            },
        ],
        metadata: HashMap::new(),
    })
    .await
    .expect("transaction");
    assert_eq!(
        client
            .get_state("statestore", "t2", None)
            .await
            .unwrap()
            .data,
        b"y"
    );

    // Publish reaches a subscriber of the component.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |msg| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(msg);
            Ok(())
        })
    });
    let sub = sidecar
        .pubsubs
        .get("pubsub")
        .unwrap()
        .broker
        .subscribe(
            SubscribeRequest {
                topic: "orders".into(),
                metadata: HashMap::new(),
                max_concurrency: 1,
            },
            handler,
        )
        .await
        .unwrap();
    client
        .publish_event(
            "pubsub",
            "orders",
            "application/json",
            br#"{"n":1}"#.to_vec(),
            None,
        )
        .await
        .expect("publish");
    let msg = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let ce: serde_json::Value = serde_json::from_slice(&msg.data).unwrap();
    assert_eq!(ce["data"], serde_json::json!({"n": 1}));
    assert_eq!(ce["source"], "sdkapp");
    sub.stop().await;

    // Invoke the app (the sidecar calls its own app for its own id).
    let res = client
        .invoke_service(
            "sdkapp",
            "hello",
            Some(prost_types::Any {
                type_url: String::new(),
                value: b"ping".to_vec(),
            }),
        )
        .await
        .expect("invoke");
    let echo: serde_json::Value = serde_json::from_slice(&res.data.unwrap().value).unwrap();
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["body"], "ping");

    // Metadata.
    client
        .set_metadata("team", "blue")
        .await
        .expect("set metadata");
    let md = client.get_metadata().await.expect("metadata");
    assert_eq!(md.id, "sdkapp");
    assert_eq!(md.extended_metadata["team"], "blue");
    assert!(md.registered_components.iter().any(|c| c.name == "pubsub"));
    sidecar.stop().await;
}
