//! Service invocation. `outbound` takes a call from the local app to a target app id, resolves
//! it and sends it to the peer sidecar over daprd's own `ServiceInvocation` protocol;
//! `inbound` serves that protocol and hands calls to the local app. Bodies stream both ways.

use axum::body::Body;
use http::{HeaderMap, Method};

mod body;
pub mod grpc_proxy;
pub mod headers;
mod inbound;
mod outbound;
mod peers;
mod status;

pub use inbound::{method_to_verb, Inbound, InboundServer};
pub use outbound::{Invoker, InvokerSettings, LocalIdentity};
pub use status::http_status_from_grpc;

/// A call on its way to an app, whatever transport brought it: the headers are already
/// filtered and stamped with the caller's identity.
#[derive(Debug)]
pub struct Call {
    /// The app path without its leading `/` (already cleaned).
    pub method: String,
    pub verb: Method,
    /// The raw query string, without `?`; empty when there is none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Largest chunk put in one `StreamPayload`. daprd chunks at 2 KiB, which costs a message per
/// 2 KiB; we forward each body frame as it arrives (no copy) and only split frames above this,
/// staying far below the 4 MiB gRPC message limit daprd's internal server enforces.
pub const MAX_CHUNK: usize = 1 << 20;

/// Why an invocation failed before the callee app answered.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error("rpc error: code = {code:?} desc = {message}", code = .0.code(), message = .0.message())]
    Rpc(tonic::Status),
    #[error("invalid app id: {0}")]
    InvalidTarget(String),
    #[error("request body exceeds the limit of {0} bytes set by --max-body-size")]
    BodyTooLarge(u64),
    #[error("failed to read request body: {0}")]
    BodyRead(String),
    #[error(transparent)]
    App(#[from] crate::app_channel::AppChannelError),
}

impl InvokeError {
    /// The callee sidecar refused the caller (access control).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Rpc(s) if s.code() == tonic::Code::PermissionDenied)
    }
}
