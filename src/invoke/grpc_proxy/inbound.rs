//! Callee side: a proxied call that reached this sidecar (from a peer on the internal port, or
//! from the local app calling itself) goes to the local app's gRPC server over h2c.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::header::HeaderValue;
use http::{Request, Response};

use super::forward::Upstream;
use super::identity::{self, stamp_for_app};
use super::observe::{observe, Report, Side};
use super::status_response;
use crate::acl::{AccessControl, Enforcer};
use crate::identity::transport::PeerIdentity;
use crate::invoke::headers::{CALLER_APP_ID, CALLER_NAMESPACE};
use crate::telemetry::metrics::{SecurityMetrics, SidecarMetrics};

/// The tower service the internal server falls back to for every service other than
/// `ServiceInvocation`. Cloning is cheap.
#[derive(Clone)]
pub struct AppProxy {
    inner: Arc<AppSide>,
}

#[derive(Clone)]
struct AppSide {
    /// `host:port` of the app's gRPC server; `None` when the sidecar has no app.
    address: Option<String>,
    access: Option<Enforcer>,
    app_token: Option<HeaderValue>,
    upstream: Arc<Upstream>,
    metrics: Arc<SidecarMetrics>,
}

impl AppProxy {
    /// `app_token` is `APP_API_TOKEN`: the app's proof that calls come from its sidecar.
    pub fn new(
        address: Option<String>,
        app_token: Option<&str>,
        upstream: Arc<Upstream>,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        let app_token = app_token.and_then(|t| match HeaderValue::from_str(t) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!("APP_API_TOKEN is not a valid metadata value; it is not sent");
                None
            }
        });
        Self {
            inner: Arc::new(AppSide {
                address,
                access: None,
                app_token,
                upstream,
                metrics,
            }),
        }
    }

    /// Checks every proxied call against `acl` before it reaches the app, as invocation does.
    pub fn with_access_control(
        mut self,
        acl: Arc<AccessControl>,
        metrics: Arc<SecurityMetrics>,
    ) -> Self {
        // Copies the settings if this proxy was already cloned, so the policy is never lost.
        Arc::make_mut(&mut self.inner).access = Some(Enforcer::new(acl, metrics));
        self
    }

    /// Over mTLS the caller is who its certificate says, whatever the metadata claims; then
    /// access control decides.
    fn admit(&self, req: &mut Request<Body>) -> Result<(), tonic::Status> {
        let caller = req
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|p| p.id.clone());
        if let Some(id) = &caller {
            for (name, value) in [
                (CALLER_APP_ID, &id.app_id),
                (CALLER_NAMESPACE, &id.namespace),
            ] {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| tonic::Status::invalid_argument("invalid caller identity"))?;
                req.headers_mut().insert(name, value);
            }
        }
        match &self.inner.access {
            Some(access) => access.admit(
                caller.as_deref(),
                req.uri().path().trim_start_matches('/'),
                None,
            ),
            None => Ok(()),
        }
    }

    /// Hands the call to the app; its answer streams back, trailers included.
    pub async fn deliver(&self, mut req: Request<Body>) -> Response<Body> {
        let side = &self.inner;
        if let Err(status) = self.admit(&mut req) {
            return status_response(status);
        }
        stamp_for_app(req.headers_mut(), side.app_token.as_ref());
        let caller = identity::caller(req.headers()).to_owned();
        side.metrics.invocation_request_received(&caller);
        let report = Report {
            metrics: side.metrics.clone(),
            peer: caller,
            side: Side::Callee,
        };
        let Some(address) = side.address.as_deref() else {
            return report.refuse(tonic::Status::internal("app channel is not initialized"));
        };
        match side.upstream.forward(address, None, req).await {
            Ok(response) => observe(response, report),
            Err(err) => {
                tracing::debug!(%err, "proxied call did not reach the app");
                report.refuse(err.status())
            }
        }
    }
}

impl tower::Service<Request<Body>> for AppProxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.deliver(req).await) })
    }
}
