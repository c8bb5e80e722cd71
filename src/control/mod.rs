//! `outrigger-control`: the control plane's certificate authority. It serves Dapr Sentry's
//! `dapr.proto.sentry.v1.CA` API, so daprd sidecars and Outrigger sidecars can both use it, and
//! an Outrigger sidecar can use an existing Sentry.
//!
//! Reading order: [`ca`] (trust bundle, issuer, signing, rotation on disk) -> [`validator`] (who
//! may ask for which identity) -> [`server`] (the gRPC edge over TLS, its own rotating serving
//! certificate, health and metrics) -> [`options`] (flags, Sentry-compatible where Sentry has one).

pub mod ca;
pub mod client;
mod health;
pub mod metrics;
pub mod options;
pub mod server;
mod serving_cert;
pub mod spiffe;
pub mod validator;

pub use options::Options;
pub use server::ControlPlane;
