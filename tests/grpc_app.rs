//! A gRPC app (`--app-protocol grpc`) behind a sidecar: a tonic server implementing daprd's
//! `AppCallback` and `AppCallbackHealthCheck` services, invoked from HTTP and gRPC callers,
//! subscribed through `ListTopicSubscriptions`, and probed for health.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode};
use outrigger::proto::common::http_extension::Verb;
use outrigger::proto::common::{HttpExtension, InvokeRequest, InvokeResponse, StreamPayload};
use outrigger::proto::internals::service_invocation_client::ServiceInvocationClient;
use outrigger::proto::internals::{
    InternalInvokeRequest, InternalInvokeRequestStream, ListStringValue,
};
use outrigger::proto::runtime::app_callback_health_check_server::{
    AppCallbackHealthCheck, AppCallbackHealthCheckServer,
};
use outrigger::proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use outrigger::proto::runtime::topic_event_response::TopicEventResponseStatus;
use outrigger::proto::runtime::*;
use support::*;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// What the app saw of one topic event.
#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    path: String,
    id: String,
    data: Bytes,
    extensions: HashSet<String>,
}

struct GrpcApp {
    healthy: AtomicBool,
    retried: Mutex<HashSet<String>>,
    events: mpsc::UnboundedSender<Seen>,
}

/// The app as tonic serves it (a local type, so the generated traits can be implemented).
#[derive(Clone)]
struct Served(Arc<GrpcApp>);

impl std::ops::Deref for Served {
    type Target = GrpcApp;

    fn deref(&self) -> &GrpcApp {
        &self.0
    }
}

fn text(meta: &tonic::metadata::MetadataMap, key: &str) -> String {
    meta.get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl AppCallback for Served {
    async fn on_invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let meta = request.metadata().clone();
        let req = request.into_inner();
        match req.method.as_str() {
            "fail" => return Err(Status::not_found("no such order")),
            "denied" => return Err(Status::permission_denied("not you")),
            _ => {}
        }
        let ext = req.http_extension.unwrap_or_default();
        let echo = serde_json::json!({
            "method": req.method,
            "verb": Verb::try_from(ext.verb).map(|v| v.as_str_name()).unwrap_or("?"),
            "query": ext.querystring,
            "contentType": req.content_type,
            "data": String::from_utf8_lossy(&req.data.map(|d| d.value).unwrap_or_default()),
            "caller": text(&meta, "dapr-caller-app-id"),
            "custom": text(&meta, "x-custom"),
            "token": text(&meta, "dapr-api-token"),
        });
        let mut res = Response::new(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: echo.to_string().into_bytes(),
            }),
            content_type: "application/json".into(),
        });
        res.metadata_mut()
            .insert("x-app-answer", "yes".parse().expect("ascii"));
        Ok(res)
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        let sub = |topic: &str, default: &str, dlq: &str| TopicSubscription {
            pubsub_name: "pubsub".into(),
            topic: topic.into(),
            routes: (!default.is_empty()).then(|| TopicRoutes {
                rules: vec![],
                default: default.into(),
            }),
            dead_letter_topic: dlq.into(),
            ..Default::default()
        };
        Ok(Response::new(ListTopicSubscriptionsResponse {
            // `orders` last: once it delivers, every other topic is subscribed too.
            subscriptions: vec![
                sub("retry-topic", "/retry", ""),
                sub("drop-topic", "/drop", "poison"),
                sub("poison", "/poison", ""),
                sub("orders", "", ""),
            ],
        }))
    }

    async fn on_topic_event(
        &self,
        request: Request<TopicEventRequest>,
    ) -> Result<Response<TopicEventResponse>, Status> {
        let ev = request.into_inner();
        let seen = Seen {
            topic: ev.topic.clone(),
            path: ev.path.clone(),
            id: ev.id.clone(),
            data: ev.data.clone(),
            extensions: ev
                .extensions
                .map(|s| s.fields.into_keys().collect())
                .unwrap_or_default(),
        };
        let _ = self.events.send(seen);
        let status = match ev.topic.as_str() {
            "retry-topic" if self.retried.lock().unwrap().insert(ev.id) => {
                TopicEventResponseStatus::Retry
            }
            "drop-topic" => TopicEventResponseStatus::Drop,
            _ => TopicEventResponseStatus::Success,
        };
        Ok(Response::new(TopicEventResponse {
            status: status as i32,
        }))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListInputBindingsResponse>, Status> {
        Ok(Response::new(ListInputBindingsResponse::default()))
    }

    async fn on_binding_event(
        &self,
        _: Request<BindingEventRequest>,
    ) -> Result<Response<BindingEventResponse>, Status> {
        Err(Status::unimplemented("no bindings"))
    }

    async fn on_bulk_topic_event(
        &self,
        _: Request<TopicEventBulkRequest>,
    ) -> Result<Response<TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("no bulk"))
    }

    async fn on_job_event(
        &self,
        _: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        Err(Status::unimplemented("no jobs"))
    }
}

