//! Per-owner quotas (docs/design.md, "Quotas"): at most so many jobs queued or running at once,
//! and an optional monthly budget in images and in dollars. A job counts against the budget of
//! the month it was submitted in from its submit on, and is given back if it ends failed or
//! canceled. The budget admits a job while the month's usage is under it, as LiteLLM's budgets
//! do, so the last job admitted may take the month past it by its own size.

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::job::{Job, JobStatus};
use super::timestamp;

/// A month of usage, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(time: DateTime<Utc>) -> Self {
        Self {
            year: time.year(),
            month: time.month(),
        }
    }

    /// `2026-12`.
    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// When the next month starts, and the budget is whole again.
    pub fn end(&self) -> DateTime<Utc> {
        let (year, month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// What a job counts against its month's budget: its images, and their price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    pub images: u64,
    pub microdollars: u64,
}

impl Charge {
    pub fn of(job: &Job) -> Self {
        let images = u64::from(job.request.num_outputs);
        Self {
            images,
            microdollars: images * job.price_per_image,
        }
    }

    /// What a job gives back when it ends: nothing if it succeeded, its whole charge if it
    /// failed or was canceled.
    pub fn refund(job: &Job, ended: JobStatus) -> Self {
        match ended {
            JobStatus::Failed | JobStatus::Canceled => Self::of(job),
            _ => Self::default(),
        }
    }
}

/// An owner's quota as set; `None` fields take the deployment's defaults (no budget, and
/// [`QuotaDefaults::max_active`] jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub max_active: Option<u32>,
    pub monthly_images: Option<u64>,
    pub monthly_microdollars: Option<u64>,
}

/// The deployment's defaults, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDefaults {
    pub max_active: u32,
}

impl QuotaDefaults {
    pub const MAX_ACTIVE: u32 = 100;
}

impl Default for QuotaDefaults {
    fn default() -> Self {
        Self {
            max_active: Self::MAX_ACTIVE,
        }
    }
}

/// Why a job was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this owner may have {limit} {} queued or running at once", if *.limit == 1 { "job" } else { "jobs" })]
    ActiveJobs { limit: u32 },
    #[error("this owner's budget of {limit} images for {} is used up ({used} used); it is whole again at {}", .month.label(), timestamp::render(.month.end()))]
    MonthlyImages { limit: u64, used: u64, month: Month },
    #[error("this owner's budget of ${} for {} is used up (${} used); it is whole again at {}", dollars(*.limit), .month.label(), dollars(*.used), timestamp::render(.month.end()))]
    MonthlySpend { limit: u64, used: u64, month: Month },
}

/// Micro-dollars as dollars, to the cent or finer where it matters.
pub fn dollars(microdollars: u64) -> String {
    let text = format!("{}.{:06}", microdollars / 1_000_000, microdollars % 1_000_000);
    let trimmed = text.trim_end_matches('0');
    match trimmed.split_once('.') {
        Some((_, cents)) if cents.len() < 2 => format!("{trimmed}{}", "0".repeat(2 - cents.len())),
        _ => trimmed.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an amount of dollars such as 25 or 0.50")]
pub struct InvalidDollars(pub String);

/// Dollars as written by a person (`25`, `0.50`, `$3`) in micro-dollars.
pub fn parse_dollars(raw: &str) -> Result<u64, InvalidDollars> {
    let invalid = || InvalidDollars(raw.to_owned());
    let text = raw.trim().trim_start_matches('$');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 6 {
        return Err(invalid());
    }
    let whole: u64 = whole.parse().map_err(|_| invalid())?;
    let fraction: u64 = format!("{fraction:0<6}").parse().map_err(|_| invalid())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|micro| micro.checked_add(fraction))
        .ok_or_else(invalid)
}

/// An owner's use of their quota in a month, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub month: Month,
    /// Jobs queued or running (and jobs whose end is not yet given back: at most a few).
    pub active: u32,
    pub images: u64,
    pub microdollars: u64,
    pub quota: Quota,
}

impl Usage {
    /// The limit on jobs queued or running at once.
    pub fn max_active(&self, defaults: QuotaDefaults) -> u32 {
        self.quota.max_active.unwrap_or(defaults.max_active)
    }

