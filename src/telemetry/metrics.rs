//! Dapr's metric families (`dapr_http_server_*`, `dapr_http_client_*`, service invocation).

use std::time::Duration;

use prometheus_client::registry::Registry;

/// The sidecar's metric families, registered once into a registry the caller owns.
#[derive(Debug)]
pub struct SidecarMetrics {
    app_id: String,
}

impl SidecarMetrics {
    pub fn new(registry: &mut Registry, app_id: &str) -> Self {
        let _ = registry;
        Self { app_id: app_id.to_owned() }
    }

    /// One request served on the HTTP API (`dapr_http_server_request_count`, `..._latency`).
    pub fn http_server(&self, method: &http::Method, path: &str, status: u16, elapsed: Duration) {
        let _ = (&self.app_id, method, path, status, elapsed);
    }

    /// One request sent to the local app (`dapr_http_client_*`).
    pub fn http_client(&self, method: &http::Method, path: &str, status: u16, elapsed: Duration) {
        let _ = (method, path, status, elapsed);
    }

    pub fn invocation_request_sent(&self, dst_app_id: &str) {
        let _ = dst_app_id;
    }

    pub fn invocation_response_received(&self, dst_app_id: &str, status: u16) {
        let _ = (dst_app_id, status);
    }

    pub fn invocation_request_received(&self, src_app_id: &str) {
        let _ = src_app_id;
    }

    pub fn invocation_response_sent(&self, src_app_id: &str, status: u16) {
        let _ = (src_app_id, status);
    }
}

/// Serves the registry on every path until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, registry);
    shutdown.await;
    Ok(())
}
