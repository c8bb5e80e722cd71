//! Logs and Prometheus metrics, shaped like daprd's so existing log pipelines, dashboards and
//! alerts keep working. The metrics registry is passed in, never global.

pub mod logging;
pub mod metrics;
