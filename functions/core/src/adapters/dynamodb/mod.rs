//! Jobs, media, API keys, idempotency keys and owners' webhook signing states in one DynamoDB
//! table keyed by `pk`, with one index (`by_owner`) for listings (docs/design.md, "Stored data").
//! Every job's state change is a conditional write on the current state, so late or duplicate
//! messages cannot move a job back. How each thing maps onto attributes is in [`item`].

mod gate;
mod item;
mod quota;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::describe_error as describe;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Job, JobError, JobStatus, MediaItem, Parked, RunRecord};
use crate::domain::keys::{KeyHash, KeyRecord, Owner};
use crate::domain::limits::{KeyLimits, RouteClass, WINDOW_SECONDS, Window};
use crate::domain::listing::{Cursor, ListQuery, MAX_READ};
use crate::domain::retry::Backoff;
use crate::domain::webhook::SigningState;
use crate::ports::{
    Added, Cancel, Claim, Commit, Counted, Created, IdempotencyClaim, JobPage, JobStore, KeyStore, SigningStore,
    StoreError, Stranded, Transition, UnsentJob,
};
use item::{
    FINAL_STATUS, INDEX, Item, KEYS_PARTITION, UNSENT_INDEX, WEBHOOK_PENDING, idempotency_from_item, idempotency_item,
    idempotency_pk, job_from_item, job_pk, job_sort_key, job_to_item, key_from_item, key_pk, key_to_item,
    media_from_item, media_pk, media_to_item, n, owner_partition, predictions, rate_pk, s, signing_pk,
    signing_state_from_item, time, unsent_created_at, unsent_partitions, waits_pk,
};

pub use item::OWNER_INDEX_ATTRIBUTES;

/// Tries of a transaction that DynamoDB cancels for a conflict with a concurrent one.
const TRANSACTION_TRIES: u32 = 4;

/// Tries of a batch read that DynamoDB answers in part (unprocessed keys, under load), and the
/// waits between them, which DynamoDB asks for (docs/design.md, "Failure rules"): at most 750 ms
/// in all.
const BATCH_READS: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(400), 5);

/// The keys of a batch read. A job's media items are read strongly consistent: they are asked
/// for right after the commit that wrote them, where an eventually consistent read may miss them
/// (docs/design.md, "Stored data"). A listing's jobs are not: it costs half.
fn batch_keys(keys: Vec<Item>, consistent: bool) -> Result<KeysAndAttributes, StoreError> {
    KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(consistent)
        .build()
        .map_err(|e| unavailable(&e))
}

