//! Transparent gRPC proxying through two sidecars: a tonic client calls the caller sidecar's
//! gRPC port with `dapr-app-id`, the callee sidecar hands the call to a tonic app. Every
//! streaming kind, metadata both ways, trailers, deadlines, cancellation and large messages.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use outrigger::sidecar::Sidecar;
use support::{eventually, send, Mesh};
use tokio::net::TcpListener;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

pub mod echo {
    tonic::include_proto!("outrigger.echo");
}

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::Msg;

/// Large enough for the biggest test message; the sidecars themselves never decode.
const MAX_MESSAGE: usize = 16 << 20;

/// What the test app observed.
#[derive(Default)]
struct Seen {
    /// Metadata of the last call that reached the app.
    metadata: Mutex<Option<MetadataMap>>,
    /// Slow calls that started, and those whose handler was dropped before answering.
    slow_started: AtomicUsize,
    slow_dropped: AtomicUsize,
}

impl Seen {
    fn last(&self) -> MetadataMap {
        self.metadata
            .lock()
            .unwrap()
            .clone()
            .expect("a call reached the app")
    }
}

/// Counts a slow handler that was dropped (cancelled) rather than finished.
struct DropGuard {
    seen: Arc<Seen>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.slow_dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Clone)]
struct App {
    seen: Arc<Seen>,
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

fn reply<T>(message: T) -> Response<T> {
    let mut res = Response::new(message);
    res.metadata_mut()
        .insert("x-reply", MetadataValue::from_static("from-app"));
    res
}

#[tonic::async_trait]
impl Echo for App {
    async fn unary(&self, request: Request<Msg>) -> Result<Response<Msg>, Status> {
        *self.seen.metadata.lock().unwrap() = Some(request.metadata().clone());
        let msg = request.into_inner();
        if msg.delay_ms > 0 {
            self.seen.slow_started.fetch_add(1, Ordering::SeqCst);
            let mut guard = DropGuard {
                seen: self.seen.clone(),
                finished: false,
            };
            // A slow app: the caller's deadline or cancellation is what ends the wait.
            tokio::time::sleep(Duration::from_millis(msg.delay_ms)).await;
            guard.finished = true;
        }
        if msg.text == "fail" {
            let mut trailers = MetadataMap::new();
            trailers.insert("x-why", MetadataValue::from_static("asked-to"));
            return Err(Status::with_details_and_metadata(
                Code::FailedPrecondition,
                "failing as asked",
                Bytes::from_static(b"\x01\x02details"),
                trailers,
            ));
        }
        Ok(reply(msg))
    }

    async fn collect(&self, request: Request<Streaming<Msg>>) -> Result<Response<Msg>, Status> {
        *self.seen.metadata.lock().unwrap() = Some(request.metadata().clone());
        let mut stream = request.into_inner();
        let mut texts = Vec::new();
        let mut bytes = 0;
        while let Some(msg) = stream.message().await? {
            texts.push(msg.text);
            bytes += msg.data.len();
        }
        Ok(reply(Msg {
            text: format!("{} ({bytes} bytes)", texts.join(",")),
            ..Msg::default()
        }))
    }

    type RepeatStream = MsgStream;

    async fn repeat(&self, request: Request<Msg>) -> Result<Response<MsgStream>, Status> {
        *self.seen.metadata.lock().unwrap() = Some(request.metadata().clone());
        let msg = request.into_inner();
        let mut items: Vec<Result<Msg, Status>> = (0..msg.count)
            .map(|i| {
                Ok(Msg {
                    text: format!("{}-{i}", msg.text),
                    ..Msg::default()
                })
            })
            .collect();
        if msg.text == "trailers" {
            // An error after messages travels in real trailers, not a trailers-only answer.
            let mut trailers = MetadataMap::new();
            trailers.insert("x-trailer", MetadataValue::from_static("at-the-end"));
            items.push(Err(Status::with_metadata(
                Code::ResourceExhausted,
                "no more",
                trailers,
            )));
        }
        Ok(reply(Box::pin(futures_util::stream::iter(items))))
    }

