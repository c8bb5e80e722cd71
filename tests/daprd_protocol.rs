//! The sidecar-to-sidecar wire protocol as daprd speaks it: a tonic client built from Dapr's
//! `ServiceInvocation` proto drives our internal server the way a daprd caller does, and our
//! caller falls back to unary `CallLocal` for a peer that predates `CallLocalStream`.

mod support;

use std::collections::HashMap;
use std::pin::Pin;

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use http::{Method, StatusCode};
use outrigger::proto::common::http_extension::Verb;
use outrigger::proto::common::{HttpExtension, InvokeRequest, InvokeResponse, StreamPayload};
use outrigger::proto::internals::service_invocation_client::ServiceInvocationClient;
use outrigger::proto::internals::service_invocation_server::{
    ServiceInvocation, ServiceInvocationServer,
};
use outrigger::proto::internals::{
    InternalInvokeRequest, InternalInvokeRequestStream, InternalInvokeResponse,
    InternalInvokeResponseStream, ListStringValue, Status,
};
use outrigger::resolve::sqlite::{Registration, SqliteResolver, SqliteSettings};
use support::*;

/// daprd's chunk size for streamed bodies.
const DAPRD_CHUNK: usize = 2048;

fn md(pairs: &[(&str, &str)]) -> HashMap<String, ListStringValue> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                ListStringValue {
                    values: vec![(*v).to_owned()],
                },
            )
        })
        .collect()
}

/// The request head a daprd caller sends for `POST /v1.0/invoke/beta/method/orders/7?x=1`.
fn daprd_head() -> InternalInvokeRequest {
    InternalInvokeRequest {
        ver: 1,
        metadata: md(&[
            ("Content-Type", "application/json"),
            ("X-Custom", "from-daprd"),
            ("dapr-caller-app-id", "daprd-app"),
            ("dapr-callee-app-id", "beta"),
            ("dapr-caller-namespace", "default"),
            ("destination-app-id", "beta"),
            ("grpc-trace-bin", "AAA"),
        ]),
        message: Some(InvokeRequest {
            method: "orders/7".into(),
            data: None,
            content_type: "application/json".into(),
            http_extension: Some(HttpExtension {
                verb: Verb::Post as i32,
                querystring: "x=1".into(),
            }),
        }),
        actor: None,
    }
}

async fn beta() -> (Mesh, TestApp, outrigger::sidecar::Sidecar) {
    let mesh = Mesh::new();
    let app = TestApp::start().await;
    let beta = mesh.sidecar("beta", Some(app.port()), &[]).await;
    ready(&beta).await;
    (mesh, app, beta)
}

async fn client(
    sidecar: &outrigger::sidecar::Sidecar,
) -> ServiceInvocationClient<tonic::transport::Channel> {
    ServiceInvocationClient::connect(format!("http://{}", sidecar.internal_addr))
        .await
        .expect("connect internal port")
}

#[tokio::test]
async fn daprd_style_stream_with_2k_chunks() {
    let (_mesh, _app, beta) = beta().await;
    let body: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let body_json = serde_json::to_vec(&String::from_utf8(body).unwrap()).unwrap();
    let mut messages = vec![InternalInvokeRequestStream {
        request: Some(daprd_head()),
        payload: None,
    }];
    for (seq, chunk) in body_json.chunks(DAPRD_CHUNK).enumerate() {
        messages.push(InternalInvokeRequestStream {
            request: None,
            payload: Some(StreamPayload {
                data: Bytes::copy_from_slice(chunk),
                seq: seq as u64,
            }),
        });
    }
    let mut responses = client(&beta)
        .await
        .call_local_stream(futures_util::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();

    let first = responses.message().await.unwrap().expect("a first message");
    let head = first
        .response
        .expect("the first message carries the response");
    assert_eq!(head.status.as_ref().unwrap().code, 200);
    assert_eq!(
        head.message.as_ref().unwrap().content_type,
        "application/json"
    );
    assert_eq!(head.headers["X-Echo"].values, vec!["1"]);
    let mut data = Vec::new();
    let mut expected_seq = 0;
    for payload in first.payload.into_iter() {
        assert_eq!(payload.seq, expected_seq);
        expected_seq += 1;
        data.extend_from_slice(&payload.data);
    }
    while let Some(msg) = responses.message().await.unwrap() {
        assert!(
            msg.response.is_none(),
            "only the first message carries the response"
        );
        let payload = msg.payload.expect("later messages carry payloads");
        assert_eq!(payload.seq, expected_seq);
        expected_seq += 1;
        data.extend_from_slice(&payload.data);
    }
    let echo: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/orders/7");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body"].as_str().unwrap().as_bytes(), &body_json[..]);
    let h = &echo["headers"];
    assert_eq!(h["x-custom"][0], "from-daprd");
    assert_eq!(h["dapr-caller-app-id"][0], "daprd-app");
    assert_eq!(h["content-type"][0], "application/json");
    assert!(h.get("destination-app-id").is_none());
    assert!(h.get("grpc-trace-bin").is_none());
    beta.stop().await;
}

