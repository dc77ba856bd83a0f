//! `GET /media/jobs` (docs/design.md, "Listing"): the caller's jobs, newest first, a page at a
//! time. Jobs are ordered by their ids, which are time-ordered (UUIDv7); the cursor is the id of
//! the last job a request read: where the next page starts, below it.

use super::generation::FieldError;
use super::ids::JobId;
use super::job::JobStatus;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
/// The most jobs one listing request reads, so that a status filter that matches few of them
/// answers in one bounded read: the page is then short, or empty, and its cursor goes on from
/// the last job read.
pub const MAX_READ: u32 = 200;
// A page without a filter, and the one job more that tells whether there is a next, always fit.
const _: () = assert!(MAX_READ > MAX_PAGE);

/// Where a page ends: the id of the last job read for it, the page's last job or, when the read
/// stopped at [`MAX_READ`] jobs, one the status filter left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub after: JobId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        self.after.to_string()
    }

    pub fn decode(raw: &str) -> Option<Self> {
        JobId::parse(raw).ok().map(|after| Self { after })
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

    /// The query string of the page after this one, which ends at `next`: the same filter and
    /// page size, from there on.
    pub fn next_page(&self, next: Cursor) -> String {
        let mut query = format!("limit={}&cursor={}", self.limit, next.encode());
        if let Some(status) = self.status {
            query.push_str(&format!("&status={status}"));
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_the_filter_and_the_page_size() {
        let next = Cursor::decode("0192e5a0-7b1c-7c3d-8e9f-0123456789ab").unwrap();
        let query = ListQuery::parse([("status", "failed"), ("limit", "5")]).unwrap();
        let again = query.next_page(next);
        let pairs = again.split('&').filter_map(|pair| pair.split_once('='));
        let parsed = ListQuery::parse(pairs).unwrap();
        assert_eq!(
            (parsed.status, parsed.limit, parsed.after),
            (query.status, 5, Some(next))
        );
    }

    #[test]
    fn cursors_round_trip_and_tampering_is_refused() {
        let cursor = Cursor { after: JobId::new() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        let mut tampered = cursor.encode();
        tampered.insert(3, 'x');
        assert_eq!(Cursor::decode(&tampered), None);
        assert_eq!(Cursor::decode("!!!"), None);
        assert_eq!(Cursor::decode(""), None);
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