#[tonic::async_trait]
impl AppCallbackHealthCheck for Served {
    async fn health_check(&self, _: Request<()>) -> Result<Response<HealthCheckResponse>, Status> {
        if self.healthy.load(Ordering::SeqCst) {
            Ok(Response::new(HealthCheckResponse {}))
        } else {
            Err(Status::unavailable("sick"))
        }
    }
}

/// Starts the gRPC app on a free port.
async fn grpc_app() -> (u16, Arc<GrpcApp>, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Arc::new(GrpcApp {
        healthy: AtomicBool::new(true),
        retried: Mutex::default(),
        events: tx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let served = Served(app.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(served.clone()))
            .add_service(AppCallbackHealthCheckServer::new(served))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (port, app, rx)
}

const GRPC: [&str; 2] = ["--app-protocol", "grpc"];

#[tokio::test]
async fn http_caller_reaches_on_invoke_through_two_sidecars() {
    let mesh = Mesh::new();
    let (port, _app, _events) = grpc_app().await;
    let callee = mesh.sidecar("grpcapp", Some(port), &GRPC).await;
    let caller = mesh.sidecar("caller", None, &[]).await;
    ready(&callee).await;
    ready(&caller).await;

    let url = format!("{}/v1.0/invoke/grpcapp/method/echo?x=1&y=2", api(&caller));
    let res = send(
        Method::PUT,
        &url,
        &[("content-type", "text/plain"), ("x-custom", "c")],
        Body::from("hello"),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(res.headers["x-app-answer"], "yes");
    let echo = res.json();
    assert_eq!(echo["method"], "echo");
    assert_eq!(echo["verb"], "PUT");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["contentType"], "text/plain");
    assert_eq!(echo["data"], "hello");
    assert_eq!(echo["caller"], "caller");
    assert_eq!(echo["custom"], "c");

    let fail = format!("{}/v1.0/invoke/grpcapp/method/fail", api(&caller));
    let res = send(Method::POST, &fail, &[], Body::empty()).await.unwrap();
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.json(),
        serde_json::json!({"code": 5, "message": "no such order", "details": []})
    );
    let denied = format!("{}/v1.0/invoke/grpcapp/method/denied", api(&caller));
    let res = send(Method::GET, &denied, &[], Body::empty())
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Self-invocation takes the local path, not the network: same answers.
    let own = format!("{}/v1.0/invoke/grpcapp/method/echo?z=3", api(&callee));
    let res = send(Method::DELETE, &own, &[], Body::empty())
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.json()["verb"], "DELETE");
    assert_eq!(res.json()["query"], "z=3");
    let own_fail = format!("{}/v1.0/invoke/grpcapp/method/fail", api(&callee));
    let res = send(Method::GET, &own_fail, &[], Body::empty())
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    let md = send(
        Method::GET,
        &format!("{}/v1.0/metadata", api(&callee)),
        &[],
        Body::empty(),
    )
    .await
    .unwrap()
    .json();
    assert_eq!(md["appConnectionProperties"]["protocol"], "grpc");
    caller.stop().await;
    callee.stop().await;
}