    type ChatStream = MsgStream;

    async fn chat(&self, request: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
        *self.seen.metadata.lock().unwrap() = Some(request.metadata().clone());
        let answers = request.into_inner().map(|msg| {
            msg.map(|m| Msg {
                text: format!("echo:{}", m.text),
                data: m.data,
                ..Msg::default()
            })
        });
        Ok(reply(Box::pin(answers)))
    }
}

/// Serves the app over h2c without tonic's own deadline handling, so deadlines are enforced by
/// the sidecars the test is about.
async fn start_app() -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let service = EchoServer::new(App { seen: seen.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let router = tonic::service::Routes::new(service).into_axum_router();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, seen)
}

type Channel = Client<HttpConnector, tonic::body::Body>;

/// A tonic client over a plain HTTP/2 connection: unlike tonic's `Channel` it enforces no
/// deadline itself, so a `DEADLINE_EXCEEDED` it reports came from the sidecars.
fn client(sidecar: &Sidecar) -> EchoClient<Channel> {
    let addr = sidecar.grpc_addr.expect("the sidecar serves gRPC");
    let http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    EchoClient::with_origin(http, format!("http://{addr}").parse().unwrap())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn to<T>(app_id: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut()
        .insert("dapr-app-id", app_id.parse().unwrap());
    req
}

fn text(s: &str) -> Msg {
    Msg {
        text: s.to_owned(),
        ..Msg::default()
    }
}

/// A caller sidecar without an app and a callee sidecar in front of the test app.
struct Pair {
    _mesh: Mesh,
    caller: Sidecar,
    callee: Sidecar,
    seen: Arc<Seen>,
}

async fn pair() -> Pair {
    pair_with_app_token(None).await
}

async fn pair_with_app_token(token: Option<&str>) -> Pair {
    pair_with(token, &[]).await
}

/// `extra` flags go to both sidecars.
async fn pair_with(token: Option<&str>, extra: &[&str]) -> Pair {
    let mesh = Mesh::new();
    let (port, seen) = start_app().await;
    let mut flags = vec!["--app-protocol", "h2c"];
    flags.extend_from_slice(extra);
    let mut options = mesh.options("callee", Some(port), &flags);
    options.app_api_token = token.map(str::to_owned);
    let callee = Sidecar::start(options).await.expect("callee starts");
    let caller = mesh.sidecar("caller", None, extra).await;
    Pair {
        _mesh: mesh,
        caller,
        callee,
        seen,
    }
}

/// A bidi `Chat` call from the caller sidecar to the callee app: the sender of its questions
/// (`depth` may wait unsent) and the stream of its answers.
async fn open_chat(p: &Pair, depth: usize) -> (tokio::sync::mpsc::Sender<Msg>, Streaming<Msg>) {
    let (tx, rx) = tokio::sync::mpsc::channel(depth);
    let answers = client(&p.caller)
        .chat(to(
            "callee",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .expect("bidi")
        .into_inner();
    (tx, answers)
}

#[tokio::test]
async fn unary_call_carries_metadata_both_ways() {
    let p = pair_with_app_token(Some("app-secret")).await;
    let mut req = to("callee", text("hello"));
    req.metadata_mut()
        .insert("x-custom", MetadataValue::from_static("custom-value"));
    req.metadata_mut().insert_bin(
        "x-blob-bin",
        tonic::metadata::MetadataValue::from_bytes(b"\x00\xffbinary"),
    );
    req.metadata_mut().insert(
        "dapr-api-token",
        MetadataValue::from_static("callers-token"),
    );
    req.metadata_mut()
        .insert("dapr-caller-app-id", MetadataValue::from_static("spoofed"));
    let res = client(&p.caller).unary(req).await.expect("unary call");
    assert_eq!(res.get_ref().text, "hello");
    assert_eq!(res.metadata().get("x-reply").unwrap(), "from-app");

    let seen = p.seen.last();
    assert_eq!(seen.get("x-custom").unwrap(), "custom-value");
    assert_eq!(
        seen.get_bin("x-blob-bin").unwrap().to_bytes().unwrap(),
        Bytes::from_static(b"\x00\xffbinary")
    );
    assert_eq!(seen.get("dapr-caller-app-id").unwrap(), "caller");
    assert_eq!(seen.get_all("dapr-caller-app-id").iter().count(), 1);
    assert_eq!(seen.get("dapr-callee-app-id").unwrap(), "callee");
    assert_eq!(seen.get("dapr-caller-namespace").unwrap(), "default");
    // The caller's token stays with its sidecar; the app gets its own.
    assert_eq!(seen.get("dapr-api-token").unwrap(), "app-secret");

    // Both sidecars count the call as invocation.
    let caller_metrics = metrics(&p.caller).await;
    assert!(
        caller_metrics.lines().any(|l| l
            .starts_with("dapr_runtime_service_invocation_req_sent_total{")
            && l.contains("dst_app_id=\"callee\"")
            && l.contains("type=\"streaming\"")),
        "{caller_metrics}"
    );
    assert!(
        caller_metrics.lines().any(|l| l
            .starts_with("dapr_runtime_service_invocation_res_recv_total{")
            && l.contains("src_app_id=\"callee\"")
            && l.contains("status=\"0\"")),
        "{caller_metrics}"
    );
    let callee_metrics = metrics(&p.callee).await;
    assert!(
        callee_metrics.lines().any(|l| l
            .starts_with("dapr_runtime_service_invocation_res_sent_total{")
            && l.contains("dst_app_id=\"caller\"")
            && l.contains("status=\"0\"")),
        "{callee_metrics}"
    );
}

async fn metrics(sidecar: &Sidecar) -> String {
    let url = format!("http://{}/", sidecar.metrics_addr.expect("metrics on"));
    let reply = send(Method::GET, &url, &[], axum::body::Body::empty())
        .await
        .unwrap();
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test]
async fn callee_app_id_metadata_wins() {
    let p = pair().await;
    let mut req = to("nobody", text("routed"));
    req.metadata_mut()
        .insert("dapr-callee-app-id", MetadataValue::from_static("callee"));
    let res = client(&p.caller)
        .unary(req)
        .await
        .expect("routed by callee id");
    assert_eq!(res.get_ref().text, "routed");
}

#[tokio::test]
async fn errors_keep_their_status_details_and_trailers() {
    let p = pair().await;
    let err = client(&p.caller)
        .unary(to("callee", text("fail")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "failing as asked");
    assert_eq!(err.details(), b"\x01\x02details");
    assert_eq!(err.metadata().get("x-why").unwrap(), "asked-to");
}

#[tokio::test]
async fn client_streaming_call() {
    let p = pair().await;
    let messages = futures_util::stream::iter(["a", "b", "c"].map(|t| Msg {
        text: t.to_owned(),
        data: Bytes::from_static(b"12345"),
        ..Msg::default()
    }));
    let res = client(&p.caller)
        .collect(to("callee", messages))
        .await
        .expect("client streaming");
    assert_eq!(res.get_ref().text, "a,b,c (15 bytes)");
    assert_eq!(p.seen.last().get("dapr-callee-app-id").unwrap(), "callee");
}

#[tokio::test]
async fn server_streaming_call_with_trailers() {
    let p = pair().await;
    let mut client = client(&p.caller);
    let res = client
        .repeat(to(
            "callee",
            Msg {
                text: "tick".into(),
                count: 3,
                ..Msg::default()
            },
        ))
        .await
        .expect("server streaming");
    assert_eq!(res.metadata().get("x-reply").unwrap(), "from-app");
    let got: Vec<String> = res
        .into_inner()
        .map(|m| m.expect("message").text)
        .collect()
        .await;
    assert_eq!(got, ["tick-0", "tick-1", "tick-2"]);

    // A status after messages arrives in the trailers, with their metadata.
    let mut stream = client
        .repeat(to(
            "callee",
            Msg {
                text: "trailers".into(),
                count: 2,
                ..Msg::default()
            },
        ))
        .await
        .expect("server streaming")
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().text, "trailers-0");
    assert_eq!(stream.message().await.unwrap().unwrap().text, "trailers-1");
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "no more");
    assert_eq!(status.metadata().get("x-trailer").unwrap(), "at-the-end");
}

#[tokio::test]
async fn bidi_streaming_interleaves() {
    let p = pair().await;
    let (tx, mut answers) = open_chat(&p, 4).await;
    // Each answer arrives before the next question is sent: frames are not held back.
    for word in ["one", "two", "three"] {
        tx.send(text(word)).await.unwrap();
        let answer = answers.message().await.unwrap().expect("an answer");
        assert_eq!(answer.text, format!("echo:{word}"));
    }
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
}

#[tokio::test]
async fn large_streamed_messages_pass_both_ways() {
    // Over daprd's default 4 MiB message limit, so both sidecars are given more.
    let p = pair_with(None, &["--max-body-size", "16Mi"]).await;
    let big: Bytes = (0..(5 << 20) + 7)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let (tx, mut answers) = open_chat(&p, 2).await;
    tx.send(Msg {
        text: "big".into(),
        data: big.clone(),
        ..Msg::default()
    })
    .await
    .unwrap();
    let answer = answers.message().await.unwrap().expect("the big answer");
    assert_eq!(answer.text, "echo:big");
    assert_eq!(answer.data.len(), big.len());
    assert!(answer.data == big, "payload changed in transit");
}

/// daprd bounds every message of a proxied call by `--max-body-size` (4 MiB by default), in
/// both directions, with grpc-go's RESOURCE_EXHAUSTED.
#[tokio::test]
async fn messages_over_max_body_size_are_refused_both_ways() {
    let p = pair().await;
    let limit = 4 << 20;

    // A request message over the limit never reaches the app.
    let err = client(&p.caller)
        .unary(to(
            "callee",
            Msg {
                text: "too-big".into(),
                data: Bytes::from(vec![1u8; limit]),
                ..Msg::default()
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .starts_with("grpc: received message larger than max ("),
        "{err:?}"
    );
    assert!(
        p.seen.metadata.lock().unwrap().is_none(),
        "the oversized call reached the app"
    );

    // On a stream, messages within the limit pass; an answer over it ends the call. The
    // request below is exactly 4 MiB encoded (allowed); the app's echo adds five bytes.
    let (tx, mut answers) = open_chat(&p, 2).await;
    tx.send(text("small")).await.unwrap();
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(answer.text, "echo:small");
    tx.send(Msg {
        text: "x".into(),
        data: Bytes::from(vec![2u8; limit - 8]),
        ..Msg::default()
    })
    .await
    .unwrap();
    let err = answers.message().await.expect_err("the answer is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("({} vs. {limit})", limit + 5)),
        "{err:?}"
    );

    // The connection is still good for the next call.
    let answer = client(&p.caller)
        .unary(to("callee", text("after")))
        .await
        .expect("a call within the limit")
        .into_inner();
    assert_eq!(answer.text, "after");
}

#[tokio::test]
async fn deadline_expiring_in_the_callee_is_deadline_exceeded() {
    let p = pair().await;
    let mut req = to(
        "callee",
        Msg {
            delay_ms: 60_000,
            ..Msg::default()
        },
    );
    req.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = client(&p.caller).unary(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The deadline travelled to the app, and its call was cancelled.
    assert!(p.seen.last().get("grpc-timeout").is_some());
    eventually("the app's slow call to be cancelled", || async {
        (p.seen.slow_dropped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cancelled_client_call_cancels_the_callee_call() {
    let p = pair().await;
    let mut client = client(&p.caller);
    let call = tokio::spawn(async move {
        client
            .unary(to(
                "callee",
                Msg {
                    delay_ms: 60_000,
                    ..Msg::default()
                },
            ))
            .await
    });
    eventually("the slow call to reach the app", || async {
        (p.seen.slow_started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(p.seen.slow_dropped.load(Ordering::SeqCst), 0);
    call.abort();
    eventually("the app's call to be cancelled", || async {
        (p.seen.slow_dropped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn unknown_app_id_is_an_error() {
    let p = pair().await;
    let err = client(&p.caller)
        .unary(to("nobody", text("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(err.message().contains("nobody"), "{err:?}");
}

#[tokio::test]
async fn missing_app_id_is_an_error_like_daprd() {
    let p = pair().await;
    let err = client(&p.caller)
        .unary(Request::new(text("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found"
    );
}

#[tokio::test]
async fn calling_the_own_app_id_goes_straight_to_the_app() {
    let mesh = Mesh::new();
    let (port, seen) = start_app().await;
    let solo = mesh
        .sidecar("solo", Some(port), &["--app-protocol", "h2c"])
        .await;
    let res = client(&solo)
        .unary(to("solo", text("me")))
        .await
        .expect("self call");
    assert_eq!(res.get_ref().text, "me");
    let seen = seen.last();
    assert_eq!(seen.get("dapr-caller-app-id").unwrap(), "solo");
    assert_eq!(seen.get("dapr-callee-app-id").unwrap(), "solo");
}

#[tokio::test]
async fn callee_without_app_answers_internal() {
    let mesh = Mesh::new();
    let _appless = mesh.sidecar("appless", None, &[]).await;
    let caller = mesh.sidecar("caller", None, &[]).await;
    let err = client(&caller)
        .unary(to("appless", text("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
}

#[tokio::test]
async fn many_calls_share_one_connection() {
    let p = pair().await;
    // tonic's own Channel, as SDK-style clients use: one HTTP/2 connection for every call, so
    // per-connection limits of the HTTP/2 stack would show here.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", p.caller.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = EchoClient::new(channel);
    for i in 0..300 {
        let msg = Msg {
            text: format!("call-{i}"),
            data: Bytes::from(vec![7u8; 1024]),
            ..Msg::default()
        };
        let res = client
            .unary(to("callee", msg))
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(res.get_ref().text, format!("call-{i}"));
    }
}

const ONLY_CALLER: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: only-caller
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: caller
      defaultAction: allow
      trustDomain: public
      namespace: default
"#;

/// With mTLS on, a proxied call travels over TLS between the sidecars (the callee's internal
/// port accepts nothing else), the callee takes the caller's identity from its certificate, and
/// access control decides as for invocation.
#[tokio::test]
async fn proxied_calls_use_mtls_and_access_control() {
    let m = support::ca::MtlsMesh::new(Duration::from_secs(3600)).await;
    let (port, seen) = start_app().await;
    let config = m.mesh.dir.path().join("only-caller.yaml");
    std::fs::write(&config, ONLY_CALLER).unwrap();
    let config = config.display().to_string();
    let callee = m
        .sidecar(
            "callee",
            Some(port),
            &["--app-protocol", "h2c", "--config", &config],
        )
        .await;
    let caller = m.sidecar("caller", None, &[]).await;
    let other = m.sidecar("other", None, &[]).await;
    for sidecar in [&callee, &caller, &other] {
        support::ready(sidecar).await;
    }

    let res = client(&caller)
        .unary(to("callee", text("over mtls")))
        .await
        .expect("proxied over mTLS");
    assert_eq!(res.get_ref().text, "over mtls");
    assert_eq!(seen.last().get("dapr-caller-app-id").unwrap(), "caller");

    let err = client(&other)
        .unary(to("callee", text("not for you")))
        .await
        .expect_err("denied by access control");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .starts_with("access control policy has denied access to appid: other"),
        "{err:?}"
    );
}
