//! The SQS entrypoints: `generate`'s batches of job messages, `deliver`'s batches of webhook
//! deliveries and `sweeper`'s batches of dead letters, each record processed concurrently and the
//! batch answered with the records to deliver again (`batchItemFailures`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use lambda_runtime::{Context, LambdaEvent};
use serde::Serialize;
use tracing::Instrument;

use super::views::{FileLinks, JobView, PredictionView, job_body, prediction_body};
use crate::domain::ids::JobId;
use crate::domain::job::{Interface, Job, MediaItem};
use crate::domain::retry::Budget;
use crate::domain::webhook::WebhookEvent;
use crate::ports::{
    ImageModel, JobMessage, JobQueue, JobStore, MediaStore, ProviderGate, STORE_CALL_TIMEOUT, SigningStore,
    WebhookQueue, WebhookSender,
};
use crate::services::generate::Generator;
use crate::services::message::{Delivery, Outcome};
use crate::services::sweep::Sweeper;
use crate::services::webhooks::Deliverer;

/// How many records of a batch run at once.
pub const RECORD_CONCURRENCY: usize = 4;
/// How many webhooks of a batch are sent at once: each mostly waits on its receiver.
pub const DELIVERY_CONCURRENCY: usize = 10;
/// Kept back from the invocation's deadline for the writes after an attempt gives up: two calls,
/// each of which may take the store's whole timeout, and a second to spare.
pub const DEADLINE_RESERVE: Duration = Duration::from_secs(STORE_CALL_TIMEOUT.as_secs() * 2 + 1);
/// The budget when the runtime gives no real deadline (`cargo lambda watch`).
const LOCAL_BUDGET: Duration = Duration::from_secs(120);

