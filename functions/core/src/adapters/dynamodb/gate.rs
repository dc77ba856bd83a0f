//! Each provider's creates, counted in the table (docs/design.md, "Provider limits"): a record
//! per provider and window, `PROVIDER#<name>#<window start>`, counts the creates taken in it by
//! one conditional update, exact across every instance; `PROVIDER#<name>` holds a pause the
//! provider asked for, checked by a conditional write too (generate reads nothing of the table).
//! Window records expire a minute after their window.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use std::time::Duration;

use super::item::{n, s};
use super::{DynamoJobStore, is_condition_failure, unavailable};
use crate::domain::catalogue::{Provider, ProviderLimit};
use crate::ports::{Gate, ProviderGate, StoreError};

fn provider_pk(provider: Provider) -> AttributeValue {
    s(format!("PROVIDER#{}", provider.name()))
}

fn window_pk(provider: Provider, start: i64) -> AttributeValue {
    s(format!("PROVIDER#{}#{start}", provider.name()))
}

/// How long until `until`, from `now`; at least a second, as SQS delays are whole seconds.
fn wait_until(now: DateTime<Utc>, until: DateTime<Utc>) -> Duration {
    (until - now).to_std().unwrap_or_default().max(Duration::from_secs(1))
}

impl ProviderGate for DynamoJobStore {
    async fn take(
        &self,
        provider: Provider,
        limit: ProviderLimit,
        creates: u32,
        now: DateTime<Utc>,
    ) -> Result<Gate, StoreError> {
        if let Some(until) = self.paused_until(provider, now).await?
            && until > now
        {
            return Ok(Gate::Wait(wait_until(now, until)));
        }
        let (seconds, per_window) = limit.window();
        // A job that needs more creates than a window holds takes a whole window.
        let creates = creates.clamp(1, per_window);
        let start = now.timestamp() / i64::from(seconds) * i64::from(seconds);
        let end = start + i64::from(seconds);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", window_pk(provider, start))
            .update_expression("ADD creates :creates SET #ttl = if_not_exists(#ttl, :ttl)")
            .condition_expression("attribute_not_exists(creates) OR creates <= :room")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":creates", n(creates))
            .expression_attribute_values(":room", n(per_window - creates))
            .expression_attribute_values(":ttl", n(end + 60))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Gate::Open),
            Err(err) if is_condition_failure(err.as_service_error()) => {
                let next = DateTime::<Utc>::from_timestamp(end, 0).unwrap_or(now);
                Ok(Gate::Wait(wait_until(now, next)))
            }
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn pause(&self, provider: Provider, until: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", provider_pk(provider))
            .update_expression("SET paused_until = :until")
            // A later pause another worker set is kept.
            .condition_expression("attribute_not_exists(paused_until) OR paused_until < :until")
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }
}

impl DynamoJobStore {
    /// When the provider's pause ends, if it is paused at `now`.
    async fn paused_until(&self, provider: Provider, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", provider_pk(provider))
            .update_expression("SET checked_at = :now")
            .condition_expression("attribute_not_exists(paused_until) OR paused_until <= :now")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(None),
            Err(err) => err,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
            return Err(unavailable(&err));
        };
        Ok(failed
            .item()
            .and_then(|item| item.get("paused_until"))
            .and_then(|value| value.as_n().ok())
            .and_then(|raw| raw.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis))
    }
}
