//! Logs and Prometheus metrics. The metrics registry is passed in, never global.

pub mod logging;
pub mod metrics;
