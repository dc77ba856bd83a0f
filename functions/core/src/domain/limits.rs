//! Per-key rate limits (docs/design.md, "Rate limits"): each key's requests of a class are
//! counted in fixed windows of a minute, exactly across every instance (the count is one
//! conditional write to the store); a request over the key's limit for its class is refused with
//! the time until the window ends. The answers name the limit and what remains in the form of the
//! IETF draft `draft-ietf-httpapi-ratelimit-headers` (`RateLimit-Policy`, `RateLimit`).

use chrono::{DateTime, Utc};

/// How long a window of counting lasts.
pub const WINDOW_SECONDS: i64 = 60;

/// The classes of requests, each with a limit of its own: creating jobs costs model time and
/// money, reading them does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Create,
    Other,
}

impl RouteClass {
    /// The policy's name in the headers, and the class's in the store.
    pub fn name(self) -> &'static str {
        match self {
            RouteClass::Create => "create",
            RouteClass::Other => "other",
        }
    }
}

/// A key's limits: requests a minute (the defaults are Replicate's per-account limits), and
/// requests held open at once by `Prefer: wait`, each of which holds a function instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub creates_per_minute: u32,
    pub others_per_minute: u32,
    pub concurrent_waits: u32,
}

impl KeyLimits {
    pub const DEFAULT_CREATES_PER_MINUTE: u32 = 600;
    pub const DEFAULT_OTHERS_PER_MINUTE: u32 = 3000;
    pub const DEFAULT_CONCURRENT_WAITS: u32 = 10;

    pub fn of(&self, class: RouteClass) -> u32 {
        match class {
            RouteClass::Create => self.creates_per_minute,
            RouteClass::Other => self.others_per_minute,
        }
    }
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            creates_per_minute: Self::DEFAULT_CREATES_PER_MINUTE,
            others_per_minute: Self::DEFAULT_OTHERS_PER_MINUTE,
            concurrent_waits: Self::DEFAULT_CONCURRENT_WAITS,
        }
    }
}

/// The window a moment falls in: its start, epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
}

impl Window {
    pub fn at(now: DateTime<Utc>) -> Self {
        let seconds = now.timestamp();
        Self {
            start: seconds - seconds.rem_euclid(WINDOW_SECONDS),
        }
    }

    pub fn end(&self) -> i64 {
        self.start + WINDOW_SECONDS
    }

    /// Whole seconds from `now` until the window ends, at least 1.
    pub fn seconds_left(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from(self.end() - now.timestamp()).unwrap_or(0).max(1)
    }
}

/// What one request was allowed under its key's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub class: RouteClass,
    /// The limit of the window.
    pub quota: u32,
    /// Requests the window still allows after this one.
    pub remaining: u32,
    /// Seconds until the window ends.
    pub reset_seconds: u64,
}

impl Allowance {
    /// `RateLimit-Policy`: the quota and the window, in seconds.
    pub fn policy_header(&self) -> String {
        format!("\"{}\";q={};w={WINDOW_SECONDS}", self.class.name(), self.quota)
    }

    /// `RateLimit`: what remains, and the seconds until it is whole again.
    pub fn header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.class.name(),
            self.remaining,
            self.reset_seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_are_whole_minutes_and_say_how_long_they_last() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 21, 30, 17).unwrap();
        let window = Window::at(now);
        assert_eq!(window.start % 60, 0);
        assert_eq!(window.end() - now.timestamp(), 43);
        assert_eq!(window.seconds_left(now), 43);
        let last_second = Utc.with_ymd_and_hms(2026, 12, 6, 21, 30, 59).unwrap();
        assert_eq!(Window::at(last_second), window);
        assert_eq!(window.seconds_left(last_second), 1);
    }

    #[test]
    fn headers_take_the_drafts_structured_form() {
        let allowance = Allowance {
            class: RouteClass::Create,
            quota: 600,
            remaining: 12,
            reset_seconds: 43,
        };
        assert_eq!(allowance.policy_header(), "\"create\";q=600;w=60");
        assert_eq!(allowance.header(), "\"create\";r=12;t=43");
    }

    #[test]
    fn defaults_are_replicates_limits() {
        let limits = KeyLimits::default();
        assert_eq!(
            (limits.of(RouteClass::Create), limits.of(RouteClass::Other)),
            (600, 3000)
        );
    }
}
