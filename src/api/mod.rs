//! The app-facing API. `http` serves daprd's HTTP API on `--dapr-http-port`; handlers live in
//! one file per area and only translate HTTP into calls on the building blocks.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::routing::{any, get, post, put};
use axum::Router;

use crate::config::Live;
use crate::invoke::Invoker;
use crate::lifecycle::Lifecycle;
use crate::pubsub::PubSubs;
use crate::state::States;
use crate::telemetry::metrics::SidecarMetrics;

pub mod error;
pub mod grpc;
mod health;
pub mod http;
mod invoke;
mod metadata;
mod pubsub;
mod state;

pub use metadata::{AppConnectionInfo, AppHealthInfo};

/// What every handler may need; built once per sidecar.
pub struct ApiState {
    pub app_id: String,
    pub namespace: String,
    pub live: Live,
    pub invoker: Arc<Invoker>,
    /// The state stores; the state routes and metadata read them.
    pub states: Arc<States>,
    /// The pub/sub components; publishing and metadata read them.
    pub pubsubs: Arc<PubSubs>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<SidecarMetrics>,
    pub app_connection: AppConnectionInfo,
    /// Attributes set with `PUT /v1.0/metadata/{key}`; written rarely, read on GET metadata.
    pub extended: RwLock<BTreeMap<String, String>>,
    /// `--max-body-size` in bytes.
    pub max_body: u64,
    /// `DAPR_API_TOKEN`, when set.
    pub api_token: Option<String>,
    /// `--allowed-origins`, split; empty means no CORS.
    pub allowed_origins: Vec<String>,
    /// Streaming subscriptions open on the gRPC API; metadata lists them.
    pub streaming: Arc<grpc::StreamingSubscriptions>,
    /// The app's declarative and programmatic subscriptions, once they are started.
    pub app_subscriptions: arc_swap::ArcSwap<Vec<crate::pubsub::subscriber::ActiveSubscription>>,
}

/// The full Dapr HTTP API. Anything no route claims, or a claimed path with another verb, is a
/// service invocation by `dapr-app-id` header (daprd registers invoke as its fallback).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1.0/healthz", get(health::healthz))
        .route("/v1.0/healthz/outbound", get(health::outbound))
        .route("/v1.0/metadata", get(metadata::get_metadata))
        .route("/v1.0/metadata/{key}", put(metadata::put_metadata))
        .route("/v1.0/shutdown", post(health::shutdown))
        .route("/v1.0/invoke/{*rest}", any(invoke::invoke))
        .merge(state::routes())
        .merge(pubsub::routes())
        .fallback(invoke::invoke)
        .method_not_allowed_fallback(invoke::invoke)
        .with_state(state)
}

/// The public port (`--dapr-public-port`): health and metadata only, for probes.
pub fn public_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1.0/healthz", get(health::healthz))
        .route("/v1.0/healthz/outbound", get(health::outbound))
        .route("/v1.0/metadata", get(metadata::get_metadata))
        .route("/v1.0/metadata/{key}", put(metadata::put_metadata))
        .with_state(state)
}
