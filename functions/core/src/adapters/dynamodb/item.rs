//! How jobs and media map onto DynamoDB items, and the keys they are stored under.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::generation::GenerateRequest;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Job, JobError, MediaItem};
use crate::domain::timestamp;
use crate::ports::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The key of a job's item.
pub(super) fn job_pk(id: JobId) -> AttributeValue {
    AttributeValue::S(format!("JOB#{id}"))
}

/// The key of a media item.
pub(super) fn media_pk(id: MediaId) -> AttributeValue {
    AttributeValue::S(format!("MEDIA#{id}"))
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn time(value: DateTime<Utc>) -> AttributeValue {
    s(timestamp::render(value))
}

pub(super) fn job_to_item(job: &Job) -> Item {
    let request = &job.request;
    let mut item = HashMap::from([
        ("pk".to_owned(), job_pk(job.id)),
        ("job_id".to_owned(), s(job.id.to_string())),
        ("status".to_owned(), s(job.status.as_str())),
        ("prompt".to_owned(), s(&request.prompt)),
        ("model".to_owned(), s(&request.model)),
        ("width".to_owned(), n(request.width)),
        ("height".to_owned(), n(request.height)),
        ("num_outputs".to_owned(), n(request.num_outputs)),
        ("seed".to_owned(), n(request.seed)),
        ("output_format".to_owned(), s(request.output_format.extension())),
        ("attempts".to_owned(), n(job.attempts)),
        ("created_at".to_owned(), time(job.created_at)),
        ("updated_at".to_owned(), time(job.updated_at)),
        (
            "media_ids".to_owned(),
            AttributeValue::L(job.media_ids.iter().map(|id| s(id.to_string())).collect()),
        ),
        ("ttl".to_owned(), n(job.ttl)),
    ]);
    let optional = [
        ("negative_prompt", request.negative_prompt.clone().map(s)),
        ("webhook_url", request.webhook_url.as_ref().map(|u| s(u.as_str()))),
        ("started_at", job.started_at.map(time)),
        ("completed_at", job.completed_at.map(time)),
        ("lease_until", job.lease_until.map(|t| n(t.timestamp_millis()))),
        ("error_code", job.error.as_ref().map(|e| s(&e.code))),
        ("error_message", job.error.as_ref().map(|e| s(&e.message))),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

pub(super) fn media_to_item(media: &MediaItem) -> Item {
    HashMap::from([
        ("pk".to_owned(), media_pk(media.id)),
        ("media_id".to_owned(), s(media.id.to_string())),
        ("job_id".to_owned(), s(media.job_id.to_string())),
        ("index".to_owned(), n(media.index)),
        ("bucket".to_owned(), s(&media.bucket)),
        ("key".to_owned(), s(&media.key)),
        ("content_type".to_owned(), s(&media.content_type)),
        ("bytes".to_owned(), n(media.bytes)),
        ("width".to_owned(), n(media.width)),
        ("height".to_owned(), n(media.height)),
        ("ttl".to_owned(), n(media.ttl)),
    ])
}

/// Reads typed attributes of one item, naming the item and attribute in any error.
struct Reader<'a> {
    item: &'a Item,
    pk: &'a str,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).map_or("?", String::as_str);
        Self { item, pk }
    }

    fn corrupt(&self, name: &str, problem: &str) -> StoreError {
        StoreError::Corrupt {
            pk: self.pk.to_owned(),
            reason: format!("attribute {name} {problem}"),
        }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(value) => value
                .as_s()
                .map(|v| Some(v.as_str()))
                .map_err(|_| self.corrupt(name, "is not a string")),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|raw| raw.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(name, "is not a number in range")),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_n(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn parsed<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.s(name)?.parse().map_err(|_| self.corrupt(name, "does not parse"))
    }

    fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_s(name)?
            .map(|raw| timestamp::parse(raw).ok_or_else(|| self.corrupt(name, "is not an RFC 3339 time")))
            .transpose()
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }
}

