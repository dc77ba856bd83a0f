//! The sweeper's two triggers (docs/design.md, "Failure rules"): batches of the jobs
//! dead-letter queue, and an EventBridge schedule that sends again the jobs never sent.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::ports::{ImageModel, JobQueue, JobStore, MediaStore};
use crate::services::sweep::{Sweeper, UNSENT_AFTER};

/// Tells the two events apart by their shape: SQS batches have `Records`, EventBridge's
/// scheduled events a `detail-type`.
pub async fn handle<S, Q, M, I>(sweeper: &Sweeper<S, Q, M, I>, event: LambdaEvent<Value>) -> Value
where
    S: JobStore,
    Q: JobQueue,
    M: MediaStore,
    I: ImageModel,
{
    let (payload, context) = event.into_parts();
    if payload.get("Records").is_some() {
        return match serde_json::from_value::<SqsEvent>(payload) {
            Ok(batch) => {
                let answer = super::sqs::dead_letters(sweeper, LambdaEvent::new(batch, context)).await;
                serde_json::to_value(answer).unwrap_or(Value::Null)
            }
            Err(err) => {
                // Nothing to hand back: Lambda would retry the same unreadable batch.
                tracing::error!(error = %err, "an SQS event that does not parse; ignored");
                json!({})
            }
        };
    }
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let cutoff = Utc::now() - chrono::Duration::from_std(UNSENT_AFTER).unwrap_or_default();
        let span = tracing::info_span!("sweep", request_id = %context.request_id);
        let report = sweeper.sweep(cutoff).instrument(span).await;
        return serde_json::to_value(report).unwrap_or(Value::Null);
    }
    tracing::warn!("an event that is neither a dead-letter batch nor the schedule; ignored");
    json!({})
}
