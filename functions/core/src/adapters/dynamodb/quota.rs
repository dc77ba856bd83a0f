//! Per-owner quotas in the owner's `QUOTA#` record (docs/design.md, "Quotas"). A job takes a slot
//! (its id in the `active` set) and its charge in one conditional update before it is written,
//! and gives them back after its final write. The set is never smaller than the owner's jobs
//! queued or running, so the limit holds however many submits race; a slot whose give-back was
//! lost is found and reclaimed when the owner next reaches the limit.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::Utc;

use super::item::{
    ACTIVE, MAX_ACTIVE, MONTHLY_IMAGES, MONTHLY_MICRODOLLARS, images_attribute, job_from_item, job_pk, n, quota_pk, s,
    spend_attribute, usage_from_item,
};
use super::{DynamoJobStore, is_condition_failure, unavailable};
use crate::domain::ids::JobId;
use crate::domain::job::Job;
use crate::domain::keys::Owner;
use crate::domain::quota::{Admission, Charge, Month, Quota, QuotaChanges, QuotaDefaults, Refusal, Usage};
use crate::ports::{QuotaStore, StoreError};

/// How long a slot whose job was never written is kept: far longer than any submit takes between
/// taking the slot and writing the job.
const UNWRITTEN_SLOT_SECONDS: i64 = 300;

/// Tries of an admission: the first, and one more after reclaiming slots of jobs that ended (or
/// after the record changed between the refusal and the read of why).
const ADMISSION_TRIES: u32 = 3;

impl DynamoJobStore {
    /// Gives back the slots of `held` whose jobs have ended (or were never written): how many.
    async fn reclaim(&self, owner: &Owner, held: Vec<JobId>) -> Result<usize, StoreError> {
        if held.is_empty() {
            return Ok(0);
        }
        let mut reclaimed = 0;
        // BatchGetItem reads at most 100 keys.
        for ids in held.chunks(100) {
            let items = self.read_all(ids.iter().map(|id| job_pk(*id)).collect()).await?;
            let jobs = items.iter().map(job_from_item).collect::<Result<Vec<_>, _>>()?;
            for job in jobs.iter().filter(|job| job.status.is_final()) {
                self.free_slot(job, Charge::refund(job, job.status)).await?;
                reclaimed += 1;
            }
            let old = Utc::now() - chrono::Duration::seconds(UNWRITTEN_SLOT_SECONDS);
            for id in ids {
                let unwritten = !jobs.iter().any(|job| job.id == *id);
                if unwritten && id.made_at().is_some_and(|made| made < old) {
                    self.drop_slot(owner, *id).await?;
                    reclaimed += 1;
                }
            }
        }
        if reclaimed > 0 {
            tracing::warn!(owner = %owner, reclaimed, "slots of ended jobs were still held; reclaimed");
        }
        Ok(reclaimed)
    }

    /// Removes a slot whose job was never written; its charge is not known, so none is given back.
    async fn drop_slot(&self, owner: &Owner, id: JobId) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", quota_pk(owner))
            .update_expression("DELETE #active :job")
            .expression_attribute_names("#active", ACTIVE)
            .expression_attribute_values(":job", AttributeValue::Ss(vec![id.to_string()]))
            .send()
            .await;
        result.map(|_| ()).map_err(|e| unavailable(&e))
    }

    /// After a final write: gives the job's slot back, logging a failure (the slot is reclaimed
    /// when the owner next reaches the limit).
    pub(super) async fn give_back(&self, job: &Job) {
        if let Err(err) = self.free_slot(job, Charge::refund(job, job.status)).await {
            tracing::warn!(error = %err, "could not give the job's slot back to its owner's quota");
        }
    }
}

/// The condition of an admission: one more job queued or running is within the limit, and the
/// month's images and spend are under their budgets where the owner has them.
const ADMISSION_CONDITION: &str = "((attribute_not_exists(#max_active) AND (attribute_not_exists(#active) OR size(#active) < :default_max_active)) \
     OR (#max_active > :zero AND (attribute_not_exists(#active) OR size(#active) < #max_active))) \
     AND (attribute_not_exists(#monthly_images) OR attribute_not_exists(#images) OR #images < #monthly_images) \
     AND (attribute_not_exists(#monthly_spend) OR attribute_not_exists(#spend) OR #spend < #monthly_spend)";