/// Reads `keys` with `read`, which answers the items it read and the keys it left unread; asks
/// again for those after a wait, until none are left. Keys still unread after the last try are
/// an error, never a short answer.
async fn read_whole<K, T, F, Fut>(keys: K, backoff: &Backoff, mut read: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<K>), StoreError>>,
{
    let mut items = Vec::new();
    let mut pending = keys;
    let mut attempt = 1;
    loop {
        let (found, rest) = read(pending).await?;
        items.extend(found);
        let Some(rest) = rest else { return Ok(items) };
        if attempt >= backoff.max_attempts {
            return Err(StoreError::Unavailable(format!(
                "items still unread after {attempt} batch reads"
            )));
        }
        tokio::time::sleep(backoff.delay(attempt)).await;
        pending = rest;
        attempt += 1;
    }
}

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

    /// `queued → canceled`: the canceled job, or the job as it was (`None` if there is none).
    async fn cancel_queued(&self, id: JobId, now: DateTime<Utc>) -> Result<Result<Job, Option<Job>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression(
                "SET #status = :canceled, final_status = :canceled, updated_at = :now, completed_at = :now REMOVE lease_until, gsi2pk, gsi2sk",
            )
            .condition_expression("#status = :queued")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":canceled", s(JobStatus::Canceled.as_str()))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .expression_attribute_values(":now", time(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        conditional_outcome(result.map(|output| output.attributes))
    }

    /// Marks a `processing` job for cancelling: the marked job, or the job as it was.
    async fn request_cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Result<Job, Option<Job>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression("SET cancel_requested = :yes, updated_at = :now")
            .condition_expression("#status = :processing")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":now", time(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        conditional_outcome(result.map(|output| output.attributes))
    }

    /// `queued → failed` under `condition` (which may ask more than `queued`): the failed job, or
    /// `None` when the condition did not hold.
    async fn fail_if_queued(
        &self,
        id: JobId,
        error: &JobError,
        now: DateTime<Utc>,
        condition: &str,
    ) -> Result<Option<Job>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression(
                "SET #status = :failed, final_status = :failed, error_code = :code, error_message = :message, \
                 updated_at = :now, completed_at = :now REMOVE gsi2pk, gsi2sk",
            )
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(JobStatus::Failed.as_str()))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .expression_attribute_values(":code", s(&error.code))
            .expression_attribute_values(":message", s(&error.message))
            .expression_attribute_values(":now", time(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output
                    .attributes
                    .ok_or_else(|| StoreError::Unavailable("an update returned no attributes".into()))?;
                let failed = job_from_item(&item)?;
                self.give_back(&failed).await;
                Ok(Some(failed))
            }
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(None),
            Err(err) => Err(unavailable(&err)),
        }
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
            .key("pk", job_pk(claimed.id))
            .update_expression(set)
            .condition_expression("#status = :processing AND attempts = :attempt")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":attempt", n(claimed.attempts));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        transition(request.send().await)
    }

    /// The item of this key, read strongly consistent: a job, key or record is read right after
    /// the write that made or changed it (docs/design.md, "Stored data").
    async fn read(&self, pk: AttributeValue) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(output.item)
    }

    /// The items of these keys (at most 100), read strongly consistent: all of them, or an
    /// error, never part of them.
    async fn read_all(&self, keys: Vec<AttributeValue>) -> Result<Vec<Item>, StoreError> {
        self.read_batch(keys, true).await
    }

    /// The items of these keys (at most 100), `consistent` or not: all of them that exist, or an
    /// error, never part of them.
    async fn read_batch(&self, keys: Vec<AttributeValue>, consistent: bool) -> Result<Vec<Item>, StoreError> {
        let keys: Vec<Item> = keys
            .into_iter()
            .map(|pk| HashMap::from([("pk".to_owned(), pk)]))
            .collect();
        let (client, table) = (&self.client, &self.table);
        read_whole(keys, &BATCH_READS, |keys| async move {
            let output = client
                .batch_get_item()
                .request_items(table, batch_keys(keys, consistent)?)
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            let found = output.responses.unwrap_or_default().remove(table).unwrap_or_default();
            let rest = output
                .unprocessed_keys
                .and_then(|mut rest| rest.remove(table))
                .map(|rest| rest.keys)
                .filter(|keys| !keys.is_empty());
            Ok((found, rest))
        })
        .await
    }

    /// The jobs of these `by_owner` entries, in their order, as they are now; a job gone since
    /// (its retention over) is left out.
    async fn listed_jobs(&self, entries: &[Item]) -> Result<Vec<Job>, StoreError> {
        let keys: Vec<AttributeValue> = entries.iter().filter_map(|entry| entry.get("pk").cloned()).collect();
        let mut found = HashMap::with_capacity(keys.len());
        // BatchGetItem reads at most 100 keys.
        for chunk in keys.chunks(100) {
            for item in self.read_batch(chunk.to_vec(), false).await? {
                let pk = item.get("pk").and_then(|pk| pk.as_s().ok()).cloned();
                found.extend(pk.map(|pk| (pk, item)));
            }
        }
        keys.iter()
            .filter_map(|pk| pk.as_s().ok().and_then(|pk| found.remove(pk)))
            .map(|item| job_from_item(&item))
            .collect()
    }

    /// The unsent jobs of one partition of the unsent index made before `before`, oldest first,
    /// at most `limit` of them.
    async fn unsent_in(
        &self,
        partition: String,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<UnsentJob>, StoreError> {
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(UNSENT_INDEX)
                .key_condition_expression("gsi2pk = :unsent AND gsi2sk < :before")
                .expression_attribute_values(":unsent", s(partition.as_str()))
                .expression_attribute_values(":before", time(before))
                .limit(i32::try_from((limit as usize - jobs.len()).max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            for entry in output.items() {
                jobs.push(unsent_job(entry)?);
            }
            match output.last_evaluated_key {
                Some(last) if jobs.len() < limit as usize => start = Some(last),
                _ => return Ok(jobs),
            }
        }
    }

    /// After a claim's final write: gives the slot back if the write applied.
    async fn gave_back(&self, claimed: &Job, ended: JobStatus, transition: Transition) {
        if transition == Transition::Applied {
            let mut job = claimed.clone();
            job.status = ended;
            self.give_back(&job).await;
        }
    }
}

/// The job an update returned, or, when its condition failed, the job as it was (`None` if
/// there is no such job).
fn conditional_outcome<R>(
    result: Result<Option<Item>, aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>>,
) -> Result<Result<Job, Option<Job>>, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(Some(item)) => Ok(Ok(job_from_item(&item)?)),
        Ok(None) => Err(StoreError::Unavailable("an update returned no attributes".into())),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                Ok(Err(failed.item().map(job_from_item).transpose()?))
            }
            _ => Err(unavailable(&err)),
        },
    }
}

