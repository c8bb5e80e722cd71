//! Redelivery, as daprd does it: every `redeliverInterval` the group's pending list is scanned
//! (`XPENDING`) and entries idle for `processingTimeout` are claimed (`XCLAIM`) and handled
//! again. That covers nacked messages, abandoned handler calls, and messages held by a consumer
//! that died. `XCLAIM` rather than `XAUTOCLAIM` keeps Redis 5 supported, as daprd does.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::consumer::{query, Consumer};
use super::wire::{self, Claimed, CmdError};

impl Consumer {
    pub(super) async fn reclaim_loop(self: &Arc<Self>, stop: &CancellationToken) {
        let Some(min_idle) = self.redelivery.timeout() else {
            return; // redelivery disabled, as daprd does when either setting is 0
        };
        loop {
            if let Err(err) = self.reclaim(min_idle, stop).await {
                tracing::debug!(topic = %self.topic, error = %err, "redis streams: reclaim failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep(self.redelivery.interval) => {}
            }
        }
    }

    /// Claims the group's messages pending for at least `min_idle` (nacked, timed out, or held
    /// by a consumer that died) and hands them to the handler again. Pages through the pending
    /// list, but never holds more than `queueDepth` messages locally.
    async fn reclaim(
        self: &Arc<Self>,
        min_idle: Duration,
        stop: &CancellationToken,
    ) -> Result<(), CmdError> {
        let (topic, group) = (self.topic.as_str(), self.group());
        let depth = self.settings.queue_depth;
        let limit = self.settings.read_timeout;
        let mut shared = self.shared.clone();
        let mut start = "-".to_owned();
        while !stop.is_cancelled() {
            let room = depth.saturating_sub(self.in_flight().len());
            if room == 0 {
                break;
            }
            let page = query(
                &mut shared,
                &wire::xpending(topic, group, &start, depth),
                limit,
            )
            .await
            .and_then(wire::parse_pending)?;
            let next = match page.last() {
                Some(last) if page.len() == depth => wire::next_id(&last.id),
                _ => None,
            };
            let ids: Vec<String> = {
                let in_flight = self.in_flight();
                page.into_iter()
                    .filter(|p| p.idle >= min_idle && !in_flight.contains(&p.id))
                    .map(|p| p.id)
                    .take(room)
                    .collect()
            };
            if !ids.is_empty() {
                let claimed = query(
                    &mut shared,
                    &wire::xclaim(topic, group, group, min_idle, &ids),
                    limit,
                )
                .await
                .and_then(wire::parse_claim)?;
                let mut entries = Vec::with_capacity(claimed.len());
                for claimed in claimed {
                    match claimed {
                        Claimed::Entry(entry) => entries.push(entry),
                        Claimed::Deleted(id) => {
                            // Gone from the stream: ack so it stops being reclaimed (as daprd).
                            query(&mut shared, &wire::xack(topic, group, &id), limit).await?;
                        }
                    }
                }
                if !entries.is_empty() {
                    tracing::debug!(topic, count = entries.len(), "redis streams: redelivering");
                }
                if !self.dispatch(entries, stop).await {
                    break;
                }
            }
            match next {
                Some(next) => start = next,
                None => break,
            }
        }
        Ok(())
    }
}
