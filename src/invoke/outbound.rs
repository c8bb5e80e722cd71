//! Calls from the local app to another app: resolve the app id, then `CallLocalStream` on the
//! peer sidecar (falling back to unary `CallLocal` for peers that lack it).

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt};
use http::header::CONTENT_TYPE;
use http::Response;
use http_body_util::StreamBody;

use super::body::{collect_limited, CollectError, Leftover, PayloadBody, RequestChunks};
use super::headers::{stamp_caller, to_metadata, CallerStamp};
use super::inbound::{method_to_verb, Inbound};
use super::peers::{Peer, Peers, Streaming};
use super::status::response_from_head;
use super::{Call, InvokeError};
use crate::proto::common::{HttpExtension, InvokeRequest};
use crate::proto::internals::{ApiVersion, InternalInvokeRequest};
use crate::resolve::{AppTarget, Cached, PeerAddress, ResolveError, Resolver};
use crate::telemetry::metrics::{InvocationKind, SidecarMetrics};

/// Attempts per call when the peer cannot be reached and the request can be sent again.
const ATTEMPTS: usize = 3;

/// How much of a first call to a peer is kept in case the peer turns out to lack the streaming
/// RPC (daprd before 1.11) and the call must be repeated unary. Bounded so that a large upload to
/// a new peer does not sit in memory; a larger first body to such a peer fails with a clear error.
const FIRST_CALL_REPLAY: u64 = 4 << 20;

/// Who this sidecar is, as other sidecars see it.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    pub app_id: String,
    pub namespace: String,
    /// The address peers reach this sidecar at (`DAPR_HOST_IP`).
    pub host_ip: String,
    pub hostname: String,
}

#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// `--max-body-size`: also the bound on what is buffered for a unary fallback.
    pub max_body: u64,
}

/// Lets a boxed resolver sit inside [`Cached`].
struct DynResolver(Arc<dyn Resolver>);

impl Resolver for DynResolver {
    fn resolve<'a>(
        &'a self,
        target: &'a AppTarget,
    ) -> BoxFuture<'a, Result<PeerAddress, ResolveError>> {
        self.0.resolve(target)
    }
}

/// Sends calls to other apps' sidecars.
pub struct Invoker {
    me: LocalIdentity,
    resolver: Cached<DynResolver>,
    peers: Peers,
    local: Arc<Inbound>,
    metrics: Arc<SidecarMetrics>,
    settings: InvokerSettings,
}

