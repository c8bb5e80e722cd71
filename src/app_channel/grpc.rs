//! The gRPC channel to an app (`--app-protocol grpc`): daprd's `AppCallback`,
//! `AppCallbackHealthCheck` and `AppCallbackAlpha` services over one lazily (re)connected h2c
//! connection, with `APP_API_TOKEN` sent as `dapr-api-token` metadata.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Limited};
use prost::Message as _;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use super::{grpc_metadata, AppChannelError, GrpcAppSettings};
use crate::invoke::{http_status_from_grpc, method_to_verb, Call};
use crate::proto::common::{HttpExtension, InvokeRequest, InvokeResponse};
use crate::proto::internals::{InternalInvokeRequest, InternalInvokeResponse, Status};
use crate::proto::runtime::app_callback_alpha_client::AppCallbackAlphaClient;
use crate::proto::runtime::app_callback_client::AppCallbackClient;
use crate::proto::runtime::app_callback_health_check_client::AppCallbackHealthCheckClient;
use crate::proto::runtime::{
    ListTopicSubscriptionsResponse, TopicEventBulkRequest, TopicEventBulkResponse,
    TopicEventRequest, TopicEventResponse,
};

/// The gRPC status a gRPC app answered an invocation with, kept on the HTTP-shaped response
/// as an extension: HTTP callers get its mapped HTTP status, gRPC callers the code itself.
#[derive(Debug, Clone)]
pub struct AppGrpcStatus(pub Status);

/// A gRPC app's answer to `OnInvoke`, whatever it was: daprd hands a failed call's status to
/// the caller as the app's answer, not as a transport error.
#[derive(Debug)]
pub struct GrpcReply {
    pub status: Status,
    /// Response headers and trailers (tonic merges trailers into them on unary calls).
    pub metadata: MetadataMap,
    pub response: Option<InvokeResponse>,
}

impl GrpcReply {
    fn from_result(result: Result<tonic::Response<InvokeResponse>, tonic::Status>) -> Self {
        match result {
            Ok(res) => {
                let (metadata, response, _) = res.into_parts();
                Self {
                    status: Status {
                        code: 0,
                        message: String::new(),
                        details: Vec::new(),
                    },
                    metadata,
                    response: Some(response),
                }
            }
            Err(status) => Self {
                status: status_proto(&status),
                metadata: status.metadata().clone(),
                response: None,
            },
        }
    }

    /// The answer as daprd's `InternalInvokeResponse` (status code below 100: a gRPC code).
    pub fn into_internal(self) -> InternalInvokeResponse {
        InternalInvokeResponse {
            headers: grpc_metadata::to_internal(&self.metadata),
            status: Some(self.status),
            trailers: Default::default(),
            message: self.response,
        }
    }

    /// The answer as an HTTP caller sees it (daprd's HTTP API): the gRPC code mapped to an HTTP
    /// status; on success the data with its content type, otherwise the status as JSON.
    pub fn into_http(self) -> Response<Body> {
        let mut headers = grpc_metadata::to_http(&self.metadata);
        let status = http_status_from_grpc(self.status.code);
        let body = if self.status.code == 0 {
            let response = self.response.unwrap_or_default();
            set_content_type(&mut headers, &response.content_type);
            response
                .data
                .map(|any| Bytes::from(any.value))
                .unwrap_or_default()
        } else {
            set_content_type(&mut headers, "application/json");
            status_json(&self.status)
        };
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        res.extensions_mut().insert(AppGrpcStatus(self.status));
        res
    }
}

fn set_content_type(headers: &mut HeaderMap, content_type: &str) {
    headers.remove(CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        if !content_type.is_empty() {
            headers.insert(CONTENT_TYPE, v);
        }
    }
}

/// The `google.rpc.Status` of a failed call, details included (tonic carries them encoded in
/// `grpc-status-details-bin`, whose message has the same shape as daprd's internal `Status`).
fn status_proto(status: &tonic::Status) -> Status {
    let details = if status.details().is_empty() {
        Vec::new()
    } else {
        Status::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default()
    };
    Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details,
    }
}

