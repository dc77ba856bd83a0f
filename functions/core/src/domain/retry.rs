//! Time budgets and retries with exponential backoff and full jitter (docs/design.md, "Failure rules").

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Errors that say whether another try may succeed.
pub trait Transient {
    fn is_transient(&self) -> bool;
    /// A delay the other side asked for, if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The time an invocation may still spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    pub fn new(remaining: Duration) -> Self {
        Self {
            deadline: Instant::now() + remaining,
        }
    }

    /// From the runtime's deadline (epoch milliseconds) minus a reserve for the work after it.
    /// A deadline already long past is not a real one (`cargo lambda watch` sends a fixed
    /// 600000): then `fallback` applies.
    pub fn from_deadline(deadline_epoch_ms: u64, now_epoch_ms: u64, reserve: Duration, fallback: Duration) -> Self {
        let remaining = if deadline_epoch_ms + 86_400_000 < now_epoch_ms {
            fallback
        } else {
            Duration::from_millis(deadline_epoch_ms.saturating_sub(now_epoch_ms))
        };
        Self::new(remaining.saturating_sub(reserve))
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// One record's part of this (the invocation's) budget as the record starts, with `left`
    /// records, itself included, still to start, `concurrency` at a time: an equal part of the
    /// time left for each round of records still to come, but never less than `least` (what the
    /// model needs to do anything useful) while the invocation has that much.
    pub fn share(&self, left: usize, concurrency: usize, least: Duration) -> Budget {
        let remaining = self.remaining();
        let rounds = left.div_ceil(concurrency.max(1)).max(1);
        let fair = remaining / u32::try_from(rounds).unwrap_or(u32::MAX);
        Budget::new(fair.max(least).min(remaining))
    }
}