/// The job an unsent index entry stands for, and when it was made (its `gsi2sk`).
fn unsent_job(entry: &Item) -> Result<UnsentJob, StoreError> {
    let id = entry
        .get("pk")
        .and_then(|pk| pk.as_s().ok())
        .and_then(|pk| pk.strip_prefix("JOB#"))
        .and_then(|raw| JobId::parse(raw).ok());
    let created_at = entry
        .get("gsi2sk")
        .and_then(|key| key.as_s().ok())
        .and_then(|key| unsent_created_at(key));
    match (id, created_at) {
        (Some(id), Some(created_at)) => Ok(UnsentJob { id, created_at }),
        _ => Err(StoreError::Corrupt {
            pk: format!("{:?}", entry.get("pk")),
            reason: "an unsent index entry that is not a job's".into(),
        }),
    }
}

/// Where a listing read stopped: the job id of the last index entry it read (`gsi1sk`).
fn cursor_at(last: &Item) -> Result<Cursor, StoreError> {
    last.get("gsi1sk")
        .and_then(|key| key.as_s().ok())
        .and_then(|raw| JobId::parse(raw).ok())
        .map(|after| Cursor { after })
        .ok_or_else(|| StoreError::Corrupt {
            pk: format!("{:?}", last.get("pk")),
            reason: "a listing stopped at an index entry that is not a job".into(),
        })
}

/// The tail of a claim's final write's SET clause that marks the job's webhook pending, its value
/// added to `values`; nothing for a job without a webhook to announce (docs/design.md, "Webhooks").
fn webhook_mark(claimed: &Job, values: &mut Vec<(&str, AttributeValue)>) -> String {
    if claimed.request.webhook_url.is_none() {
        return String::new();
    }
    values.push((":webhook_pending", AttributeValue::Bool(true)));
    format!(", {WEBHOOK_PENDING} = :webhook_pending")
}

/// A conditional update's outcome: `Stale` if its condition failed.
fn transition<T, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>>,
) -> Result<Transition, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(Transition::Applied),
        Err(err) if is_condition_failure(err.as_service_error()) => Ok(Transition::Stale),
        Err(err) => Err(unavailable(&err)),
    }
}

fn is_condition_failure(err: Option<&UpdateItemError>) -> bool {
    err.is_some_and(|e| e.is_conditional_check_failed_exception())
}

fn unavailable(err: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::Unavailable(describe(err))
}

impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job, idempotency: Option<IdempotencyClaim<'_>>) -> Result<Created, StoreError> {
        let job_item = job_to_item(job);
        let Some(claim) = idempotency else {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(job_item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            return match result {
                Ok(_) => Ok(Created::New),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Err(StoreError::AlreadyExists(job.id))
                }
                Err(err) => Err(unavailable(&err)),
            };
        };
        let put_job = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        // The key is taken unless its record is missing or has expired (TTL deletes lazily).
        let put_key = Put::builder()
            .table_name(&self.table)
            .set_item(Some(idempotency_item(
                &job.owner,
                claim.key,
                job.id,
                claim.fingerprint,
                claim.expires_at,
            )))
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(job.created_at.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| unavailable(&e))?;
        let items = vec![
            TransactWriteItem::builder().put(put_job).build(),
            TransactWriteItem::builder().put(put_key).build(),
        ];
        for try_number in 1..=TRANSACTION_TRIES {
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(Created::New),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) = err.as_service_error() else {
                return Err(unavailable(&err));
            };
            let reasons = canceled.cancellation_reasons();
            let code = |index: usize| reasons.get(index).and_then(|reason| reason.code()).unwrap_or_default();
            if code(0) == "ConditionalCheckFailed" {
                return Err(StoreError::AlreadyExists(job.id));
            }
            if code(1) == "ConditionalCheckFailed" {
                let existing = reasons.get(1).and_then(|reason| reason.item()).ok_or_else(|| {
                    StoreError::Unavailable("the taken idempotency key came back without its record".into())
                })?;
                let (job_id, fingerprint) = idempotency_from_item(existing)?;
                return Ok(Created::Existing { job_id, fingerprint });
            }
            if try_number < TRANSACTION_TRIES && (code(0) == "TransactionConflict" || code(1) == "TransactionConflict")
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(try_number))).await;
                continue;
            }
            return Err(unavailable(&err));
        }
        Err(StoreError::Unavailable("the job's transaction kept conflicting".into()))
    }

    async fn release_idempotency(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
        job_id: JobId,
    ) -> Result<Transition, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", idempotency_pk(owner, key))
            .condition_expression("job_id = :job")
            .expression_attribute_values(":job", s(job_id.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Transition::Applied),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Transition::Stale)
            }
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn idempotent_job(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Option<(JobId, String)>, StoreError> {
        let item = self.read(idempotency_pk(owner, key)).await?;
        let Some(item) = item else { return Ok(None) };
        // TTL deletes lazily: an expired record holds no more.
        let expired = item
            .get("ttl")
            .and_then(|ttl| ttl.as_n().ok())
            .and_then(|raw| raw.parse::<i64>().ok())
            .is_some_and(|ttl| ttl < now.timestamp());
        if expired {
            return Ok(None);
        }
        idempotency_from_item(&item).map(Some)
    }

    async fn list(&self, owner: &Owner, query: &ListQuery) -> Result<JobPage, StoreError> {
        // One more than the page, to know whether there is a next page.
        let wanted = query.limit as usize + 1;
        // A filter that matches little must not read the whole partition in one request
        // (docs/design.md, "Listing"): the Query's Limit counts the items read, before the filter.
        let budget = MAX_READ as usize;
        let mut jobs = Vec::with_capacity(wanted);
        let mut read = 0;
        let mut start: Option<Item> = None;
        let stopped = loop {
            let ask = match query.status {
                Some(_) => budget - read,
                None => (wanted - jobs.len()).min(budget - read),
            };
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX)
                .scan_index_forward(false)
                .expression_attribute_values(":owner", owner_partition(owner))
                .limit(i32::try_from(ask).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            request = match query.after {
                Some(Cursor { after }) => request
                    .key_condition_expression("gsi1pk = :owner AND gsi1sk < :after")
                    .expression_attribute_values(":after", job_sort_key(after)),
                None => request.key_condition_expression("gsi1pk = :owner"),
            };
            // The index knows a job's status only once it is final: a filter keeps the jobs that
            // may match (those not final yet too, and those written before `final_status` was),
            // and the jobs read below are held to it.
            request = match query.status {
                Some(status) if status.is_final() => request
                    .filter_expression("#final = :status OR attribute_not_exists(#final)")
                    .expression_attribute_names("#final", FINAL_STATUS)
                    .expression_attribute_values(":status", s(status.as_str())),
                Some(_) => request
                    .filter_expression("attribute_not_exists(#final)")
                    .expression_attribute_names("#final", FINAL_STATUS),
                None => request,
            };
            let output = request.send().await.map_err(|e| unavailable(&e))?;
            // At least one, so that the loop ends whatever the answer says.
            read += usize::try_from(output.scanned_count()).unwrap_or(0).max(1);
            let listed = self.listed_jobs(output.items()).await?;
            jobs.extend(
                listed
                    .into_iter()
                    .filter(|job| query.status.is_none_or(|status| job.status == status)),
            );
            match output.last_evaluated_key {
                Some(last) if jobs.len() < wanted && read < budget => start = Some(last),
                last => break last,
            }
        };
        let next = if jobs.len() > query.limit as usize {
            jobs.truncate(query.limit as usize);
            jobs.last().map(|job| Cursor { after: job.id })
        } else {
            // The page holds every match read; the read stopped at its bound or at the end.
            stopped.as_ref().map(cursor_at).transpose()?
        };
        Ok(JobPage { jobs, next })
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<Cancel, StoreError> {
        // A job can move between the two writes (sent back to the queue, say): then try again.
        for _ in 0..3 {
            let current = match self.cancel_queued(id, now).await? {
                Ok(canceled) => {
                    self.give_back(&canceled).await;
                    return Ok(Cancel::Canceled(Box::new(canceled)));
                }
                Err(None) => return Ok(Cancel::Missing),
                Err(Some(current)) => current,
            };
            if current.status.is_final() {
                return Ok(Cancel::AlreadyFinal(Box::new(current)));
            }
            match self.request_cancel(id, now).await? {
                Ok(requested) => return Ok(Cancel::Requested(Box::new(requested))),
                Err(None) => return Ok(Cancel::Missing),
                Err(Some(moved)) if moved.status.is_final() => return Ok(Cancel::AlreadyFinal(Box::new(moved))),
                Err(Some(_)) => {}
            }
        }
        Err(StoreError::Unavailable(
            "the job kept changing while it was being canceled".into(),
        ))
    }

    async fn finish_canceled(&self, claimed: &Job, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let mut values = vec![(":canceled", s(JobStatus::Canceled.as_str())), (":now", time(now))];
        let mark = webhook_mark(claimed, &mut values);
        let transition = self
            .update_claimed(
                claimed,
                &format!("SET #status = :canceled, final_status = :canceled, updated_at = :now, completed_at = :now{mark} REMOVE lease_until"),
                values,
            )
            .await?;
        self.gave_back(claimed, JobStatus::Canceled, transition).await;
        Ok(transition)
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let item = self.read(job_pk(id)).await?;
        item.as_ref().map(job_from_item).transpose()
    }

    async fn media(&self, id: MediaId) -> Result<Option<MediaItem>, StoreError> {
        // Asked right after the job's commit, which wrote it (docs/design.md, "Stored data").
        let item = self.read(media_pk(id)).await?;
        item.as_ref().map(media_from_item).transpose()
    }

    async fn job_media(&self, job: &Job) -> Result<Vec<MediaItem>, StoreError> {
        if job.media_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = job.media_ids.iter().map(|id| media_pk(*id)).collect();
        let items = self.read_all(keys).await?;
        let mut media = items.iter().map(media_from_item).collect::<Result<Vec<_>, _>>()?;
        media.sort_by_key(|m| m.index);
        Ok(media)
    }

    async fn mark_sent(&self, id: JobId) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression("REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn mark_webhook_queued(&self, id: JobId) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression(format!("REMOVE {WEBHOOK_PENDING}"))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn unsent(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<UnsentJob>, StoreError> {
        // Every shard at once, each read up to the limit; the oldest of them all are the answer.
        let shards = unsent_partitions().map(|partition| self.unsent_in(partition, before, limit));
        let mut jobs: Vec<UnsentJob> = futures::future::try_join_all(shards).await?.concat();
        jobs.sort_by_key(|job| (job.created_at, job.id));
        jobs.truncate(limit as usize);
        Ok(jobs)
    }

    async fn fail_unsent(&self, id: JobId, error: &JobError, now: DateTime<Utc>) -> Result<Option<Job>, StoreError> {
        self.fail_if_queued(id, error, now, "#status = :queued AND attribute_exists(gsi2pk)")
            .await
    }

    async fn fail_queued(&self, id: JobId, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        Ok(match self.fail_if_queued(id, error, now, "#status = :queued").await? {
            Some(_) => Transition::Applied,
            None => Transition::Stale,
        })
    }

    async fn fail_stranded(&self, id: JobId, error: &JobError, now: DateTime<Utc>) -> Result<Stranded, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression(
                "SET #status = :failed, final_status = :failed, error_code = :code, error_message = :message, updated_at = :now, \
                 completed_at = :now REMOVE lease_until, gsi2pk, gsi2sk",
            )
            .condition_expression(
                "attribute_exists(pk) AND (#status = :queued OR (#status = :processing AND lease_until < :now_ms))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(JobStatus::Failed.as_str()))
            .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .expression_attribute_values(":code", s(&error.code))
            .expression_attribute_values(":message", s(&error.message))
            .expression_attribute_values(":now", time(now))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(match conditional_outcome(result.map(|output| output.attributes))? {
            Ok(failed) => {
                self.give_back(&failed).await;
                Stranded::Failed(Box::new(failed))
            }
            Err(None) => Stranded::Missing,
            Err(Some(current)) if current.status.is_final() => Stranded::Final(Box::new(current)),
            Err(Some(current)) => Stranded::Held {
                until: current.lease_until.unwrap_or(now),
            },
        })
    }

    async fn claim(&self, id: JobId, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Claim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", job_pk(id))
            .update_expression(
                "SET #status = :processing, attempts = attempts + :one, updated_at = :now, \
                 started_at = if_not_exists(started_at, :now), lease_until = :lease REMOVE gsi2pk, gsi2sk",
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
        let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
            return Err(unavailable(&err));
        };
        let Some(current) = failed.item() else {
            return Ok(Claim::Missing);
        };
        let current = job_from_item(current)?;
        if current.status.is_final() {
            return Ok(Claim::Final(Box::new(current)));
        }
        Ok(Claim::Held {
            until: current.lease_until.unwrap_or(now),
        })
    }

    async fn complete(
        &self,
        claimed: &Job,
        media: &[MediaItem],
        record: &RunRecord,
        now: DateTime<Utc>,
    ) -> Result<Commit, StoreError> {
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
        let mut values = vec![
            (":succeeded", s(JobStatus::Succeeded.as_str())),
            (":processing", s(JobStatus::Processing.as_str())),
            (":attempt", n(claimed.attempts)),
            (":media", media_ids),
            (":now", time(now)),
            (":attempts", item::model_attempts(&record.model_attempts)),
            (":cost", n(record.cost_microdollars)),
        ];
        let mark = webhook_mark(claimed, &mut values);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", job_pk(claimed.id))
            .update_expression(format!(
                "SET #status = :succeeded, final_status = :succeeded, media_ids = :media, updated_at = :now, completed_at = :now, \
                 model_attempts = :attempts, cost = :cost{mark} \
                 REMOVE lease_until, error_code, error_message"
            ))
            .condition_expression(
                "#status = :processing AND attempts = :attempt AND attribute_not_exists(cancel_requested)",
            )
            .expression_attribute_names("#status", "status")
            // Why it failed comes back with the answer, so no read is needed to tell a cancel
            // from a takeover, or from this commit's own earlier try.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        let update = update.build().map_err(|e| unavailable(&e))?;
        items.push(TransactWriteItem::builder().update(update).build());
        let job_index = items.len() - 1;

        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                self.gave_back(claimed, JobStatus::Succeeded, Transition::Applied).await;
                return Ok(Commit::Applied);
            }
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) = err.as_service_error()
            && let Some(reason) = canceled.cancellation_reasons().get(job_index)
            && reason.code() == Some("ConditionalCheckFailed")
        {
            let current = reason.item().map(job_from_item).transpose()?;
            return Ok(match current {
                Some(job)
                    if job.status == JobStatus::Processing
                        && job.attempts == claimed.attempts
                        && job.cancel_requested =>
                {
                    Commit::CancelRequested
                }
                // An earlier try of this commit went through and its answer was lost: only this
                // claim (its `attempts`) can have committed these media ids (docs/design.md,
                // "Job states").
                Some(job)
                    if job.status == JobStatus::Succeeded
                        && job.attempts == claimed.attempts
                        && job.media_ids.iter().eq(media.iter().map(|m| &m.id)) =>
                {
                    self.give_back(&job).await;
                    Commit::Applied
                }
                _ => Commit::Stale,
            });
        }
        Err(unavailable(&err))
    }

    async fn park(&self, claimed: &Job, parked: &Parked<'_>, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let mut values = vec![
            (":until", n(parked.lease_until.timestamp_millis())),
            (":now", time(now)),
            (":attempts", item::model_attempts(parked.attempts)),
        ];
        let set = "SET lease_until = :until, updated_at = :now, model_attempts = :attempts";
        let expression = match parked.slot {
            Some(slot) => {
                values.push((":slot_model", s(&slot.model)));
                values.push((":slot_at", n(slot.at.timestamp_millis())));
                format!("{set}, slot_model = :slot_model, slot_at = :slot_at")
            }
            // The job's run started, or it waits for no slot: it holds none.
            None => format!("{set} REMOVE slot_model, slot_at"),
        };
        self.update_claimed(claimed, &expression, values).await
    }

    async fn release(&self, claimed: &Job, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        self.update_claimed(
            claimed,
            "SET #status = :queued, error_code = :code, error_message = :message, updated_at = :now \
             REMOVE lease_until, slot_model, slot_at",
            vec![
                (":queued", s(JobStatus::Queued.as_str())),
                (":code", s(&error.code)),
                (":message", s(&error.message)),
                (":now", time(now)),
            ],
        )
        .await
    }

    async fn note_predictions(&self, claimed: &Job, model: &str, ids: &[String]) -> Result<Transition, StoreError> {
        self.update_claimed(
            claimed,
            "SET predictions = :ids, runs_model = :model",
            vec![(":ids", predictions(ids)), (":model", s(model))],
        )
        .await
    }

    async fn fail(&self, claimed: &Job, error: &JobError, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let mut values = vec![
            (":failed", s(JobStatus::Failed.as_str())),
            (":code", s(&error.code)),
            (":message", s(&error.message)),
            (":now", time(now)),
        ];
        let mark = webhook_mark(claimed, &mut values);
        let transition = self
            .update_claimed(
                claimed,
                &format!(
                    "SET #status = :failed, final_status = :failed, error_code = :code, error_message = :message, updated_at = :now, \
                     completed_at = :now{mark} REMOVE lease_until"
                ),
                values,
            )
            .await?;
        self.gave_back(claimed, JobStatus::Failed, transition).await;
        Ok(transition)
    }
}

