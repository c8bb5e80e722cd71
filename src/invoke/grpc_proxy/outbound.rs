//! Caller side: a gRPC call from the local app for another app's service is resolved to that
//! app's sidecar and forwarded, frames untouched, to its internal port; a call to the local
//! app's own id goes straight to the app.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::{Request, Response};

use super::forward::Upstream;
use super::identity::{self, stamp_caller};
use super::inbound::AppProxy;
use super::observe::{observe, Report, Side};
use super::status_response;
use super::tls::PeerId;
use crate::invoke::Invoker;
use crate::telemetry::metrics::{InvocationKind, SidecarMetrics};

/// The tower service the API port routes unknown gRPC services to. Cloning is cheap.
#[derive(Clone)]
pub struct GrpcProxy {
    inner: Arc<CallerSide>,
}

struct CallerSide {
    invoker: Arc<Invoker>,
    local: AppProxy,
    upstream: Arc<Upstream>,
    metrics: Arc<SidecarMetrics>,
}

impl GrpcProxy {
    /// `invoker` supplies this sidecar's identity and the shared name-resolution cache; `local`
    /// serves calls addressed to this sidecar's own app.
    pub fn new(
        invoker: Arc<Invoker>,
        local: AppProxy,
        upstream: Arc<Upstream>,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        Self {
            inner: Arc::new(CallerSide {
                invoker,
                local,
                upstream,
                metrics,
            }),
        }
    }

    /// Forwards one call; failures before the upstream answered become trailers-only statuses.
    pub async fn proxy(&self, mut req: Request<Body>) -> Response<Body> {
        let side = &self.inner;
        let me = side.invoker.identity();
        let target = match identity::target(req.headers(), &me.namespace) {
            Ok(target) => target,
            Err(status) => return status_response(status),
        };
        stamp_caller(req.headers_mut(), &me.app_id, &me.namespace, &target.app_id);
        side.metrics
            .invocation_request_sent(&target.app_id, InvocationKind::Streaming);
        let report = Report {
            metrics: side.metrics.clone(),
            peer: target.app_id.clone(),
            side: Side::Caller,
        };
        if target.app_id == me.app_id && target.namespace == me.namespace {
            return observe(side.local.deliver(req).await, report);
        }
        let address = match side.invoker.resolve(&target).await {
            Ok(address) => address,
            Err(err) => {
                // daprd returns the resolver's error as is, which gRPC reports as Unknown.
                return report.refuse(tonic::Status::unknown(format!(
                    "failed to proxy request: {err}"
                )));
            }
        };
        let peer = PeerId {
            namespace: if target.namespace.is_empty() {
                me.namespace.clone()
            } else {
                target.namespace.clone()
            },
            app_id: target.app_id.clone(),
        };
        match side.upstream.forward(&address, Some(&peer), req).await {
            Ok(response) => observe(response, report),
            Err(err) => {
                if err.is_connect() {
                    // The peer may have moved: the next call resolves afresh.
                    side.invoker.forget(&target);
                }
                tracing::debug!(%err, app_id = %target.app_id, "proxied call did not reach the peer");
                report.refuse(err.status())
            }
        }
    }
}

impl tower::Service<Request<Body>> for GrpcProxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.proxy(req).await) })
    }
}
