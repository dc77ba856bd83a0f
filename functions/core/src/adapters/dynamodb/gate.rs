//! Each provider's creates, spaced at its rate (docs/design.md, "Provider limits"): the record
//! `PROVIDER#<key>` holds `next_at`, the first free slot in epoch milliseconds. A reservation
//! moves it on by the creates' share of a minute in one atomic update while it is ahead of now
//! (the provider is busy), or starts it again at now when it has fallen behind (the provider was
//! idle). Generate reads nothing of the table; submit reads the clock to refuse a job that would
//! wait too long.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use super::item::{n, s};
use super::{DynamoJobStore, is_condition_failure, unavailable};
use crate::domain::catalogue::ProviderLimit;
use crate::ports::{ProviderGate, StoreError};

/// Tries of a reservation that races the clock's restart by another worker.
const RESERVE_TRIES: u32 = 4;

fn provider_pk(key: &str) -> AttributeValue {
    s(format!("PROVIDER#{key}"))
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    n(at.timestamp_millis())
}

/// The clock's first free slot, as a provider's record holds it.
fn next_at(item: Option<&std::collections::HashMap<String, AttributeValue>>) -> Option<DateTime<Utc>> {
    item?
        .get("next_at")?
        .as_n()
        .ok()?
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
}

impl ProviderGate for DynamoJobStore {
    async fn reserve(
        &self,
        key: &str,
        limit: ProviderLimit,
        creates: u32,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let share_ms = (60_000 * u64::from(creates.max(1))).div_ceil(u64::from(limit.rate_per_minute.max(1)));
        // The clock counts whole milliseconds.
        let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        for _ in 0..RESERVE_TRIES {
            // Busy: the next slots are ahead; take them, whatever others take at once.
            let busy = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", provider_pk(key))
                .update_expression("ADD next_at :share")
                .condition_expression("next_at >= :now")
                .expression_attribute_values(":share", n(share_ms))
                .expression_attribute_values(":now", millis(now))
                .return_values(ReturnValue::UpdatedOld)
                .send()
                .await;
            match busy {
                Ok(output) => {
                    let slot = next_at(output.attributes()).ok_or_else(|| {
                        StoreError::Unavailable("a provider's slot came back without its time".into())
                    })?;
                    return Ok(slot);
                }
                Err(err) if is_condition_failure(err.as_service_error()) => {}
                Err(err) => return Err(unavailable(&err)),
            }
            // Idle: the clock fell behind; start it at now, unless another worker just did.
            let idle = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", provider_pk(key))
                .update_expression("SET next_at = :next")
                .condition_expression("attribute_not_exists(next_at) OR next_at < :now")
                .expression_attribute_values(":next", n(now.timestamp_millis() + share_ms as i64))
                .expression_attribute_values(":now", millis(now))
                .send()
                .await;
            match idle {
                Ok(_) => return Ok(now),
                Err(err) if is_condition_failure(err.as_service_error()) => {}
                Err(err) => return Err(unavailable(&err)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "the slots of {key} changed under every try"
        )))
    }

    async fn pause(&self, key: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", provider_pk(key))
            .update_expression("SET next_at = :until")
            // Slots already given past the pause are kept.
            .condition_expression("attribute_not_exists(next_at) OR next_at < :until")
            .expression_attribute_values(":until", millis(until))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(err.as_service_error()) => Ok(()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    async fn next_slot(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", provider_pk(key))
            .projection_expression("next_at")
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(next_at(output.item()))
    }
}