/// daprd's protojson of the internal `Status` (unpopulated fields emitted), the body an HTTP
/// caller gets when a gRPC app fails. Details are written with their type URL and raw value:
/// without the detail types' descriptors their fields cannot be spelled out.
pub fn status_json(status: &Status) -> Bytes {
    use base64::Engine;
    let details: Vec<serde_json::Value> = status
        .details
        .iter()
        .map(|any| {
            serde_json::json!({
                "@type": any.type_url,
                "value": base64::engine::general_purpose::STANDARD.encode(&any.value),
            })
        })
        .collect();
    let json = serde_json::json!({
        "code": status.code,
        "message": status.message,
        "details": details,
    });
    Bytes::from(json.to_string())
}

/// The channel to a gRPC app.
pub struct GrpcApp {
    /// `None` when the configured address cannot form a URI; every call then fails.
    channel: Option<Channel>,
    authority: String,
    token: Option<AsciiMetadataValue>,
    max_message: usize,
    /// Which bulk RPC the app implements: [`BULK_UNKNOWN`], [`BULK_STABLE`] or [`BULK_ALPHA`].
    bulk_rpc: AtomicU8,
}

const BULK_UNKNOWN: u8 = 0;
const BULK_STABLE: u8 = 1;
const BULK_ALPHA: u8 = 2;