/// Exponential backoff with full jitter: the n-th delay is drawn from `[0, min(cap, base·2ⁿ)]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration, max_attempts: u32) -> Self {
        Self {
            base,
            cap,
            max_attempts,
        }
    }

    /// The ceiling of the delay after the `attempt`th failure (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }

    /// Runs `op` until it succeeds, fails for good, runs out of attempts, or the next wait would
    /// not fit in the budget. A delay the other side asked for replaces the jittered one.
    pub async fn retry<T, E, F, Fut>(&self, budget: &Budget, mut op: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(err) if err.is_transient() && attempt < self.max_attempts => {
                    let wait = err.retry_after().unwrap_or_else(|| self.delay(attempt));
                    if wait >= budget.remaining() {
                        return Err(err);
                    }
                    tracing::debug!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "transient failure, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// How long to wait before looking again at a job another worker holds until `until`: until that
/// lease could have run out, not before.
pub fn lease_wait(now: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>) -> Duration {
    (until - now).to_std().unwrap_or_default() + Duration::from_secs(1)
}

/// How long a message waits before its next delivery after the `receive_count`th failed one:
/// 10 s doubling per receive up to 15 minutes, jittered by up to a fifth so that a burst of failed
/// jobs does not come back all at once.
pub fn redelivery_delay(receive_count: u32) -> Duration {
    redelivery_delay_from(Duration::from_secs(10), receive_count)
}

/// As [`redelivery_delay`], starting from `first` instead of 10 s.
pub fn redelivery_delay_from(first: Duration, receive_count: u32) -> Duration {
    let ceiling = Backoff::new(first, Duration::from_secs(900), u32::MAX).ceiling(receive_count);
    let jitter = fastrand::u64(0..=ceiling.as_millis() as u64 / 5);
    ceiling.saturating_sub(Duration::from_millis(jitter))
}

/// The longest a received message can be held back. SQS's limit is 12 hours counted from the
/// receive, not from the ChangeMessageVisibility call, which refuses a longer one; a Lambda
/// invocation runs 15 minutes at most, so the receive is never further back than that.
pub const LONGEST_HOLD: Duration = Duration::from_secs(43_200 - 900);

/// How long a message whose attempt failed transiently waits: [`redelivery_delay`], or longer if
/// the other side asked for a longer wait (a long rate limit), so that the receives are not spent
/// before it passes; but never beyond [`LONGEST_HOLD`].
pub fn transient_redelivery(receive_count: u32, retry_after: Option<Duration>) -> Duration {
    redelivery_delay(receive_count)
        .max(retry_after.unwrap_or_default())
        .min(LONGEST_HOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Again(Option<Duration>),
        Never,
    }

    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            matches!(self, Failure::Again(_))
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                Failure::Again(after) => *after,
                Failure::Never => None,
            }
        }
    }

    const FAST: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4), 5);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 10);
        let ceilings: Vec<u128> = (1..=6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for n in 1..=6 {
            assert!(backoff.delay(n) <= backoff.ceiling(n));
        }
        assert_eq!(backoff.ceiling(200), Duration::from_millis(1000));
    }

    #[test]
    fn redelivery_grows_and_stays_capped() {
        assert!(redelivery_delay(1) <= Duration::from_secs(10));
        assert!(redelivery_delay(1) >= Duration::from_secs(8));
        assert!(redelivery_delay(3) >= Duration::from_secs(32));
        assert!(redelivery_delay(30) <= Duration::from_secs(900));
    }

    #[test]
    fn a_long_retry_after_stays_inside_what_sqs_accepts() {
        // ChangeMessageVisibility counts its 12 hours from the receive, and the message was
        // received before the attempt ran: asking for all 12 hours is refused.
        let day = Some(Duration::from_secs(86_400));
        assert!(transient_redelivery(1, day) <= Duration::from_secs(43_200) - Duration::from_secs(900));
        let hour = Some(Duration::from_secs(3_600));
        assert_eq!(
            transient_redelivery(1, hour),
            Duration::from_secs(3_600),
            "a shorter wait is kept"
        );
    }

    #[test]
    fn each_record_gets_a_fair_share_of_the_invocation() {
        let whole = Budget::new(Duration::from_secs(30));
        let near = |budget: Budget, secs: u64| {
            let left = budget.remaining();
            left <= Duration::from_secs(secs) && left > Duration::from_secs(secs) - Duration::from_millis(100)
        };
        // Ten records four at a time: three rounds of ten seconds.
        assert!(near(whole.share(10, 4, Duration::from_secs(1)), 10));
        // The last four: one round, the whole remainder.
        assert!(near(whole.share(4, 4, Duration::from_secs(1)), 30));
        // Never less than the model needs, while the invocation has it...
        assert!(near(whole.share(10, 4, Duration::from_secs(12)), 12));
        // ...and never more than the invocation has.
        assert!(near(
            Budget::new(Duration::from_secs(5)).share(1, 4, Duration::from_secs(12)),
            5
        ));
    }

    #[test]
    fn a_bogus_deadline_falls_back() {
        let now = 1_800_000_000_000;
        let budget = Budget::from_deadline(600_000, now, Duration::from_secs(1), Duration::from_secs(60));
        assert!(budget.remaining() > Duration::from_secs(58));
        let budget = Budget::from_deadline(now + 10_000, now, Duration::from_secs(2), Duration::from_secs(60));
        assert!(budget.remaining() <= Duration::from_secs(8));
        let budget = Budget::from_deadline(now - 5, now, Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(budget.remaining(), Duration::ZERO);
    }

    #[tokio::test]
    async fn retries_transient_failures_until_success() {
        let calls = Cell::new(0);
        let result = FAST
            .retry(&Budget::new(Duration::from_secs(5)), || async {
                calls.set(calls.get() + 1);
                if calls.get() < 3 {
                    Err(Failure::Again(None))
                } else {
                    Ok(calls.get())
                }
            })
            .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), _> = FAST
            .retry(&Budget::new(Duration::from_secs(5)), || async {
                calls.set(calls.get() + 1);
                Err(Failure::Never)
            })
            .await;
        assert_eq!((result, calls.get()), (Err(Failure::Never), 1));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let calls = Cell::new(0);
        let result: Result<(), _> = FAST
            .retry(&Budget::new(Duration::from_secs(5)), || async {
                calls.set(calls.get() + 1);
                Err(Failure::Again(None))
            })
            .await;
        assert_eq!((result, calls.get()), (Err(Failure::Again(None)), 5));
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_budget_stops_at_once() {
        let calls = Cell::new(0);
        let result: Result<(), _> = FAST
            .retry(&Budget::new(Duration::from_millis(50)), || async {
                calls.set(calls.get() + 1);
                Err(Failure::Again(Some(Duration::from_secs(30))))
            })
            .await;
        assert_eq!(calls.get(), 1);
        assert!(result.is_err());
    }
}