#[tokio::test]
async fn unary_call_local() {
    let (_mesh, _app, beta) = beta().await;
    let mut head = daprd_head();
    head.message.as_mut().unwrap().data = Some(prost_types::Any {
        type_url: String::new(),
        value: b"\"hi\"".to_vec(),
    });
    let res = client(&beta)
        .await
        .call_local(head)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.status.unwrap().code, 200);
    let echo: serde_json::Value =
        serde_json::from_slice(&res.message.unwrap().data.unwrap().value).unwrap();
    assert_eq!(echo["body"], "\"hi\"");
    assert_eq!(echo["path"], "/orders/7");
    beta.stop().await;
}

#[tokio::test]
async fn a_gap_in_sequence_numbers_fails_the_call() {
    let (_mesh, _app, beta) = beta().await;
    let messages = vec![
        InternalInvokeRequestStream {
            request: Some(daprd_head()),
            payload: Some(StreamPayload {
                data: Bytes::from_static(b"\"a"),
                seq: 0,
            }),
        },
        InternalInvokeRequestStream {
            request: None,
            payload: Some(StreamPayload {
                data: Bytes::from_static(b"b\""),
                seq: 2,
            }),
        },
    ];
    let result = client(&beta)
        .await
        .call_local_stream(futures_util::stream::iter(messages))
        .await;
    let failed = match result {
        Err(_) => true,
        Ok(res) => {
            let mut stream = res.into_inner();
            let mut failed = false;
            loop {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        if let Some(status) = msg.response.and_then(|r| r.status) {
                            failed |= status.code >= 400;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            failed
        }
    };
    assert!(
        failed,
        "a body with a missing chunk must not be delivered as complete"
    );
    beta.stop().await;
}

/// A peer like daprd before 1.11: unary `CallLocal` only.
struct LegacyPeer;

#[tonic::async_trait]
impl ServiceInvocation for LegacyPeer {
    async fn call_actor(
        &self,
        _: tonic::Request<InternalInvokeRequest>,
    ) -> Result<tonic::Response<InternalInvokeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no actors"))
    }

    async fn call_local(
        &self,
        req: tonic::Request<InternalInvokeRequest>,
    ) -> Result<tonic::Response<InternalInvokeResponse>, tonic::Status> {
        let req = req.into_inner();
        let message = req.message.unwrap_or_default();
        let body = message.data.map(|d| d.value).unwrap_or_default();
        let reply = format!("legacy got {} bytes for {}", body.len(), message.method);
        Ok(tonic::Response::new(InternalInvokeResponse {
            status: Some(Status {
                code: 202,
                message: String::new(),
                details: vec![],
            }),
            headers: md(&[("X-Legacy", "yes")]),
            trailers: HashMap::new(),
            message: Some(InvokeResponse {
                data: Some(prost_types::Any {
                    type_url: String::new(),
                    value: reply.into_bytes(),
                }),
                content_type: "text/plain".into(),
            }),
        }))
    }

    type CallLocalStreamStream =
        Pin<Box<dyn Stream<Item = Result<InternalInvokeResponseStream, tonic::Status>> + Send>>;

    async fn call_local_stream(
        &self,
        _: tonic::Request<tonic::Streaming<InternalInvokeRequestStream>>,
    ) -> Result<tonic::Response<Self::CallLocalStreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "unknown method CallLocalStream",
        ))
    }
}

#[tokio::test]
async fn falls_back_to_unary_for_peers_without_streaming() {
    let mesh = Mesh::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let legacy_addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ServiceInvocationServer::new(LegacyPeer))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut settings = std::collections::BTreeMap::new();
    settings.insert(
        "connectionString".to_owned(),
        mesh.db_path().display().to_string(),
    );
    let registration = SqliteResolver::start(
        SqliteSettings::from_configuration(&settings).unwrap(),
        Registration {
            app_id: "legacy".into(),
            namespace: "default".into(),
            address: legacy_addr.to_string(),
        },
    )
    .await
    .unwrap();

    let app = TestApp::start().await;
    let alpha = mesh.sidecar("alpha", Some(app.port()), &[]).await;
    for body in [
        "first call, streaming is tried",
        "second call, unary straight away",
    ] {
        let res = send(
            Method::POST,
            &format!("{}/v1.0/invoke/legacy/method/old", api(&alpha)),
            &[],
            Body::from(body),
        )
        .await
        .unwrap();
        assert_eq!(res.status, StatusCode::ACCEPTED);
        assert_eq!(res.headers["x-legacy"], "yes");
        assert_eq!(res.headers["content-type"], "text/plain");
        assert_eq!(res.body, format!("legacy got {} bytes for old", body.len()));
    }
    let chunked = Body::from_stream(pattern_stream(300_000));
    let res = send(
        Method::POST,
        &format!("{}/v1.0/invoke/legacy/method/big", api(&alpha)),
        &[],
        chunked,
    )
    .await
    .unwrap();
    assert_eq!(res.body, "legacy got 300000 bytes for big");
    registration.deregister().await.unwrap();
    alpha.stop().await;
}
