//! `GET /media/jobs` (docs/design.md, "Listing"): the caller's jobs, newest first, a page at a
//! time. The cursor is opaque to clients: the position of the last job of a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::generation::FieldError;
use super::ids::JobId;
use super::job::JobStatus;
use super::timestamp;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

/// Where a page ends: the creation time and id of its last job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub job_id: JobId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", timestamp::render(self.created_at), self.job_id))
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (time, id) = text.split_once('|')?;
        Some(Self {
            created_at: timestamp::parse(time)?,
            job_id: JobId::parse(id).ok()?,
        })
    }
}

/// A validated listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<JobStatus>,
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl ListQuery {
    /// From the query string's parameters; every bad one is reported.
    pub fn parse<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Vec<FieldError>> {
        let mut query = ListQuery {
            status: None,
            limit: DEFAULT_PAGE,
            after: None,
        };
        let mut errors = Vec::new();
        for (name, value) in params {
            match name {
                "status" => match value.parse() {
                    Ok(status) => query.status = Some(status),
                    Err(_) => errors.push(FieldError::new(
                        "status",
                        "must be one of: queued, processing, succeeded, failed, canceled",
                    )),
                },
                "limit" => match value.parse::<u32>() {
                    Ok(limit) if (1..=MAX_PAGE).contains(&limit) => query.limit = limit,
                    _ => errors.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_PAGE}"),
                    )),
                },
                "cursor" => match Cursor::decode(value) {
                    Some(cursor) => query.after = Some(cursor),
                    None => errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API gave out; start again without it",
                    )),
                },
                other => errors.push(FieldError::new(other, "unknown query parameter")),
            }
        }
        if errors.is_empty() { Ok(query) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_tampering_is_refused() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let cursor = Cursor {
            created_at: now,
            job_id: JobId::new(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        let mut tampered = cursor.encode();
        tampered.insert(3, 'x');
        assert_eq!(Cursor::decode(&tampered), None);
        assert_eq!(Cursor::decode("!!!"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("2026|nope")), None);
    }

    #[test]
    fn parameters_are_checked() {
        let query = ListQuery::parse([("status", "queued"), ("limit", "5")]).unwrap();
        assert_eq!((query.status, query.limit), (Some(JobStatus::Queued), 5));
        assert_eq!(ListQuery::parse([]).unwrap().limit, DEFAULT_PAGE);
        let fields = |params: Vec<(&'static str, &'static str)>| -> Vec<String> {
            ListQuery::parse(params)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(vec![("limit", "0")]), ["limit"]);
        assert_eq!(fields(vec![("limit", "101")]), ["limit"]);
        assert_eq!(
            fields(vec![("status", "done"), ("cursor", "zz"), ("page", "2")]),
            ["status", "cursor", "page"]
        );
    }
}