impl GrpcApp {
    pub(super) fn new(authority: &str, settings: &GrpcAppSettings, token: Option<&str>) -> Self {
        let channel = match Endpoint::from_shared(format!("http://{authority}")) {
            Ok(endpoint) => Some(
                endpoint
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(5))
                    .connect_lazy(),
            ),
            Err(err) => {
                tracing::error!(app = %authority, %err, "invalid app address");
                None
            }
        };
        Self {
            channel,
            authority: authority.to_owned(),
            token: token.and_then(|t| t.parse().ok()),
            max_message: settings.max_message_size,
            bulk_rpc: AtomicU8::new(BULK_UNKNOWN),
        }
    }

    fn channel(&self) -> Result<Channel, AppChannelError> {
        self.channel.clone().ok_or_else(|| {
            AppChannelError::InvalidRequest(format!("app address {}", self.authority))
        })
    }

    fn callback(&self) -> Result<AppCallbackClient<Channel>, AppChannelError> {
        Ok(AppCallbackClient::new(self.channel()?)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message))
    }

    /// A request with `metadata` and the app token.
    fn request<T>(&self, metadata: MetadataMap, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::from_parts(metadata, Default::default(), message);
        if let Some(token) = &self.token {
            req.metadata_mut().insert("dapr-api-token", token.clone());
        }
        req
    }

    /// `OnInvoke` with `message` and `metadata` as they are.
    pub async fn on_invoke(
        &self,
        message: InvokeRequest,
        metadata: MetadataMap,
    ) -> Result<GrpcReply, AppChannelError> {
        let result = self
            .callback()?
            .on_invoke(self.request(metadata, message))
            .await;
        Ok(GrpcReply::from_result(result))
    }

    /// A peer's (or a gRPC caller's) request for the app, as daprd forwards it: its
    /// `InvokeRequest` untouched, its metadata as gRPC metadata.
    pub async fn invoke_internal(
        &self,
        request: InternalInvokeRequest,
    ) -> Result<GrpcReply, AppChannelError> {
        let metadata = grpc_metadata::from_internal(&request.metadata);
        self.on_invoke(request.message.unwrap_or_default(), metadata)
            .await
    }

    /// A [`Call`] (HTTP-shaped, e.g. self-invocation from the HTTP API) as `OnInvoke`, with
    /// `http_extension` carrying its verb and query, and the answer shaped as HTTP.
    pub(super) async fn call(&self, call: Call) -> Result<Response<Body>, AppChannelError> {
        let content_type = call
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let metadata = grpc_metadata::from_headers(&call.headers);
        let data = read_limited(call.body, self.max_message).await?;
        let message = InvokeRequest {
            method: call.method,
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.into(),
            }),
            content_type,
            http_extension: method_to_verb(&call.verb).map(|verb| HttpExtension {
                verb: verb as i32,
                querystring: call.query,
            }),
        };
        Ok(self.on_invoke(message, metadata).await?.into_http())
    }

    /// One `AppCallbackHealthCheck.HealthCheck`: healthy when it answers OK within `timeout`.
    pub(super) async fn probe(&self, timeout: Duration) -> bool {
        let Ok(channel) = self.channel() else {
            return false;
        };
        let mut client = AppCallbackHealthCheckClient::new(channel);
        let req = self.request(MetadataMap::new(), ());
        matches!(
            tokio::time::timeout(timeout, client.health_check(req)).await,
            Ok(Ok(_))
        )
    }

    /// `ListTopicSubscriptions`.
    pub async fn list_topic_subscriptions(
        &self,
    ) -> Result<ListTopicSubscriptionsResponse, tonic::Status> {
        let mut client = self.callback().map_err(to_status)?;
        client
            .list_topic_subscriptions(self.request(MetadataMap::new(), ()))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `OnTopicEvent` with `metadata` (raw HTTP-style keys; converted like invocation metadata).
    pub async fn on_topic_event(
        &self,
        event: TopicEventRequest,
        metadata: &HeaderMap,
    ) -> Result<TopicEventResponse, tonic::Status> {
        let mut client = self.callback().map_err(to_status)?;
        let md = grpc_metadata::from_headers(metadata);
        client
            .on_topic_event(self.request(md, event))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `OnBulkTopicEvent`, falling back to `AppCallbackAlpha.OnBulkTopicEventAlpha1` when the
    /// app does not implement it (SDKs written before the stable RPC).
    pub async fn on_bulk_topic_event(
        &self,
        events: TopicEventBulkRequest,
        metadata: &HeaderMap,
    ) -> Result<TopicEventBulkResponse, tonic::Status> {
        let md = grpc_metadata::from_headers(metadata);
        let known = self.bulk_rpc.load(Ordering::Acquire);
        if known != BULK_ALPHA {
            let mut client = self.callback().map_err(to_status)?;
            // The request is kept for the fallback only until the app's RPC is known.
            let (req, spare) = if known == BULK_STABLE {
                (events, None)
            } else {
                (events.clone(), Some(events))
            };
            match client
                .on_bulk_topic_event(self.request(md.clone(), req))
                .await
            {
                Err(status) if status.code() == tonic::Code::Unimplemented => match spare {
                    Some(spare) => {
                        self.bulk_rpc.store(BULK_ALPHA, Ordering::Release);
                        return self.on_bulk_alpha(spare, md).await;
                    }
                    None => return Err(status),
                },
                other => {
                    self.bulk_rpc.store(BULK_STABLE, Ordering::Release);
                    return other.map(tonic::Response::into_inner);
                }
            }
        }
        self.on_bulk_alpha(events, md).await
    }

    async fn on_bulk_alpha(
        &self,
        events: TopicEventBulkRequest,
        md: MetadataMap,
    ) -> Result<TopicEventBulkResponse, tonic::Status> {
        let mut alpha = AppCallbackAlphaClient::new(self.channel().map_err(to_status)?)
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        alpha
            .on_bulk_topic_event_alpha1(self.request(md, events))
            .await
            .map(tonic::Response::into_inner)
    }
}

fn to_status(err: AppChannelError) -> tonic::Status {
    tonic::Status::internal(err.to_string())
}

/// Reads a request body whole (a unary gRPC message), refusing more than `limit` bytes.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, AppChannelError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(AppChannelError::BodyTooLarge)
        }
        Err(err) => Err(AppChannelError::InvalidRequest(format!(
            "reading the request body: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_call_maps_to_http_with_status_json() {
        let reply = GrpcReply::from_result(Err(tonic::Status::not_found("no such order")));
        let res = reply.into_http();
        assert_eq!(res.status(), http::StatusCode::NOT_FOUND);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            res.extensions().get::<AppGrpcStatus>().map(|s| s.0.code),
            Some(5)
        );
        let json: serde_json::Value = serde_json::from_slice(&status_json(&Status {
            code: 5,
            message: "no such order".into(),
            details: vec![],
        }))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 5, "message": "no such order", "details": []})
        );
    }

    #[test]
    fn successful_call_keeps_data_and_content_type() {
        let reply = GrpcReply::from_result(Ok(tonic::Response::new(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"hi".to_vec(),
            }),
            content_type: "text/plain".into(),
        })));
        let internal = GrpcReply {
            status: reply.status.clone(),
            metadata: MetadataMap::new(),
            response: reply.response.clone(),
        }
        .into_internal();
        assert_eq!(internal.status.as_ref().map(|s| s.code), Some(0));
        let res = reply.into_http();
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(res.headers()[CONTENT_TYPE], "text/plain");
    }
}
