//! Jobs and media in one DynamoDB table keyed by `pk` (docs/design.md, "Stored data"). Every
//! state change is a conditional write on the current state, so late or duplicate messages cannot
//! move a job back. How a job or media item maps onto attributes is in [`item`].

mod item;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::describe_error as describe;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Job, JobError, JobStatus, MediaItem};
use crate::ports::{Claim, JobStore, StoreError, Transition};
use item::{Item, job_from_item, job_pk, job_to_item, media_from_item, media_pk, media_to_item, n, s, time};

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
            .key("pk", job_pk(id))
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
            .key("pk", media_pk(id))
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
            .map(|id| HashMap::from([("pk".to_owned(), media_pk(*id))]))
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
            .key("pk", job_pk(id))
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
            .key("pk", job_pk(id))
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
            .key("pk", job_pk(claimed.id))
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
