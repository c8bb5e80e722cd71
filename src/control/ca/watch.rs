//! Picks up changed CA files without a restart. Polling rather than file notifications: the
//! directory may be a mounted secret (where files change through symlink swaps that inotify
//! reports inconsistently), the files are tiny, and a one-second delay is irrelevant next to a
//! rotation that takes hours.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch as tokio_watch;

use super::files::CaDir;
use super::material::{CaMaterial, Source};

/// Polls `dir` every `interval` until `stop` fires. A changed set of files that validates
/// replaces `current` and bumps `generation`; one that does not is reported once and ignored,
/// so a half-done manual edit never takes the CA down.
pub async fn watch(
    dir: CaDir,
    current: Arc<ArcSwap<CaMaterial>>,
    generation: tokio_watch::Sender<u64>,
    interval: Duration,
    mut stop: tokio_watch::Receiver<bool>,
) {
    let mut rejected: Option<Source> = None;
    // A rotation step renames two files one after the other; the mix in between is expected and
    // only worth a warning if it is still there on the next tick.
    let mut suspect: Option<Source> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let read_dir = dir.clone();
        let Ok(Ok(source)) = tokio::task::spawn_blocking(move || read_dir.read_source()).await
        else {
            // A file briefly missing mid-rename; the next tick sees the result.
            continue;
        };
        if source == current.load().source || rejected.as_ref() == Some(&source) {
            continue;
        }
        match CaMaterial::from_source(source.clone()) {
            Ok(material) => {
                let before = current.load();
                let issuer_changed = before.issuer_chain() != material.issuer_chain();
                tracing::info!(
                    roots = material.roots().len(),
                    issuer_changed,
                    "CA files changed; now serving the new trust bundle and issuer"
                );
                current.store(Arc::new(material));
                rejected = None;
                suspect = None;
                generation.send_modify(|g| *g += 1);
            }
            Err(error) if suspect.as_ref() == Some(&source) => {
                tracing::warn!(%error, "CA files changed but do not validate; keeping the previous CA");
                rejected = suspect.take();
            }
            Err(error) => {
                tracing::debug!(%error, "CA files changed but do not validate yet");
                suspect = Some(source);
            }
        }
    }
}