    /// Why one more job would not be admitted now, if it would not; what the store's condition
    /// checks, so that a refusal can say which limit was hit.
    pub fn refusal(&self, defaults: QuotaDefaults) -> Option<Refusal> {
        // A used-up budget first: unlike a full set of slots, no wait short of the month's end
        // helps, and a client retries a 429.
        if let Some(limit) = self.quota.monthly_images
            && self.images >= limit
        {
            return Some(Refusal::MonthlyImages {
                limit,
                used: self.images,
                month: self.month,
            });
        }
        if let Some(limit) = self.quota.monthly_microdollars
            && self.microdollars >= limit
        {
            return Some(Refusal::MonthlySpend {
                limit,
                used: self.microdollars,
                month: self.month,
            });
        }
        let limit = self.max_active(defaults);
        (self.active >= limit).then_some(Refusal::ActiveJobs { limit })
    }
}

/// Changes to an owner's quota: `None` keeps what is set; `Some(None)` goes back to the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaChanges {
    pub max_active: Option<Option<u32>>,
    pub monthly_images: Option<Option<u64>>,
    pub monthly_microdollars: Option<Option<u64>>,
}

impl QuotaChanges {
    pub fn apply(&self, quota: Quota) -> Quota {
        Quota {
            max_active: self.max_active.unwrap_or(quota.max_active),
            monthly_images: self.monthly_images.unwrap_or(quota.monthly_images),
            monthly_microdollars: self.monthly_microdollars.unwrap_or(quota.monthly_microdollars),
        }
    }
}

/// What a submit's admission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The job holds a slot and is charged to its month.
    Admitted,
    Refused(Refusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(active: u32, images: u64, microdollars: u64, quota: Quota) -> Usage {
        Usage {
            month: Month { year: 2026, month: 12 },
            active,
            images,
            microdollars,
            quota,
        }
    }

    #[test]
    fn months_end_where_the_next_begins() {
        let december = Month { year: 2026, month: 12 };
        assert_eq!(december.label(), "2026-12");
        assert_eq!(december.end().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            Month { year: 2026, month: 2 }.end().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
    }

    #[test]
    fn a_refusal_names_the_limit_that_was_hit_first() {
        let defaults = QuotaDefaults { max_active: 3 };
        assert_eq!(usage(2, 0, 0, Quota::default()).refusal(defaults), None);
        assert_eq!(
            usage(3, 0, 0, Quota::default()).refusal(defaults),
            Some(Refusal::ActiveJobs { limit: 3 })
        );
        let budget = Quota {
            max_active: Some(10),
            monthly_images: Some(100),
            monthly_microdollars: Some(300_000),
        };
        assert_eq!(usage(3, 99, 0, budget).refusal(defaults), None);
        assert!(matches!(
            usage(3, 100, 0, budget).refusal(defaults),
            Some(Refusal::MonthlyImages {
                limit: 100,
                used: 100,
                ..
            })
        ));
        assert!(matches!(
            usage(3, 0, 300_000, budget).refusal(defaults),
            Some(Refusal::MonthlySpend { limit: 300_000, .. })
        ));
        // Both: the budget, which no retry before the month's end helps.
        assert!(matches!(
            usage(10, 100, 0, budget).refusal(defaults),
            Some(Refusal::MonthlyImages { .. })
        ));
        assert_eq!(
            Refusal::ActiveJobs { limit: 1 }.to_string(),
            "this owner may have 1 job queued or running at once"
        );
    }

    #[test]
    fn dollars_read_as_dollars() {
        assert_eq!(dollars(3_000), "0.003");
        assert_eq!(dollars(300_000), "0.30");
        assert_eq!(dollars(12_000_000), "12.00");
        assert_eq!(dollars(0), "0.00");
    }

    #[test]
    fn dollars_parse_as_people_write_them() {
        assert_eq!(parse_dollars("25"), Ok(25_000_000));
        assert_eq!(parse_dollars("$0.50"), Ok(500_000));
        assert_eq!(parse_dollars("0.003"), Ok(3_000));
        for bad in ["", ".5", "1.2345678", "-1", "ten", "1e3", "99999999999999999999"] {
            assert!(parse_dollars(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_keep_what_they_do_not_name() {
        let set = Quota {
            max_active: Some(5),
            monthly_images: Some(10),
            monthly_microdollars: None,
        };
        let changed = QuotaChanges {
            monthly_images: Some(None),
            monthly_microdollars: Some(Some(1_000_000)),
            ..QuotaChanges::default()
        }
        .apply(set);
        assert_eq!(
            changed,
            Quota {
                max_active: Some(5),
                monthly_images: None,
                monthly_microdollars: Some(1_000_000)
            }
        );
    }
}
