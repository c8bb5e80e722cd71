//! Transparent gRPC proxying (daprd's "proxy mode"): a call to any service other than Dapr's own,
//! carrying `dapr-app-id` (or `dapr-callee-app-id`), travels as raw HTTP/2 frames through the
//! caller's sidecar ([`GrpcProxy`]) to the callee sidecar's internal port, where [`AppProxy`]
//! hands it to the local app's gRPC server. Payloads are never decoded: frames, metadata,
//! trailers, deadlines and cancellation pass through as they are, so peers can be daprd.

mod forward;
mod identity;
mod inbound;
mod limit;
mod observe;
mod outbound;
mod tls;

pub use forward::{ForwardError, Upstream};
pub use inbound::AppProxy;
pub use outbound::GrpcProxy;

/// A call that could not be forwarded, answered as a gRPC status in a trailers-only response.
fn status_response(status: tonic::Status) -> http::Response<axum::body::Body> {
    status.into_http()
}
