//! The one text form of a point in time, in answers and in stored items: RFC 3339 in UTC with
//! milliseconds, such as `2026-11-26T08:15:00.123Z`.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn render(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_millisecond_precision() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let text = render(now);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse(&text), Some(now));
        assert_eq!(parse("yesterday"), None);
    }
}