impl KeyStore for DynamoJobStore {
    async fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, StoreError> {
        let item = self.read(key_pk(hash)).await?;
        item.as_ref().map(key_from_item).transpose()
    }

    async fn add(&self, record: &KeyRecord) -> Result<Added, StoreError> {
        // Never over a stored key: that could undo its revocation or give it to another owner.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key_to_item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Added::New),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => match failed.item() {
                    Some(item) => Ok(Added::Existing(key_from_item(item)?)),
                    None => Err(StoreError::Unavailable("a refused key put returned no record".into())),
                },
                _ => Err(unavailable(&err)),
            },
        }
    }

    async fn all(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(INDEX)
                .key_condition_expression("gsi1pk = :keys")
                .expression_attribute_values(":keys", s(KEYS_PARTITION))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            for item in output.items() {
                records.push(key_from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(records),
            }
        }
    }

    async fn revoke(&self, hash: &KeyHash, now: DateTime<Utc>) -> Result<Transition, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", key_pk(hash))
            .update_expression("SET revoked_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":now", time(now))
            .send()
            .await;
        transition(result)
    }

    async fn set_limits(&self, hash: &KeyHash, limits: KeyLimits) -> Result<Transition, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", key_pk(hash))
            .update_expression(
                "SET creates_per_minute = :creates, others_per_minute = :others, concurrent_waits = :waits",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":creates", n(limits.creates_per_minute))
            .expression_attribute_values(":others", n(limits.others_per_minute))
            .expression_attribute_values(":waits", n(limits.concurrent_waits))
            .send()
            .await;
        transition(result)
    }

    async fn start_wait(
        &self,
        hash: &KeyHash,
        limit: u32,
        now: DateTime<Utc>,
        hold: std::time::Duration,
    ) -> Result<bool, StoreError> {
        // A count whose last wait started more than `hold` ago is stale (its function died before
        // it could end the wait): it starts again from this one (docs/design.md, "Rate limits").
        let until = n((now + hold).timestamp());
        let fresh = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", waits_pk(hash))
            .update_expression("SET waits = :one, #ttl = :until")
            .condition_expression("attribute_not_exists(waits) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":until", until.clone())
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match fresh {
            Ok(_) => return Ok(true),
            Err(err) if is_condition_failure(err.as_service_error()) => {}
            Err(err) => return Err(unavailable(&err)),
        }
        let another = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", waits_pk(hash))
            .update_expression("ADD waits :one SET #ttl = :until")
            .condition_expression("waits < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":until", until)
            .expression_attribute_values(":limit", n(limit))
            .send()
            .await;
        match another {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(false),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn end_wait(&self, hash: &KeyHash) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", waits_pk(hash))
            .update_expression("ADD waits :less")
            .condition_expression("waits > :none")
            .expression_attribute_values(":less", n(-1))
            .expression_attribute_values(":none", n(0))
            .send()
            .await;
        match result {
            // Already zero: the count was started afresh meanwhile.
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn count_request(
        &self,
        hash: &KeyHash,
        class: RouteClass,
        window: Window,
        limit: u32,
    ) -> Result<Counted, StoreError> {
        // A refused request is not counted, so the count never passes the limit; the record goes
        // a minute after its window (docs/design.md, "Rate limits").
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", rate_pk(hash, class, window))
            .update_expression("ADD requests :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .condition_expression("attribute_not_exists(requests) OR requests < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":ttl", n(window.end() + WINDOW_SECONDS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let count = output
                    .attributes()
                    .and_then(|item| item.get("requests"))
                    .and_then(|value| value.as_n().ok())
                    .and_then(|raw| raw.parse().ok())
                    .ok_or_else(|| StoreError::Unavailable("a request count came back without its count".into()))?;
                Ok(Counted::Within(count))
            }
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(Counted::Over),
            Err(err) => Err(unavailable(&err)),
        }
    }
}

impl SigningStore for DynamoJobStore {
    async fn signing_state(&self, owner: &Owner) -> Result<SigningState, StoreError> {
        // Strongly consistent: a delivery right after a rotation's answer signs with its secret.
        let item = self.read(signing_pk(owner)).await?;
        item.as_ref()
            .map_or(Ok(SigningState::default()), signing_state_from_item)
    }

    async fn next_generation(
        &self,
        owner: &Owner,
        grace_until: Option<DateTime<Utc>>,
    ) -> Result<SigningState, StoreError> {
        // One unconditional update: every operand reads the item as it was, so concurrent
        // rotations each move one generation on and none is lost.
        let next = "#owner = :owner, generation = if_not_exists(generation, :zero) + :one";
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", signing_pk(owner))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        let request = match grace_until {
            Some(until) => request
                .update_expression(format!(
                    "SET {next}, previous_generation = if_not_exists(generation, :zero), grace_until = :until"
                ))
                .expression_attribute_values(":until", time(until)),
            None => request.update_expression(format!("SET {next} REMOVE previous_generation, grace_until")),
        };
        let output = request.send().await.map_err(|e| unavailable(&e))?;
        let item = output
            .attributes
            .ok_or_else(|| StoreError::Unavailable("an update returned no attributes".into()))?;
        signing_state_from_item(&item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::ready;

    const FAST: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 4);

    #[tokio::test]
    async fn unread_keys_are_asked_again_until_none_are_left() {
        let mut asked = Vec::new();
        // Each answer reads one key and hands the rest back, as a partial batch answer does.
        let items = read_whole(vec![1, 2, 3, 4], &FAST, |keys: Vec<u32>| {
            asked.push(keys.clone());
            let rest = (keys.len() > 1).then(|| keys[1..].to_vec());
            ready(Ok((keys[..1].to_vec(), rest)))
        })
        .await
        .unwrap();
        assert_eq!(items, [1, 2, 3, 4]);
        assert_eq!(asked, [vec![1, 2, 3, 4], vec![2, 3, 4], vec![3, 4], vec![4]]);
    }

    #[tokio::test]
    async fn keys_still_unread_after_the_last_try_are_an_error_not_a_short_answer() {
        let mut reads = 0;
        let result = read_whole((1..=10).collect(), &FAST, |keys: Vec<u32>| {
            reads += 1;
            ready(Ok((keys[..1].to_vec(), Some(keys[1..].to_vec()))))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
        assert_eq!(reads, FAST.max_attempts);
    }

    #[tokio::test]
    async fn a_failed_read_fails_at_once() {
        let mut reads = 0;
        let result: Result<Vec<u32>, _> = read_whole(vec![1], &FAST, |_| {
            reads += 1;
            ready(Err(StoreError::Unavailable("throttled".into())))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
        assert_eq!(reads, 1);
    }
}
