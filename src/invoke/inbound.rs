//! The sidecar-to-sidecar server: daprd's `ServiceInvocation` service on the internal port. It
//! turns each call into a [`Call`] for the local app and streams the app's answer back.

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response};

use super::body::{collect_limited, response_chunks, CollectError, PayloadBody};
use super::headers::{from_metadata, CALLER_APP_ID, CALLER_NAMESPACE};
use super::status::head_from_http;
use super::Call;
use crate::acl::{AccessControl, Enforcer};
use crate::app_channel::{AppChannel, AppChannelError, GrpcReply};
use crate::http_path::clean_method;
use crate::identity::transport::PeerIdentity;
use crate::identity::SpiffeId;
use crate::proto::common::http_extension::Verb;
use crate::proto::common::InvokeRequest;
use crate::proto::internals::service_invocation_server::ServiceInvocation;
use crate::proto::internals::{
    InternalInvokeRequest, InternalInvokeRequestStream, InternalInvokeResponse,
    InternalInvokeResponseStream,
};
use crate::telemetry::metrics::{SecurityMetrics, SidecarMetrics};

/// Delivers calls to the local app, whether they came from a peer or from this sidecar's own
/// API (self-invocation skips the network hop).
pub struct Inbound {
    app: Option<Arc<AppChannel>>,
    metrics: Arc<SidecarMetrics>,
    max_body: u64,
}

impl Inbound {
    pub fn new(app: Option<Arc<AppChannel>>, metrics: Arc<SidecarMetrics>, max_body: u64) -> Self {
        Self {
            app,
            metrics,
            max_body,
        }
    }

