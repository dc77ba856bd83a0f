//! The SQS entrypoint of `generate`: a batch of job messages, processed concurrently and
//! answered with the records to deliver again (`batchItemFailures`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use lambda_runtime::{Context, LambdaEvent};
use tracing::Instrument;

use crate::domain::ids::JobId;
use crate::domain::retry::Budget;
use crate::ports::{ImageModel, JobMessage, JobQueue, JobStore, MediaStore};
use crate::services::generate::{Delivery, Generator, Outcome};

/// How many records of a batch run at once.
pub const RECORD_CONCURRENCY: usize = 4;
/// Kept back from the invocation's deadline for the writes after an attempt gives up.
const DEADLINE_RESERVE: Duration = Duration::from_secs(3);
/// The budget when the runtime gives no real deadline (`cargo lambda watch`).
const LOCAL_BUDGET: Duration = Duration::from_secs(120);

pub async fn handle<S, Q, M, I>(generator: &Generator<S, Q, M, I>, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse
where
    S: JobStore,
    Q: JobQueue,
    M: MediaStore,
    I: ImageModel,
{
    let budget = budget(&event.context);
    let span =
        tracing::info_span!("generate", request_id = %event.context.request_id, records = event.payload.records.len());
    async {
        let failures: Vec<String> = futures::stream::iter(&event.payload.records)
            .map(|record| process_record(generator, record, &budget))
            .buffer_unordered(RECORD_CONCURRENCY)
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        tracing::info!(returned = failures.len(), "batch done");
        let mut response = SqsBatchResponse::default();
        for id in failures {
            response.add_failure(id);
        }
        response
    }
    .instrument(span)
    .await
}

fn budget(context: &Context) -> Budget {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    Budget::from_deadline(context.deadline, now_ms, DEADLINE_RESERVE, LOCAL_BUDGET)
}

/// Processes one record; answers its message id if it must be delivered again.
async fn process_record<S, Q, M, I>(
    generator: &Generator<S, Q, M, I>,
    record: &SqsMessage,
    budget: &Budget,
) -> Option<String>
where
    S: JobStore,
    Q: JobQueue,
    M: MediaStore,
    I: ImageModel,
{
    let message_id = record.message_id.clone().unwrap_or_default();
    let Some(job_id) = job_id(record) else {
        // Another delivery could not make it readable: drop it rather than block the queue.
        tracing::error!(%message_id, body = ?record.body, "malformed message acknowledged and dropped");
        return None;
    };
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let delivery = Delivery {
        job_id,
        receive_count,
        receipt_handle: record.receipt_handle.as_deref(),
    };
    let span = tracing::info_span!("job", %job_id, %message_id, receive_count);
    match generator.process(&delivery, budget).instrument(span).await {
        Outcome::Acknowledge => None,
        Outcome::Retry => Some(message_id),
    }
}

fn job_id(record: &SqsMessage) -> Option<JobId> {
    let message: JobMessage = serde_json::from_str(record.body.as_deref()?).ok()?;
    JobId::parse(&message.job_id).ok()
}