impl QuotaStore for DynamoJobStore {
    async fn admit(&self, job: &Job, defaults: QuotaDefaults) -> Result<Admission, StoreError> {
        let month = Month::of(job.created_at);
        let charge = Charge::of(job);
        for _ in 0..ADMISSION_TRIES {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", quota_pk(&job.owner))
                .update_expression("ADD #active :job, #images :images, #spend :spend SET #owner = :owner")
                .condition_expression(ADMISSION_CONDITION)
                .expression_attribute_names("#active", ACTIVE)
                .expression_attribute_names("#max_active", MAX_ACTIVE)
                .expression_attribute_names("#monthly_images", MONTHLY_IMAGES)
                .expression_attribute_names("#monthly_spend", MONTHLY_MICRODOLLARS)
                .expression_attribute_names("#images", images_attribute(month))
                .expression_attribute_names("#spend", spend_attribute(month))
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":job", AttributeValue::Ss(vec![job.id.to_string()]))
                .expression_attribute_values(":images", n(charge.images))
                .expression_attribute_values(":spend", n(charge.microdollars))
                .expression_attribute_values(":owner", s(job.owner.as_str()))
                .expression_attribute_values(":default_max_active", n(defaults.max_active))
                .expression_attribute_values(":zero", n(0))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Admission::Admitted),
                Err(err) => err,
            };
            let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
                return Err(unavailable(&err));
            };
            let (usage, held) = usage_from_item(failed.item(), month)?;
            match usage.refusal(defaults) {
                // The record changed between the refusal and its reading: ask again.
                None => {}
                // Slots held by jobs that ended are reclaimed, then the owner asks again; only if
                // none was is the limit real.
                Some(Refusal::ActiveJobs { .. }) if self.reclaim(&job.owner, held).await? > 0 => {}
                Some(refusal) => return Ok(Admission::Refused(refusal)),
            }
        }
        let (usage, _) = usage_from_item(self.read(quota_pk(&job.owner)).await?.as_ref(), month)?;
        Ok(match usage.refusal(defaults) {
            Some(refusal) => Admission::Refused(refusal),
            None => return Err(StoreError::Unavailable("the owner's quota kept changing".into())),
        })
    }

    async fn free_slot(&self, job: &Job, refund: Charge) -> Result<(), StoreError> {
        let month = Month::of(job.created_at);
        // Only while the slot is held, so that asking twice gives the charge back once.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", quota_pk(&job.owner))
            .update_expression("DELETE #active :job ADD #images :images, #spend :spend")
            .condition_expression("contains(#active, :id)")
            .expression_attribute_names("#active", ACTIVE)
            .expression_attribute_names("#images", images_attribute(month))
            .expression_attribute_names("#spend", spend_attribute(month))
            .expression_attribute_values(":job", AttributeValue::Ss(vec![job.id.to_string()]))
            .expression_attribute_values(":id", s(job.id.to_string()))
            .expression_attribute_values(":images", n(-i128::from(refund.images)))
            .expression_attribute_values(":spend", n(-i128::from(refund.microdollars)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn usage(&self, owner: &Owner, month: Month) -> Result<Usage, StoreError> {
        let record = self.read(quota_pk(owner)).await?;
        Ok(usage_from_item(record.as_ref(), month)?.0)
    }

    async fn set_quota(&self, owner: &Owner, changes: QuotaChanges) -> Result<Quota, StoreError> {
        let mut set = vec!["#owner = :owner".to_owned()];
        let mut remove = Vec::new();
        let mut values = vec![(":owner".to_owned(), s(owner.as_str()))];
        let fields = [
            (MAX_ACTIVE, changes.max_active.map(|v| v.map(u64::from))),
            (MONTHLY_IMAGES, changes.monthly_images),
            (MONTHLY_MICRODOLLARS, changes.monthly_microdollars),
        ];
        for (name, change) in fields {
            match change {
                Some(Some(value)) => {
                    set.push(format!("{name} = :{name}"));
                    values.push((format!(":{name}"), n(value)));
                }
                Some(None) => remove.push(name),
                None => {}
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", quota_pk(owner))
            .update_expression(expression)
            .expression_attribute_names("#owner", "owner")
            .return_values(ReturnValue::AllNew);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        let output = request.send().await.map_err(|e| unavailable(&e))?;
        Ok(usage_from_item(output.attributes(), Month::of(Utc::now()))?.0.quota)
    }
}
