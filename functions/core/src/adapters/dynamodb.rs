//! Jobs and media in one DynamoDB table keyed by `pk` (DESIGN §4). Every state change is a
//! conditional write on the current state, so late or duplicate messages cannot move a job back.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, SecondsFormat, Utc};

use super::describe_error as describe;
use crate::ids::{JobId, MediaId};
use crate::job::{Job, JobError, JobStatus, MediaItem};
use crate::ports::{Claim, JobStore, StoreError, Transition};
use crate::request::{GenerateRequest, OutputFormat};

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoJobStore {
    client: Client,
    table: String,
}

impl DynamoJobStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn job_key(id: JobId) -> AttributeValue {
        AttributeValue::S(format!("JOB#{id}"))
    }

    /// A conditional update of a claimed job: applies only while the job is `processing` under
    /// the same claim (its `attempts`), so a worker whose lease was taken over changes nothing.
    async fn update_claimed(
        &self,
        claimed: &Job,
        set: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Transition, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", Self::job_key(claimed.id))
            .update_expression(set)
            .condition_expression("#status = :processing AND attempts = :attempt")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":attempt", n(claimed.attempts));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(Transition::Applied),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(Transition::Stale),
            Err(err) => Err(unavailable(&err)),
        }
    }
}

fn is_condition_failure(err: Option<&aws_sdk_dynamodb::operation::update_item::UpdateItemError>) -> bool {
    err.is_some_and(|e| e.is_conditional_check_failed_exception())
}

fn unavailable(err: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::Unavailable(describe(err))
}

impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(job_to_item(job)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(job.id))
            }
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", Self::job_key(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        output.item.as_ref().map(job_from_item).transpose()
    }

    async fn media(&self, id: MediaId) -> Result<Option<MediaItem>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("MEDIA#{id}")))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        output.item.as_ref().map(media_from_item).transpose()
    }

    async fn job_media(&self, job: &Job) -> Result<Vec<MediaItem>, StoreError> {
        let mut media = Vec::with_capacity(job.media_ids.len());
        if job.media_ids.is_empty() {
            return Ok(media);
        }
        let keys: Vec<Item> = job
            .media_ids
            .iter()
            .map(|id| HashMap::from([("pk".to_owned(), s(format!("MEDIA#{id}")))]))
            .collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .map_err(|e| unavailable(&e))?,
        );
        // A batch read may answer part of the keys under load; ask again for the rest.
        for _ in 0..5 {
            let Some(keys) = pending.take() else { break };
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            for item in output
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                media.push(media_from_item(&item)?);
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut rest| rest.remove(&self.table))
                .filter(|rest| !rest.keys.is_empty());
        }
        if pending.is_some() {
            return Err(StoreError::Unavailable(
                "media items still unread after 5 batch reads".into(),
            ));
        }
        media.sort_by_key(|m| m.index);
        Ok(media)
    }

    async fn fail_queued(&self, id: JobId, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", Self::job_key(id))
            .update_expression(
                "SET #status = :failed, error_code = :code, error_message = :message, \
                 updated_at = :now, completed_at = :now",
            )
            .condition_expression("#status = :queued")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(JobStatus::Failed.as_str()))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .expression_attribute_values(":code", s(&error.code))
            .expression_attribute_values(":message", s(&error.message))
            .expression_attribute_values(":now", time(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(Transition::Stale),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn claim(&self, id: JobId, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", Self::job_key(id))
            .update_expression(
                "SET #status = :processing, attempts = attempts + :one, updated_at = :now, \
                 started_at = if_not_exists(started_at, :now), lease_until = :lease",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status = :queued OR (#status = :processing AND lease_until < :now_ms))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", time(now))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .expression_attribute_values(":lease", n(lease_until.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Unavailable("claim returned no attributes".into()))?;
                return Ok(Claim::Claimed(Box::new(job_from_item(&item)?)));
            }
            Err(err) => err,
        };
        let Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) =
            err.as_service_error()
        else {
            return Err(unavailable(&err));
        };
        let Some(current) = failed.item() else {
            return Ok(Claim::Missing);
        };
        let current = job_from_item(current)?;
        if current.status.is_final() {
            return Ok(Claim::Final(current.status));
        }
        Ok(Claim::Held {
            until: current.lease_until.unwrap_or(now),
        })
    }

    async fn complete(&self, claimed: &Job, media: &[MediaItem], now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let mut items = Vec::with_capacity(media.len() + 1);
        for item in media {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(media_to_item(item)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| unavailable(&e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let media_ids = AttributeValue::L(media.iter().map(|m| s(m.id.to_string())).collect());
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", Self::job_key(claimed.id))
            .update_expression(
                "SET #status = :succeeded, media_ids = :media, updated_at = :now, completed_at = :now \
                 REMOVE lease_until, error_code, error_message",
            )
            .condition_expression("#status = :processing AND attempts = :attempt")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":succeeded", s(JobStatus::Succeeded.as_str()))
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":attempt", n(claimed.attempts))
            .expression_attribute_values(":media", media_ids)
            .expression_attribute_values(":now", time(now))
            .build()
            .map_err(|e| unavailable(&e))?;
        items.push(TransactWriteItem::builder().update(update).build());
        let job_index = items.len() - 1;

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Transition::Applied),
            Err(err) => err,
        };
        if let Some(
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                canceled,
            ),
        ) = err.as_service_error()
        {
            let job_condition_failed = canceled
                .cancellation_reasons()
                .get(job_index)
                .and_then(|reason| reason.code())
                .is_some_and(|code| code == "ConditionalCheckFailed");
            if job_condition_failed {
                return Ok(Transition::Stale);
            }
        }
        Err(unavailable(&err))
    }

    async fn release(&self, claimed: &Job, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.update_claimed(
            claimed,
            "SET #status = :queued, error_code = :code, error_message = :message, updated_at = :now \
             REMOVE lease_until",
            vec![
                (":queued", s(JobStatus::Queued.as_str())),
                (":code", s(&error.code)),
                (":message", s(&error.message)),
                (":now", time(now)),
            ],
        )
        .await
    }

    async fn fail(&self, claimed: &Job, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.update_claimed(
            claimed,
            "SET #status = :failed, error_code = :code, error_message = :message, updated_at = :now, \
             completed_at = :now REMOVE lease_until",
            vec![
                (":failed", s(JobStatus::Failed.as_str())),
                (":code", s(&error.code)),
                (":message", s(&error.message)),
                (":now", time(now)),
            ],
        )
        .await
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn time(value: DateTime<Utc>) -> AttributeValue {
    s(value.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn job_to_item(job: &Job) -> Item {
    let request = &job.request;
    let mut item = HashMap::from([
        ("pk".to_owned(), DynamoJobStore::job_key(job.id)),
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

fn media_to_item(media: &MediaItem) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("MEDIA#{}", media.id))),
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
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| self.corrupt(name, "is not an RFC 3339 time"))
            })
            .transpose()
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }
}

impl FromStr for OutputFormat {
    type Err = ();
    fn from_str(raw: &str) -> Result<Self, ()> {
        OutputFormat::parse(raw).ok_or(())
    }
}

fn job_from_item(item: &Item) -> Result<Job, StoreError> {
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

fn media_from_item(item: &Item) -> Result<MediaItem, StoreError> {
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
    use crate::request::tests::sample_request;
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
