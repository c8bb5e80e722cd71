//! Outrigger: a drop-in replacement for the Dapr sidecar (`daprd`), written in Rust.
//!
//! The sidecar is wired in [`sidecar`]; each building block owns one folder. Start with
//! `DESIGN.md`-style reading order: [`sidecar`] -> [`api`] -> [`invoke`] -> [`app_channel`].

pub mod acl;
pub mod api;
pub mod app_channel;
pub mod config;
pub mod control;
pub mod http_path;
pub mod identity;
pub mod invoke;
pub mod lifecycle;
pub mod proto;
pub mod pubsub;
pub mod resolve;
pub mod sidecar;
pub mod state;
pub mod telemetry;