pub async fn handle<S, Q, M, I, G>(
    generator: &Generator<S, Q, M, I, G>,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse
where
    S: JobStore,
    Q: JobQueue,
    M: MediaStore,
    I: ImageModel,
    G: ProviderGate,
{
    let invocation = budget(&event.context);
    let records = event.payload.records.len();
    let least = generator.min_budget();
    // Each record's share is taken as it starts, of the time then left (docs/design.md,
    // "Failure rules"): records that start late are not left with nothing.
    let started = AtomicUsize::new(0);
    let started = &started;
    let span = tracing::info_span!("generate", request_id = %event.context.request_id, records);
    batch(
        &event.payload.records,
        RECORD_CONCURRENCY,
        |delivery| async move {
            let left = records.saturating_sub(started.fetch_add(1, Ordering::Relaxed));
            let budget = invocation.share(left, RECORD_CONCURRENCY, least);
            generator.process(&delivery, &budget).await
        },
        drop_unreadable,
    )
    .instrument(span)
    .await
}

/// `deliver`: each record is one job's webhook. The body is the job as
/// `GET /media/jobs/{job_id}` shows it, with the event's name (docs/design.md, "Webhooks").
pub async fn deliver<S, Q, P>(
    deliverer: &Deliverer<S, Q, P>,
    links: &FileLinks,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse
where
    S: JobStore + SigningStore,
    Q: WebhookQueue,
    P: WebhookSender,
{
    let span =
        tracing::info_span!("deliver", request_id = %event.context.request_id, records = event.payload.records.len());
    batch(
        &event.payload.records,
        DELIVERY_CONCURRENCY,
        |delivery| async move {
            let render = |job: &Job, media: &[MediaItem], event: WebhookEvent| {
                serde_json::to_vec(&WebhookBody::of(job, media, event, links)).unwrap_or_default()
            };
            deliverer.deliver(&delivery, render).await
        },
        drop_unreadable,
    )
    .instrument(span)
    .await
}

/// A webhook's body: the job as the API it was asked through shows it, its links absolute, at the
/// address and stage the job was submitted to.
#[derive(Serialize)]
#[serde(untagged)]
enum WebhookBody {
    /// As `GET /media/jobs/{job_id}` shows it, with the event's name.
    Media {
        #[serde(flatten)]
        job: JobView,
        event: &'static str,
    },
    /// As Replicate's webhooks carry a prediction.
    Replicate(PredictionView),
}

impl WebhookBody {
    fn of(job: &Job, media: &[MediaItem], event: WebhookEvent, links: &FileLinks) -> Self {
        let root = job.api_root.as_deref().unwrap_or_default();
        match job.interface {
            // The OpenAI API takes no webhook_url (its answer waits for the job): none is sent.
            Interface::Media | Interface::OpenAi => WebhookBody::Media {
                job: job_body(job, media, root),
                event: event.as_str(),
            },
            Interface::Replicate => WebhookBody::Replicate(prediction_body(job, root, links)),
        }
    }
}

/// `sweeper`: each record is a job message the jobs queue gave up on (docs/design.md, "Failure rules").
pub async fn dead_letters<S, Q, M, I>(sweeper: &Sweeper<S, Q, M, I>, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse
where
    S: JobStore,
    Q: JobQueue,
    M: MediaStore,
    I: ImageModel,
{
    let span = tracing::info_span!("dead_letters", request_id = %event.context.request_id, records = event.payload.records.len());
    batch(
        &event.payload.records,
        DELIVERY_CONCURRENCY,
        |delivery| async move { sweeper.dead_letter(&delivery).await },
        |record| async move {
            tracing::error!(
                message_id = record.message_id.as_deref().unwrap_or_default(),
                body = ?record.body,
                "dead letter names no job; kept in the dead-letter queue for an operator"
            );
            sweeper.unreadable_dead_letter(record.receipt_handle.as_deref()).await
        },
    )
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

/// A record of the jobs or webhooks queue that names no job: another delivery could not make it
/// readable, so it is dropped rather than block the queue (docs/design.md, "Failure rules").
async fn drop_unreadable(record: &SqsMessage) -> Outcome {
    tracing::error!(
        message_id = record.message_id.as_deref().unwrap_or_default(),
        body = ?record.body,
        "malformed message acknowledged and dropped"
    );
    Outcome::Acknowledge
}

/// Runs `process` on every record that names a job and `unreadable` on every other,
/// `concurrency` at a time; answers the records to deliver again.
async fn batch<'a, F, Fut, U, UFut>(
    records: &'a [SqsMessage],
    concurrency: usize,
    process: F,
    unreadable: U,
) -> SqsBatchResponse
where
    F: Fn(Delivery<'a>) -> Fut,
    Fut: Future<Output = Outcome>,
    U: Fn(&'a SqsMessage) -> UFut,
    UFut: Future<Output = Outcome>,
{
    let (process, unreadable) = (&process, &unreadable);
    let failures: Vec<String> = futures::stream::iter(records)
        .map(|record| async move {
            let message_id = record.message_id.clone().unwrap_or_default();
            let Some(delivery) = delivery(record) else {
                return match unreadable(record).await {
                    Outcome::Acknowledge => None,
                    Outcome::Retry => Some(message_id),
                };
            };
            let span = tracing::info_span!(
                "job",
                job_id = %delivery.job_id,
                %message_id,
                receive_count = delivery.receive_count
            );
            match process(delivery).instrument(span).await {
                Outcome::Acknowledge => None,
                Outcome::Retry => Some(message_id),
            }
        })
        .buffer_unordered(concurrency)
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

/// The job a record names, with its place among the record's deliveries.
fn delivery(record: &SqsMessage) -> Option<Delivery<'_>> {
    let message: JobMessage = serde_json::from_str(record.body.as_deref()?).ok()?;
    let job_id = JobId::parse(&message.job_id).ok()?;
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    Some(Delivery {
        job_id,
        receive_count,
        receipt_handle: record.receipt_handle.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an attempt gives up, two calls must still fit before the deadline: the job's write
    /// (release or fail) and the message's (its visibility, or the webhook's queueing), each of
    /// which may take the store's whole timeout.
    #[test]
    fn the_reserve_covers_the_writes_after_an_attempt_gives_up() {
        assert!(DEADLINE_RESERVE >= STORE_CALL_TIMEOUT * 2, "{DEADLINE_RESERVE:?}");
    }
}