    /// Hands a call to the app; the response body streams.
    pub async fn deliver(&self, call: Call) -> Result<Response<Body>, AppChannelError> {
        let app = self.app.as_ref().ok_or(AppChannelError::NotInitialized)?;
        let caller = call
            .headers
            .get(CALLER_APP_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.metrics.invocation_request_received(&caller);
        let res = app.call(call).await;
        let status = res.as_ref().map_or(500, |r| i32::from(r.status().as_u16()));
        self.metrics.invocation_response_sent(&caller, status);
        res
    }

    /// Hands a peer's request to a gRPC app as daprd does (its `InvokeRequest` as is), and
    /// answers with the app's gRPC status; `None` when the app does not speak gRPC.
    async fn deliver_grpc(
        &self,
        request: InternalInvokeRequest,
    ) -> Option<Result<InternalInvokeResponse, AppChannelError>> {
        let app = self.app.as_ref()?;
        let grpc = app.grpc()?;
        let caller = request
            .metadata
            .get(CALLER_APP_ID)
            .and_then(|v| v.values.first())
            .cloned()
            .unwrap_or_default();
        self.metrics.invocation_request_received(&caller);
        let result = match app.admit().await {
            Ok(_permit) => grpc.invoke_internal(request).await,
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or(13, |r| r.status.code);
        self.metrics.invocation_response_sent(&caller, code);
        Some(result.map(GrpcReply::into_internal))
    }

    fn app_speaks_grpc(&self) -> bool {
        self.app.as_ref().is_some_and(|a| a.grpc().is_some())
    }
}

/// The tonic service wrapping [`Inbound`].
#[derive(Clone)]
pub struct InboundServer {
    inbound: Arc<Inbound>,
    access: Option<Enforcer>,
}

impl InboundServer {
    pub fn new(inbound: Arc<Inbound>) -> Self {
        Self {
            inbound,
            access: None,
        }
    }

    /// Checks every call from a peer against `acl` before it reaches the app.
    pub fn with_access_control(
        mut self,
        acl: Arc<AccessControl>,
        metrics: Arc<SecurityMetrics>,
    ) -> Self {
        self.access = Some(Enforcer::new(acl, metrics));
        self
    }

    /// The caller's identity comes from its certificate only. Over TLS the caller headers are
    /// overwritten with it, so the app never sees a spoofed `dapr-caller-app-id`; then access
    /// control decides.
    fn admit(
        &self,
        caller: Option<&SpiffeId>,
        request: &InternalInvokeRequest,
        call: &mut Call,
    ) -> Result<(), tonic::Status> {
        if let Some(id) = caller {
            for (name, value) in [
                (CALLER_APP_ID, &id.app_id),
                (CALLER_NAMESPACE, &id.namespace),
            ] {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| tonic::Status::invalid_argument("invalid caller identity"))?;
                call.headers.insert(name, value);
            }
        }
        self.check_access(caller, request, &call.method)
    }

    /// [`Self::admit`] for a gRPC app, which gets the peer's request as is: the identity goes
    /// into its metadata.
    fn admit_grpc(
        &self,
        caller: Option<&SpiffeId>,
        request: &mut InternalInvokeRequest,
    ) -> Result<(), tonic::Status> {
        if let Some(id) = caller {
            for (name, value) in [
                (CALLER_APP_ID, &id.app_id),
                (CALLER_NAMESPACE, &id.namespace),
            ] {
                request.metadata.insert(
                    name.to_owned(),
                    crate::proto::internals::ListStringValue {
                        values: vec![value.clone()],
                    },
                );
            }
        }
        let method = request
            .message
            .as_ref()
            .map(|m| clean_method(&m.method))
            .unwrap_or_default();
        self.check_access(caller, request, &method)
    }

    /// Access control for one call to `method` (the app's path or gRPC method).
    fn check_access(
        &self,
        caller: Option<&SpiffeId>,
        request: &InternalInvokeRequest,
        method: &str,
    ) -> Result<(), tonic::Status> {
        let Some(access) = &self.access else {
            return Ok(());
        };
        let verb = request
            .message
            .as_ref()
            .and_then(|m| m.http_extension.as_ref())
            .and_then(|e| Verb::try_from(e.verb).ok())
            .filter(|v| *v != Verb::None);
        access.admit(caller, method, verb.map(|v| v.as_str_name()))
    }
}

fn caller_of<T>(request: &tonic::Request<T>) -> Option<Arc<SpiffeId>> {
    request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.id.clone())
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<InternalInvokeResponseStream, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ServiceInvocation for InboundServer {
    async fn call_actor(
        &self,
        _request: tonic::Request<InternalInvokeRequest>,
    ) -> Result<tonic::Response<InternalInvokeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "actors are not supported by Outrigger",
        ))
    }

    async fn call_local(
        &self,
        request: tonic::Request<InternalInvokeRequest>,
    ) -> Result<tonic::Response<InternalInvokeResponse>, tonic::Status> {
        let caller = caller_of(&request);
        let mut request = request.into_inner();
        if self.inbound.app_speaks_grpc() {
            self.admit_grpc(caller.as_deref(), &mut request)?;
            return self.call_grpc_app(request).await.map(tonic::Response::new);
        }
        let data = request
            .message
            .as_mut()
            .and_then(|m| m.data.take())
            .map(|any| Bytes::from(any.value))
            .unwrap_or_default();
        let mut call = call_from_request(&mut request, Body::from(data))?;
        self.admit(caller.as_deref(), &request, &mut call)?;
        let res = self.inbound.deliver(call).await.map_err(status_from_app)?;
        let (parts, body) = res.into_parts();
        let bytes = collect_limited(body, self.inbound.max_body)
            .await
            .map_err(|e| match e {
                CollectError::TooLarge => tonic::Status::resource_exhausted(format!(
                    "app response exceeds the limit of {} bytes",
                    self.inbound.max_body
                )),
                CollectError::Read(e) => {
                    tonic::Status::internal(format!("error reading app response body: {e}"))
                }
            })?;
        let mut head = head_from_http(parts.status, &parts.headers);
        if let Some(message) = head.message.as_mut() {
            message.data = Some(prost_types::Any {
                type_url: String::new(),
                value: bytes.into(),
            });
        }
        Ok(tonic::Response::new(head))
    }

    type CallLocalStreamStream = ResponseStream;

    async fn call_local_stream(
        &self,
        request: tonic::Request<tonic::Streaming<InternalInvokeRequestStream>>,
    ) -> Result<tonic::Response<Self::CallLocalStreamStream>, tonic::Status> {
        let caller = caller_of(&request);
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            tonic::Status::invalid_argument("stream ended before the request message")
        })?;
        let mut request = first.request.ok_or_else(|| {
            tonic::Status::invalid_argument(
                "the first message of the stream must carry the request",
            )
        })?;
        let body = Body::new(PayloadBody::new(first.payload, stream));
        if self.inbound.app_speaks_grpc() {
            self.admit_grpc(caller.as_deref(), &mut request)?;
            return self.call_grpc_app_streamed(request, body).await;
        }
        let mut call = call_from_request(&mut request, body)?;
        self.admit(caller.as_deref(), &request, &mut call)?;
        let res = self.inbound.deliver(call).await.map_err(status_from_app)?;
        let (parts, body) = res.into_parts();
        let head = InternalInvokeResponseStream {
            response: Some(head_from_http(parts.status, &parts.headers)),
            payload: None,
        };
        Ok(tonic::Response::new(Box::pin(response_chunks(head, body))))
    }
}