pub(super) fn job_from_item(item: &Item) -> Result<Job, StoreError> {
    let r = Reader::new(item);
    let id = JobId::parse(r.s("job_id")?).map_err(|_| r.corrupt("job_id", "is not a job id"))?;
    let webhook_url = r
        .opt_s("webhook_url")?
        .map(|raw| url::Url::parse(raw).map_err(|_| r.corrupt("webhook_url", "is not a URL")))
        .transpose()?;
    let error = match (r.opt_s("error_code")?, r.opt_s("error_message")?) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or_default())),
        (None, _) => None,
    };
    let media_ids = match item.get("media_ids") {
        None => Vec::new(),
        Some(value) => value
            .as_l()
            .map_err(|_| r.corrupt("media_ids", "is not a list"))?
            .iter()
            .map(|v| {
                v.as_s()
                    .ok()
                    .and_then(|raw| MediaId::parse(raw).ok())
                    .ok_or_else(|| r.corrupt("media_ids", "holds something other than media ids"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Job {
        id,
        request: GenerateRequest {
            prompt: r.s("prompt")?.to_owned(),
            negative_prompt: r.opt_s("negative_prompt")?.map(str::to_owned),
            model: r.s("model")?.to_owned(),
            width: r.n("width")?,
            height: r.n("height")?,
            num_outputs: r.n("num_outputs")?,
            seed: r.n("seed")?,
            output_format: r.parsed("output_format")?,
            webhook_url,
        },
        status: r.parsed("status")?,
        attempts: r.n("attempts")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        started_at: r.opt_time("started_at")?,
        completed_at: r.opt_time("completed_at")?,
        lease_until: r
            .opt_n::<i64>("lease_until")?
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        error,
        media_ids,
        ttl: r.n("ttl")?,
    })
}

pub(super) fn media_from_item(item: &Item) -> Result<MediaItem, StoreError> {
    let r = Reader::new(item);
    Ok(MediaItem {
        id: MediaId::parse(r.s("media_id")?).map_err(|_| r.corrupt("media_id", "is not a media id"))?,
        job_id: JobId::parse(r.s("job_id")?).map_err(|_| r.corrupt("job_id", "is not a job id"))?,
        index: r.n("index")?,
        bucket: r.s("bucket")?.to_owned(),
        key: r.s("key")?.to_owned(),
        content_type: r.s("content_type")?.to_owned(),
        bytes: r.n("bytes")?,
        width: r.n("width")?,
        height: r.n("height")?,
        ttl: r.n("ttl")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;
    use std::time::Duration;

    #[test]
    fn a_job_survives_the_round_trip_through_an_item() {
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let mut job = Job::new(sample_request(), now, Duration::from_secs(60));
        job.request.negative_prompt = Some("blurry".into());
        job.request.webhook_url = Some(url::Url::parse("https://example.com/hook").unwrap());
        job.started_at = Some(now);
        job.lease_until = Some(now);
        job.error = Some(JobError::new("model_error", "nope"));
        job.media_ids = vec![MediaId::new(), MediaId::new()];
        assert_eq!(job_from_item(&job_to_item(&job)).unwrap(), job);
    }

    #[test]
    fn a_media_item_survives_the_round_trip() {
        let media = MediaItem {
            id: MediaId::new(),
            job_id: JobId::new(),
            index: 3,
            bucket: "b".into(),
            key: "media/x/3.png".into(),
            content_type: "image/png".into(),
            bytes: 1234,
            width: 256,
            height: 512,
            ttl: 99,
        };
        assert_eq!(media_from_item(&media_to_item(&media)).unwrap(), media);
    }

    #[test]
    fn a_broken_item_names_the_attribute() {
        let job = Job::new(sample_request(), Utc::now(), Duration::from_secs(60));
        let mut item = job_to_item(&job);
        item.insert("width".into(), s("wide"));
        let err = job_from_item(&item).unwrap_err().to_string();
        assert!(err.contains("width"), "{err}");
        assert!(err.contains(&format!("JOB#{}", job.id)), "{err}");
    }
}