impl Invoker {
    pub fn new(
        me: LocalIdentity,
        resolver: Arc<dyn Resolver>,
        local: Arc<Inbound>,
        metrics: Arc<SidecarMetrics>,
        settings: InvokerSettings,
    ) -> Self {
        // Room for the largest unary body plus its metadata.
        let max_message = usize::try_from(settings.max_body)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20);
        Self {
            me,
            resolver: Cached::new(DynResolver(resolver)),
            peers: Peers::new(max_message),
            local,
            metrics,
            settings,
        }
    }

    /// Turns on mTLS towards peers.
    pub fn with_mtls(mut self, identity: Arc<crate::identity::Identity>) -> Self {
        self.peers.set_identity(identity);
        self
    }

    pub fn identity(&self) -> &LocalIdentity {
        &self.me
    }

    /// The address of `target`'s sidecar, from the same cache as invocation, for callers that
    /// carry their own protocol to it (gRPC proxying).
    pub(crate) async fn resolve(&self, target: &AppTarget) -> Result<PeerAddress, ResolveError> {
        self.resolver.resolve(target).await
    }

    /// Drops a cached address that could not be reached, so the next call resolves afresh.
    pub(crate) fn forget(&self, target: &AppTarget) {
        self.resolver.forget(target);
    }

    /// Invokes `call` on `target`; the response body streams from the callee app.
    pub async fn invoke(
        &self,
        target: &AppTarget,
        mut call: Call,
    ) -> Result<Response<Body>, InvokeError> {
        let stamp = CallerStamp {
            app_id: &self.me.app_id,
            namespace: &self.me.namespace,
            host_ip: &self.me.host_ip,
            hostname: &self.me.hostname,
        };
        stamp_caller(&mut call.headers, &stamp, &target.app_id);
        // Every call leaves as a stream unless the peer forced the unary fallback.
        self.metrics
            .invocation_request_sent(&target.app_id, InvocationKind::Streaming);
        let started = std::time::Instant::now();
        let result = if target.app_id == self.me.app_id && target.namespace == self.me.namespace {
            // Calling ourselves: the app is right here, no reason to loop through a socket.
            self.local.deliver(call).await.map_err(InvokeError::App)
        } else {
            self.invoke_remote(target, call).await
        };
        let status = result
            .as_ref()
            .map_or(500, |r| i32::from(r.status().as_u16()));
        self.metrics
            .invocation_response_received(&target.app_id, status, started.elapsed());
        result
    }

    async fn invoke_remote(
        &self,
        target: &AppTarget,
        call: Call,
    ) -> Result<Response<Body>, InvokeError> {
        let verb = method_to_verb(&call.verb).ok_or_else(|| {
            InvokeError::InvalidTarget(format!("HTTP method {} cannot be invoked", call.verb))
        })?;
        let content_type = call
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut head = InternalInvokeRequest {
            ver: ApiVersion::V1 as i32,
            metadata: to_metadata(&call.headers),
            message: Some(InvokeRequest {
                method: call.method,
                data: None,
                content_type,
                http_extension: Some(HttpExtension {
                    verb: verb as i32,
                    querystring: call.query,
                }),
            }),
            actor: None,
        };
        let mut body = call.body;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let addr = self.resolver.resolve(target).await?;
            let peer = self
                .peers
                .get(
                    &addr,
                    if target.namespace.is_empty() {
                        &self.me.namespace
                    } else {
                        &target.namespace
                    },
                    &target.app_id,
                )
                .map_err(|e| InvokeError::Rpc(tonic::Status::unavailable(e.to_string())))?;
            if peer.streaming() == Streaming::No {
                return self.call_unary(&peer, head, body).await;
            }
            let outcome = self.call_stream(&peer, head, body).await;
            match outcome {
                Outcome::Done(result) => return result,
                Outcome::Unimplemented(left) => {
                    peer.set_streaming(Streaming::No);
                    let (h, b) = resendable(left).ok_or_else(|| {
                        InvokeError::Rpc(tonic::Status::unimplemented(
                            "peer does not support streaming invocation and the request body was too large to replay",
                        ))
                    })?;
                    return self.call_unary(&peer, h, b).await;
                }
                Outcome::Unreachable(status, left) => {
                    // The address may be stale (the peer restarted elsewhere): ask again.
                    self.resolver.forget(target);
                    self.peers.forget(&addr);
                    match resendable(left) {
                        Some((h, b)) => {
                            head = h;
                            body = b;
                            last_error = Some(status);
                        }
                        None => return Err(InvokeError::Rpc(status)),
                    }
                }
            }
        }
        Err(InvokeError::Rpc(last_error.unwrap_or_else(|| {
            tonic::Status::unavailable("peer unreachable")
        })))
    }

    async fn call_stream(&self, peer: &Peer, head: InternalInvokeRequest, body: Body) -> Outcome {
        let record = peer.streaming() == Streaming::Unknown;
        let replay_limit = if record {
            self.settings.max_body.min(FIRST_CALL_REPLAY)
        } else {
            0
        };
        let (chunks, mut body_error, leftover) = RequestChunks::new(head, body, replay_limit);
        let mut client = peer.client.clone();
        let result = {
            let call = client.call_local_stream(chunks);
            tokio::pin!(call);
            tokio::select! {
                result = &mut call => result,
                Ok(err) = &mut body_error => {
                    // Dropping the call resets the stream, so the peer never takes a truncated
                    // body for a complete one.
                    return Outcome::Done(Err(body_error_to_invoke(err.as_ref(), self.settings.max_body)));
                }
            }
        };
        match result {
            Ok(response) => {
                if record {
                    peer.set_streaming(Streaming::Yes);
                }
                Outcome::Done(stream_response(response.into_inner()).await)
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Outcome::Unimplemented(leftover.await.ok())
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                Outcome::Unreachable(status, leftover.await.ok())
            }
            Err(status) => Outcome::Done(Err(InvokeError::Rpc(status))),
        }
    }

    async fn call_unary(
        &self,
        peer: &Peer,
        mut head: InternalInvokeRequest,
        body: Body,
    ) -> Result<Response<Body>, InvokeError> {
        let data = collect_limited(body, self.settings.max_body)
            .await
            .map_err(|e| match e {
                CollectError::TooLarge => InvokeError::BodyTooLarge(self.settings.max_body),
                CollectError::Read(e) => InvokeError::BodyRead(e),
            })?;
        if let Some(message) = head.message.as_mut() {
            message.data = Some(prost_types::Any {
                type_url: String::new(),
                value: data.into(),
            });
        }
        let mut client = peer.client.clone();
        let mut res = client
            .call_local(head)
            .await
            .map_err(InvokeError::Rpc)?
            .into_inner();
        let data = res
            .message
            .as_mut()
            .and_then(|m| m.data.take())
            .map(|any| Bytes::from(any.value))
            .unwrap_or_default();
        Ok(response_from_head(res, Body::from(data)))
    }
}

enum Outcome {
    Done(Result<Response<Body>, InvokeError>),
    Unimplemented(Option<Leftover>),
    Unreachable(tonic::Status, Option<Leftover>),
}

/// The request rebuilt from what its stream left, when nothing of it was lost.
fn resendable(left: Option<Leftover>) -> Option<(InternalInvokeRequest, Body)> {
    let left = left?;
    if left.lost {
        return None;
    }
    let head = left.head?;
    let replay = left.replay.unwrap_or_default();
    let body = match (replay.is_empty(), left.rest) {
        (true, Some(rest)) => rest,
        (true, None) => Body::empty(),
        (false, rest) => {
            let sent =
                stream::iter(replay).map(|b| Ok::<_, axum::Error>(http_body::Frame::data(b)));
            let rest = rest.map(|r| r.into_data_stream().map(|r| r.map(http_body::Frame::data)));
            match rest {
                Some(rest) => Body::new(StreamBody::new(sent.chain(rest))),
                None => Body::new(StreamBody::new(sent)),
            }
        }
    };
    Some((head, body))
}

/// Reads the peer's response head; the body streams on as the rest of the gRPC stream.
async fn stream_response(
    mut stream: tonic::Streaming<crate::proto::internals::InternalInvokeResponseStream>,
) -> Result<Response<Body>, InvokeError> {
    let first = stream
        .message()
        .await
        .map_err(InvokeError::Rpc)?
        .ok_or_else(|| {
            InvokeError::Rpc(tonic::Status::internal(
                "peer closed the stream without a response",
            ))
        })?;
    let head = first.response.ok_or_else(|| {
        InvokeError::Rpc(tonic::Status::internal(
            "the first message from the peer carried no response",
        ))
    })?;
    let body = Body::new(PayloadBody::new(first.payload, stream));
    Ok(response_from_head(head, body))
}

fn body_error_to_invoke(err: &(dyn std::error::Error + 'static), limit: u64) -> InvokeError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return InvokeError::BodyTooLarge(limit);
        }
        cause = e.source();
    }
    InvokeError::BodyRead(err.to_string())
}