impl InboundServer {
    async fn call_grpc_app(
        &self,
        request: InternalInvokeRequest,
    ) -> Result<InternalInvokeResponse, tonic::Status> {
        match self.inbound.deliver_grpc(request).await {
            Some(result) => result.map_err(status_from_app),
            None => Err(tonic::Status::internal("app channel is not initialized")),
        }
    }

    /// A gRPC app takes one message: the streamed body is gathered (bounded by
    /// `--max-body-size`), and the answer goes back as a head plus one payload.
    async fn call_grpc_app_streamed(
        &self,
        mut request: InternalInvokeRequest,
        body: Body,
    ) -> Result<tonic::Response<ResponseStream>, tonic::Status> {
        let data = collect_limited(body, self.inbound.max_body)
            .await
            .map_err(|e| match e {
                CollectError::TooLarge => tonic::Status::resource_exhausted(format!(
                    "request body exceeds the limit of {} bytes",
                    self.inbound.max_body
                )),
                CollectError::Read(e) => {
                    tonic::Status::invalid_argument(format!("error reading request body: {e}"))
                }
            })?;
        if let Some(message) = request.message.as_mut() {
            message.data = Some(prost_types::Any {
                type_url: String::new(),
                value: data.into(),
            });
        }
        let mut head = self.call_grpc_app(request).await?;
        let data = head
            .message
            .as_mut()
            .and_then(|m| m.data.take())
            .map(|any| Bytes::from(any.value))
            .unwrap_or_default();
        let head = InternalInvokeResponseStream {
            response: Some(head),
            payload: None,
        };
        Ok(tonic::Response::new(Box::pin(response_chunks(
            head,
            Body::from(data),
        ))))
    }
}

/// daprd's `InternalInvokeRequest` as a [`Call`] for the app.
fn call_from_request(
    request: &mut InternalInvokeRequest,
    body: Body,
) -> Result<Call, tonic::Status> {
    let default = InvokeRequest::default();
    let InvokeRequest {
        method,
        content_type,
        http_extension,
        ..
    } = request.message.as_ref().unwrap_or(&default);
    let (verb, query) = match http_extension {
        Some(ext) => (verb_to_method(ext.verb)?, ext.querystring.clone()),
        // A gRPC caller has no HTTP verb; daprd delivers such calls to HTTP apps as POST.
        None => (Method::POST, String::new()),
    };
    let mut headers = from_metadata(std::mem::take(&mut request.metadata));
    if !content_type.is_empty() {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| tonic::Status::invalid_argument("invalid content type"))?;
        headers.insert(CONTENT_TYPE, value);
    }
    Ok(Call {
        method: clean_method(method),
        verb,
        query,
        headers,
        body,
    })
}

fn verb_to_method(verb: i32) -> Result<Method, tonic::Status> {
    Ok(match Verb::try_from(verb) {
        Ok(Verb::Get) => Method::GET,
        Ok(Verb::Head) => Method::HEAD,
        Ok(Verb::Post) => Method::POST,
        Ok(Verb::Put) => Method::PUT,
        Ok(Verb::Delete) => Method::DELETE,
        Ok(Verb::Options) => Method::OPTIONS,
        Ok(Verb::Trace) => Method::TRACE,
        Ok(Verb::Patch) => Method::PATCH,
        Ok(Verb::None | Verb::Connect) | Err(_) => {
            return Err(tonic::Status::invalid_argument(format!(
                "unsupported HTTP verb {verb}"
            )))
        }
    })
}

/// The proto verb for an HTTP method; `None` for methods daprd cannot carry (CONNECT, custom).
pub fn method_to_verb(method: &Method) -> Option<Verb> {
    Some(match *method {
        Method::GET => Verb::Get,
        Method::HEAD => Verb::Head,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::DELETE => Verb::Delete,
        Method::OPTIONS => Verb::Options,
        Method::TRACE => Verb::Trace,
        Method::PATCH => Verb::Patch,
        _ => return None,
    })
}

fn status_from_app(err: AppChannelError) -> tonic::Status {
    match err {
        AppChannelError::InvalidRequest(_) => tonic::Status::invalid_argument(err.to_string()),
        _ => tonic::Status::internal(err.to_string()),
    }
}
