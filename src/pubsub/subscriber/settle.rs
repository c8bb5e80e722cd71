//! What becomes of a message once its verdict is known: acked, left with the broker for
//! redelivery, or handed to the dead-letter topic. This is the one place a resiliency policy
//! (daprd's component inbound retries) belongs: today no policy exists, which daprd treats as
//! "give up at once", so a retriable failure with a dead-letter topic is dead-lettered
//! immediately and without one it goes back to the broker (component redelivery).

use super::postman::Verdict;

/// The fate of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settlement {
    Ack,
    /// Nack: the broker redelivers it later.
    Redeliver(String),
    /// Publish the original message to the dead-letter topic, then ack (nack if that fails).
    DeadLetter(String),
}

/// Decides the fate of a message from the app's verdict. `has_dead_letter_topic` is whether
/// the subscription names one.
pub(super) fn after_verdict(verdict: Verdict, has_dead_letter_topic: bool) -> Settlement {
    match verdict {
        Verdict::Success => Settlement::Ack,
        Verdict::Retry(reason) if has_dead_letter_topic => Settlement::DeadLetter(reason),
        Verdict::Retry(reason) => Settlement::Redeliver(reason),
        Verdict::Drop(d) if has_dead_letter_topic => Settlement::DeadLetter(d.reason),
        Verdict::Drop(d) => {
            tracing::warn!(reason = %d.reason, "message dropped");
            Settlement::Ack
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_settle_as_daprd_without_a_resiliency_policy() {
        let retry = || Verdict::Retry("r".into());
        assert_eq!(after_verdict(Verdict::Success, true), Settlement::Ack);
        assert_eq!(
            after_verdict(retry(), false),
            Settlement::Redeliver("r".into())
        );
        assert_eq!(
            after_verdict(retry(), true),
            Settlement::DeadLetter("r".into())
        );
        assert_eq!(after_verdict(Verdict::drop("d"), false), Settlement::Ack);
        assert_eq!(
            after_verdict(Verdict::deliberate_drop("d"), true),
            Settlement::DeadLetter("d".into())
        );
    }
}
