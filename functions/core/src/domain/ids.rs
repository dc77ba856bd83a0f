//! Job and media identifiers: UUIDv7 strings, time-ordered and unguessable.

use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UUIDv7 identifier")]
pub struct InvalidId;

macro_rules! uuid_v7_id {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Accepts only the hyphenated form of a version 7 UUID.
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                if raw.len() != 36 {
                    return Err(InvalidId);
                }
                let id = Uuid::try_parse(raw).map_err(|_| InvalidId)?;
                if id.get_version_num() != 7 {
                    return Err(InvalidId);
                }
                Ok(Self(id))
            }

            /// When the id was made, to the millisecond: a UUIDv7 begins with it.
            pub fn made_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
                let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
                chrono::DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_v7_id!(JobId);
uuid_v7_id!(MediaId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_tell_when_they_were_made() {
        let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let made = JobId::new().made_at().unwrap();
        assert!(made >= before && made <= chrono::Utc::now(), "{made}");
    }

    #[test]
    fn round_trips_through_its_string_form() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn rejects_anything_but_a_hyphenated_v7_uuid() {
        for raw in [
            "",
            "abc",
            "not-a-uuid-at-all-but-36-characters!",
            "0192e5a0-7b1c-4c3d-8e9f-0123456789ab", // v4
            "0192e5a07b1c7c3d8e9f0123456789ab",     // v7, simple form
            "../../etc/passwd",
        ] {
            assert_eq!(JobId::parse(raw), Err(InvalidId), "{raw}");
        }
        assert!(MediaId::parse("0192e5a0-7b1c-7c3d-8e9f-0123456789ab").is_ok());
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let first = JobId::new();
        let second = JobId::new();
        assert!(first.to_string() < second.to_string());
    }
}
