//! The sidecar's lifecycle as the health endpoints and shutdown see it: which health targets are
//! ready, and the one signal every task watches to stop.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// How the sidecar was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Finish in-flight work within the grace period, deregister, exit 0.
    Graceful,
    /// `dapr-force-shutdown: true`: exit 1 at once, as daprd does.
    Forced,
}

#[derive(Debug, Default)]
pub struct Lifecycle {
    outbound_ready: AtomicBool,
    runtime_ready: AtomicBool,
    forced: AtomicBool,
    stop: CancellationToken,
}

impl Lifecycle {
    /// API servers are up: `/v1.0/healthz/outbound` answers 204 from here on.
    pub fn mark_outbound_ready(&self) {
        self.outbound_ready.store(true, Ordering::Release);
    }

    /// The app is reachable and initialization finished: `/v1.0/healthz` answers 204.
    pub fn mark_runtime_ready(&self) {
        self.runtime_ready.store(true, Ordering::Release);
    }

    pub fn is_outbound_ready(&self) -> bool {
        self.outbound_ready.load(Ordering::Acquire)
    }

    /// Names of the health targets not ready yet (daprd lists them in its error message).
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.outbound_ready.load(Ordering::Acquire) {
            out.push("outbound");
        }
        if !self.runtime_ready.load(Ordering::Acquire) {
            out.push("runtime");
        }
        out
    }

    pub fn stop(&self, kind: StopKind) {
        if kind == StopKind::Forced {
            self.forced.store(true, Ordering::Release);
        }
        self.stop.cancel();
    }

    pub fn stop_kind(&self) -> StopKind {
        if self.forced.load(Ordering::Acquire) {
            StopKind::Forced
        } else {
            StopKind::Graceful
        }
    }

    /// Fires once a stop was asked for.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }
}