fn caller_md() -> HashMap<String, ListStringValue> {
    let mut md = HashMap::new();
    md.insert(
        "dapr-caller-app-id".to_owned(),
        ListStringValue {
            values: vec!["grpc-caller".into()],
        },
    );
    md
}

fn grpc_request(method: &str, data: &[u8]) -> InternalInvokeRequest {
    InternalInvokeRequest {
        ver: 1,
        metadata: caller_md(),
        message: Some(InvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.to_vec(),
            }),
            content_type: "application/octet-stream".into(),
            // A gRPC caller: no HTTP verb.
            http_extension: None,
        }),
        actor: None,
    }
}

#[tokio::test]
async fn grpc_caller_gets_the_app_status_code() {
    let mesh = Mesh::new();
    let (port, _app, _events) = grpc_app().await;
    let mut options = mesh.options("grpcapp", Some(port), &GRPC);
    options.app_api_token = Some("app-secret".into());
    let callee = outrigger::sidecar::Sidecar::start(options)
        .await
        .expect("sidecar starts");
    ready(&callee).await;
    let mut client = ServiceInvocationClient::connect(format!("http://{}", callee.internal_addr))
        .await
        .unwrap();

    let res = client
        .call_local(grpc_request("echo", b"unary"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.status.as_ref().unwrap().code, 0);
    let msg = res.message.unwrap();
    assert_eq!(msg.content_type, "application/json");
    let echo: serde_json::Value = serde_json::from_slice(&msg.data.unwrap().value).unwrap();
    assert_eq!(echo["data"], "unary");
    assert_eq!(echo["verb"], "NONE");
    assert_eq!(echo["caller"], "grpc-caller");
    assert_eq!(echo["token"], "app-secret", "APP_API_TOKEN as metadata");
    assert!(
        res.headers.contains_key("x-app-answer"),
        "{:?}",
        res.headers
    );

    let res = client
        .call_local(grpc_request("fail", b""))
        .await
        .unwrap()
        .into_inner();
    let status = res.status.unwrap();
    assert_eq!(status.code, tonic::Code::NotFound as i32);
    assert_eq!(status.message, "no such order");

    // The streaming RPC, as daprd callers use first: a head, then the body in chunks.
    let mut head = grpc_request("echo", b"");
    head.message.as_mut().unwrap().data = None;
    head.message.as_mut().unwrap().http_extension = Some(HttpExtension {
        verb: Verb::Post as i32,
        querystring: "q=1".into(),
    });
    let messages = vec![
        InternalInvokeRequestStream {
            request: Some(head),
            payload: Some(StreamPayload {
                data: Bytes::from_static(b"str"),
                seq: 0,
            }),
        },
        InternalInvokeRequestStream {
            request: None,
            payload: Some(StreamPayload {
                data: Bytes::from_static(b"eamed"),
                seq: 1,
            }),
        },
    ];
    let mut stream = client
        .call_local_stream(futures_util::stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let response = first.response.unwrap();
    assert_eq!(response.status.unwrap().code, 0);
    let mut body = Vec::new();
    let mut next = first.payload;
    let mut seq = 0;
    loop {
        if let Some(p) = next.take() {
            assert_eq!(p.seq, seq);
            seq += 1;
            body.extend_from_slice(&p.data);
        }
        match stream.message().await.unwrap() {
            Some(m) => next = m.payload,
            None => break,
        }
    }
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["data"], "streamed");
    assert_eq!(echo["verb"], "POST");
    assert_eq!(echo["query"], "q=1");
    callee.stop().await;
}

async fn publish(sidecar: &outrigger::sidecar::Sidecar, topic: &str, body: &str) {
    let url = format!("{}/v1.0/publish/pubsub/{topic}", api(sidecar));
    let res = send(
        Method::POST,
        &url,
        &[("content-type", "application/json")],
        Body::from(body.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{:?}", res.body);
}

/// Waits for the next event the app saw on `topic`, skipping others.
async fn next_on(events: &mut mpsc::UnboundedReceiver<Seen>, topic: &str) -> Seen {
    let wait = async {
        loop {
            let seen = events.recv().await.expect("app running");
            if seen.topic == topic {
                return seen;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("no event on {topic}"))
}

#[tokio::test]
async fn subscriptions_come_from_the_app_and_statuses_decide_delivery() {
    let mesh = Mesh::new();
    let (port, _app, mut events) = grpc_app().await;
    let sidecar = mesh.sidecar("grpcsub", Some(port), &GRPC).await;
    ready(&sidecar).await;

    // Subscriptions start once the app is reachable: publish until the first delivery.
    let first = loop {
        publish(&sidecar, "orders", r#"{"n":1}"#).await;
        match tokio::time::timeout(std::time::Duration::from_millis(200), events.recv()).await {
            Ok(Some(seen)) => break seen,
            Ok(None) => panic!("app stopped"),
            Err(_) => continue,
        }
    };
    assert_eq!(first.topic, "orders");
    assert_eq!(
        first.path, "",
        "no routes: the default rule with an empty path"
    );
    assert_eq!(&first.data[..], br#"{"n":1}"#);
    for key in ["topic", "pubsubname", "traceparent"] {
        assert!(first.extensions.contains(key), "{:?}", first.extensions);
    }
    assert!(!first.extensions.contains("data") && !first.extensions.contains("id"));

    publish(&sidecar, "retry-topic", r#"{"n":2}"#).await;
    let once = next_on(&mut events, "retry-topic").await;
    assert_eq!(once.path, "/retry");
    let again = next_on(&mut events, "retry-topic").await;
    assert_eq!(again.id, once.id, "RETRY redelivers the same event");

    publish(&sidecar, "drop-topic", r#"{"n":3}"#).await;
    let dropped = next_on(&mut events, "drop-topic").await;
    let dead = next_on(&mut events, "poison").await;
    assert_eq!(dead.id, dropped.id, "DROP dead-letters the original event");
    assert_eq!(dead.path, "/poison");
    assert_eq!(&dead.data[..], br#"{"n":3}"#);
    sidecar.stop().await;
}

#[tokio::test]
async fn failing_health_check_makes_the_app_unhealthy() {
    let mesh = Mesh::new();
    let (port, app, _events) = grpc_app().await;
    let sidecar = mesh
        .sidecar(
            "grpchealth",
            Some(port),
            &[
                "--app-protocol",
                "grpc",
                "--enable-app-health-check",
                "--app-health-probe-interval",
                "1",
                "--app-health-threshold",
                "1",
            ],
        )
        .await;
    ready(&sidecar).await;
    let url = format!("{}/v1.0/invoke/grpchealth/method/echo", api(&sidecar));
    let res = send(Method::GET, &url, &[], Body::empty()).await.unwrap();
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);

    app.healthy.store(false, Ordering::SeqCst);
    let refusal = eventually("the probe marks the app unhealthy", || {
        let url = url.clone();
        async move {
            let res = send(Method::GET, &url, &[], Body::empty()).await.ok()?;
            (res.status == StatusCode::INTERNAL_SERVER_ERROR).then_some(res)
        }
    })
    .await;
    let body = refusal.json();
    assert_eq!(body["errorCode"], "ERR_DIRECT_INVOKE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("app is not in a healthy state"),
        "{body}"
    );

    app.healthy.store(true, Ordering::SeqCst);
    eventually("the probe marks the app healthy again", || {
        let url = url.clone();
        async move {
            let res = send(Method::GET, &url, &[], Body::empty()).await.ok()?;
            (res.status == StatusCode::OK).then_some(())
        }
    })
    .await;
    sidecar.stop().await;
}
