//! The trust anchors: from `DAPR_TRUST_ANCHORS` (static, as daprd) or from a file that is
//! re-read when it changes, so a root rotation reaches running sidecars without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::material::{MaterialStore, TrustBundle};
use super::IdentityError;

#[derive(Debug, Clone)]
pub enum TrustSource {
    Pem(String),
    File(PathBuf),
}

pub fn load(source: &TrustSource) -> Result<TrustBundle, IdentityError> {
    match source {
        TrustSource::Pem(pem) => TrustBundle::from_pem(pem.as_bytes()),
        TrustSource::File(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                IdentityError::TrustAnchors(format!("reading {}: {e}", path.display()))
            })?;
            TrustBundle::from_pem(&pem)
        }
    }
}

/// Polls the file (cheap: one small read per interval; works on every filesystem, including
/// Kubernetes' symlink-swapped volumes where change notifications are unreliable). A file that
/// does not parse keeps the current bundle.
pub async fn watch(
    path: PathBuf,
    interval: Duration,
    store: Arc<MaterialStore>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let pem = match tokio::fs::read(&path).await {
            Ok(pem) => pem,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot read the trust anchors file; keeping the current bundle");
                continue;
            }
        };
        if pem == store.load().trust.pem {
            continue;
        }
        match TrustBundle::from_pem(&pem) {
            Ok(bundle) => {
                tracing::info!(path = %path.display(), roots = bundle.roots.len(), "trust anchors changed; new handshakes use the new bundle");
                store.set_trust(bundle);
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "the trust anchors file is invalid; keeping the current bundle");
            }
        }
    }
}
