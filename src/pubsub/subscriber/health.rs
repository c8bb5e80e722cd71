//! Subscriptions follow the app's health (daprd: subscriptions stop while the app is
//! unhealthy): no new messages are fetched for an app that cannot process them, so they wait
//! with the broker instead of burning redeliveries; in-flight deliveries finish first.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use super::RunningSubscriber;

/// Pauses the subscriptions in `slot` whenever `health` turns false and resumes them when it
/// turns true again, until `stop` fires or the health source goes away. A failed resume is
/// retried on the next change.
pub async fn pause_while_unhealthy(
    slot: Arc<Mutex<Option<RunningSubscriber>>>,
    mut health: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        let healthy = *health.borrow_and_update();
        {
            let mut slot = slot.lock().await;
            if stop.is_cancelled() {
                return;
            }
            if let Some(running) = slot.as_mut() {
                match (healthy, running.is_paused()) {
                    (false, false) => running.pause().await,
                    (true, true) => {
                        if let Err(err) = running.resume().await {
                            tracing::error!(%err, "resuming subscriptions failed");
                        }
                    }
                    _ => {}
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = health.changed() => if changed.is_err() { return },
        }
    }
}
