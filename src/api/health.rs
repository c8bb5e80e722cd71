//! `/v1.0/healthz`, `/v1.0/healthz/outbound` and `/v1.0/shutdown`, with daprd's semantics.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::ApiState;
use crate::lifecycle::StopKind;

/// 204 once every health target is ready; `?appid=` must name this app when given.
pub async fn healthz(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(app_id) = query.get("appid") {
        if *app_id != state.app_id {
            return ApiError::health_app_id_mismatch().into_response();
        }
    }
    let pending = state.lifecycle.not_ready();
    if pending.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::health_not_ready(&pending).into_response()
    }
}

/// 204 as soon as the API servers are up, before the app is reachable: apps may call the
/// sidecar while they start.
pub async fn outbound(State(state): State<Arc<ApiState>>) -> Response {
    if state.lifecycle.is_outbound_ready() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::outbound_not_ready().into_response()
    }
}

/// 204, then a graceful stop in the background; `dapr-force-shutdown: true` stops at once.
pub async fn shutdown(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let forced = headers
        .get("dapr-force-shutdown")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let kind = if forced {
        StopKind::Forced
    } else {
        StopKind::Graceful
    };
    tracing::info!(?kind, "shutdown requested through the API");
    state.lifecycle.stop(kind);
    StatusCode::NO_CONTENT.into_response()
}
