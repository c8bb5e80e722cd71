//! Keeps a valid workload certificate: the first one at start, then renewal at half of the
//! validity window (with jitter so a fleet started together does not renew together), retried
//! with backoff while the current certificate is still valid. An expired certificate is
//! withdrawn rather than presented.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::material::{MaterialStore, Svid};
use super::sentry::SentryClient;
use crate::telemetry::metrics::SecurityMetrics;

/// First retry delay after a failed request; doubles up to the cap.
const FIRST_RETRY: Duration = Duration::from_millis(200);

pub struct Rotation {
    pub client: SentryClient,
    pub store: Arc<MaterialStore>,
    pub metrics: Arc<SecurityMetrics>,
    pub retry_cap: Duration,
    pub ready: watch::Sender<bool>,
}

impl Rotation {
    pub async fn run(self, stop: CancellationToken) {
        let mut retry = FIRST_RETRY;
        let mut first = true;
        loop {
            let wait = match self.store.load().svid.clone() {
                Some(svid) => until(renewal_time(&svid)),
                None => Duration::ZERO,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.client.sign().await {
                Ok(svid) => {
                    retry = FIRST_RETRY;
                    self.metrics.set_cert_expiry(&svid.not_after);
                    tracing::info!(
                        id = %svid.id,
                        not_after = ?svid.not_after,
                        "workload certificate {}",
                        if first { "issued" } else { "renewed" }
                    );
                    self.store.set_svid(Some(Arc::new(svid)));
                    if first {
                        self.metrics.mtls_init();
                        first = false;
                        let _ = self.ready.send(true);
                    } else {
                        self.metrics.cert_rotated();
                    }
                }
                Err(err) => {
                    let reason = err.reason();
                    if first {
                        self.metrics.mtls_init_failed(reason);
                    } else {
                        self.metrics.cert_rotation_failed(reason);
                    }
                    let current = self.store.load().svid.clone();
                    let valid_until = current.as_ref().map(|s| s.not_after);
                    tracing::warn!(%err, ?valid_until, retry_in = ?retry, "requesting a workload certificate failed");
                    if let Some(svid) = current.filter(|s| s.is_expired(SystemTime::now())) {
                        tracing::error!(id = %svid.id, "the workload certificate expired before it could be renewed; it is no longer presented");
                        self.store.set_svid(None);
                    }
                    // Retry no later than the current certificate's expiry, so it is withdrawn
                    // on time if the CA stays away.
                    let mut delay = retry;
                    if let Some(until_expiry) = valid_until.map(until) {
                        if !until_expiry.is_zero() {
                            delay = delay.min(until_expiry);
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    retry = (retry * 2).min(self.retry_cap);
                    continue;
                }
            }
        }
    }
}

/// Half of the window, minus up to 5 % of it at random.
fn renewal_time(svid: &Svid) -> SystemTime {
    let jitter = svid.window().mul_f64(rand::random_range(0.0..0.05));
    svid.renewal_time()
        .checked_sub(jitter)
        .unwrap_or(svid.not_before)
}

fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}
