//! The one bounce policy: what a failed delivery does to the address,
//! whether the relay saw the failure itself (its own SMTP reply) or a
//! bounce came back later (the inbound webhook, the inbound MX).
//!
//! An address-level failure ([`BounceClass::Hard`]: no such mailbox or
//! domain) suppresses the address on every stream at once. [`Soft`]
//! failures suppress once `soft_bounce_limit` of them fall within
//! `soft_bounce_window`. Full mailboxes, policy blocks and transient
//! trouble are the sender's or a passing problem: recorded, never
//! suppressing. A delay notice is not a failure yet.
//!
//! [`Soft`]: BounceClass::Soft

use std::time::Duration;

use super::BounceClass;
use crate::suppression::Reason;

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BouncePolicy {
    pub soft_bounce_limit: u32,
    pub soft_bounce_window: Duration,
}

/// One failure as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub class: BounceClass,
    /// A DSN's `Action: delayed`: the remote is still trying.
    pub delayed: bool,
}

impl BouncePolicy {
    /// Whether deciding on `failure` needs the count of the address's
    /// soft bounces within the window (so a caller queries only then).
    pub fn needs_soft_count(&self, failure: Failure) -> bool {
        !failure.delayed && failure.class == BounceClass::Soft
    }

    /// Start of the soft-bounce window for a decision at `now_ms`.
    pub fn window_start(&self, now_ms: i64) -> i64 {
        now_ms
            .saturating_sub(i64::try_from(self.soft_bounce_window.as_millis()).unwrap_or(i64::MAX))
    }

    /// Whether to suppress the address, and why. `soft_in_window` counts
    /// the address's soft bounces since [`window_start`](Self::window_start),
    /// this one included (it is recorded before the decision).
    pub fn decide(&self, failure: Failure, soft_in_window: u64) -> Option<Reason> {
        if failure.delayed {
            return None;
        }
        match failure.class {
            BounceClass::Hard => Some(Reason::HardBounce),
            BounceClass::Soft => {
                (soft_in_window >= u64::from(self.soft_bounce_limit)).then_some(Reason::SoftBounces)
            }
            BounceClass::MailboxFull
            | BounceClass::Policy
            | BounceClass::Transient
            | BounceClass::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BouncePolicy = BouncePolicy {
        soft_bounce_limit: 3,
        soft_bounce_window: Duration::from_secs(7 * 86_400),
    };

    fn failed(class: BounceClass) -> Failure {
        Failure {
            class,
            delayed: false,
        }
    }

    #[test]
    fn a_hard_bounce_suppresses_at_once() {
        assert_eq!(
            POLICY.decide(failed(BounceClass::Hard), 0),
            Some(Reason::HardBounce)
        );
        assert!(!POLICY.needs_soft_count(failed(BounceClass::Hard)));
    }

    #[test]
    fn soft_bounces_suppress_at_the_limit_within_the_window() {
        let soft = failed(BounceClass::Soft);
        assert!(POLICY.needs_soft_count(soft));
        assert_eq!(POLICY.decide(soft, 1), None);
        assert_eq!(POLICY.decide(soft, 2), None);
        assert_eq!(POLICY.decide(soft, 3), Some(Reason::SoftBounces));
        assert_eq!(POLICY.decide(soft, 4), Some(Reason::SoftBounces));
        assert_eq!(POLICY.window_start(10 * 86_400_000), 3 * 86_400_000);
    }

    #[test]
    fn passing_and_sender_side_failures_never_suppress() {
        for class in [
            BounceClass::MailboxFull,
            BounceClass::Policy,
            BounceClass::Transient,
            BounceClass::Unknown,
        ] {
            assert_eq!(POLICY.decide(failed(class), 100), None, "{class:?}");
            assert!(!POLICY.needs_soft_count(failed(class)));
        }
    }

    #[test]
    fn a_delay_notice_is_not_a_failure_yet() {
        for class in [BounceClass::Hard, BounceClass::Soft] {
            let f = Failure {
                class,
                delayed: true,
            };
            assert_eq!(POLICY.decide(f, 100), None);
            assert!(!POLICY.needs_soft_count(f));
        }
    }
}
