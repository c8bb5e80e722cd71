//! Workload identity and mTLS between sidecars: a certificate from a Dapr Sentry-compatible CA
//! ([`sentry`]), kept fresh ([`rotation`]), trusted anchors ([`trust`]), and the rustls configs
//! ([`tls`]) plus transports ([`transport`]) for the internal port, peers and the CA.

mod material;
mod rotation;
mod sentry;
pub mod spiffe;
mod tls;
pub mod transport;
mod trust;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::SecurityMetrics;

pub use material::Svid;
pub use sentry::SignError;
pub use spiffe::SpiffeId;
pub use tls::Expected;
pub use trust::TrustSource;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// daprd's own wording when mTLS is on without anchors.
    #[error("trust anchors are required (set DAPR_TRUST_ANCHORS or --trust-anchors-file)")]
    NoTrustAnchors,
    #[error("invalid trust anchors: {0}")]
    TrustAnchors(String),
    #[error("--sentry-address is required when mTLS is enabled")]
    NoSentryAddress,
    #[error("invalid --sentry-address: {0}")]
    SentryAddress(String),
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
}

/// Everything the identity needs at start.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// The id asked for (`SENTRY_LOCAL_IDENTITY` or the app id).
    pub id: String,
    pub namespace: String,
    pub sentry_address: String,
    pub control_plane_trust_domain: String,
    pub control_plane_namespace: String,
    pub trust: TrustSource,
    pub token_file: Option<PathBuf>,
    pub kubernetes: bool,
    pub jwt_audiences: Vec<String>,
    pub tuning: IdentityTuning,
}

/// Timings with production defaults; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct IdentityTuning {
    /// Longest wait between two failed certificate requests (daprd retries every 10 s).
    pub retry_cap: Duration,
    /// How often a trust anchors file is checked for changes.
    pub anchors_poll: Duration,
}

impl Default for IdentityTuning {
    fn default() -> Self {
        Self {
            retry_cap: Duration::from_secs(10),
            anchors_poll: Duration::from_secs(5),
        }
    }
}

/// A running identity: the material swap point and readiness.
pub struct Identity {
    store: Arc<material::MaterialStore>,
    server: Arc<ServerConfig>,
    ready: watch::Receiver<bool>,
    metrics: Arc<SecurityMetrics>,
}

impl Identity {
    /// Loads the anchors (a start error when missing or invalid, as in daprd) and starts the
    /// certificate and anchors tasks; they end with `stop`.
    pub fn start(
        settings: IdentitySettings,
        metrics: Arc<SecurityMetrics>,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, IdentityError> {
        if settings.sentry_address.is_empty() {
            return Err(IdentityError::NoSentryAddress);
        }
        let store = Arc::new(material::MaterialStore::new(trust::load(&settings.trust)?));
        let sentry_id = format!(
            "spiffe://{}/ns/{}/dapr-sentry",
            settings.control_plane_trust_domain, settings.control_plane_namespace
        );
        let client = sentry::SentryClient::new(
            &settings.sentry_address,
            sentry_id,
            sentry::Request {
                id: settings.id.clone(),
                namespace: settings.namespace.clone(),
                token_file: settings.token_file.clone(),
                kubernetes: settings.kubernetes,
                jwt_audiences: settings.jwt_audiences.clone(),
            },
            store.clone(),
            metrics.clone(),
        )?;
        let (ready_tx, ready) = watch::channel(false);
        let rotation = rotation::Rotation {
            client,
            store: store.clone(),
            metrics: metrics.clone(),
            retry_cap: settings.tuning.retry_cap,
            ready: ready_tx,
        };
        tokio::spawn(rotation.run(stop.clone()));
        if let TrustSource::File(path) = &settings.trust {
            tokio::spawn(trust::watch(
                path.clone(),
                settings.tuning.anchors_poll,
                store.clone(),
                stop,
            ));
        }
        Ok(Arc::new(Self {
            server: tls::server_config(store.clone()),
            store,
            ready,
            metrics,
        }))
    }

    /// Resolves once the first certificate is in place; never if `stop` ends the tasks first.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The internal port's config.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// A config for calls to the sidecar of `app_id` in `namespace`.
    pub fn peer_config(&self, namespace: &str, app_id: &str) -> Arc<ClientConfig> {
        tls::client_config(
            self.store.clone(),
            Expected::Workload {
                namespace: namespace.to_owned(),
                app_id: app_id.to_owned(),
            },
            true,
        )
    }

    pub fn metrics(&self) -> &Arc<SecurityMetrics> {
        &self.metrics
    }

    /// The certificate presented now, if any.
    pub fn current(&self) -> Option<Arc<Svid>> {
        self.store.load().svid.clone()
    }
}
