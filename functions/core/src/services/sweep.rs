//! The sweeper (docs/design.md, "Failure rules"): it ends the jobs that no message will bring
//! back. A job message that used up its receives lands in the jobs dead-letter queue; if its job
//! is still `queued` or `processing` (a crash or timeout on the last receive, a failed write on
//! it), the job is marked `failed` (`retries_exhausted`), what its attempts stored is removed,
//! and its webhook is queued. On a schedule, it sends again the message of each job whose message
//! is not known to have been sent (`submit` ended between writing the job and sending its
//! message, or could not record the send), and fails it (`enqueue_failed`) only when that send
//! fails or the job is past its retention.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::Duration;

use super::message::{Delivery, Outcome};
use super::metrics::{self, Metric};
use super::webhooks::Notifier;
use crate::domain::ids::JobId;
use crate::domain::job::JobError;
use crate::domain::retry::lease_wait;
use crate::ports::{ImageModel, JobQueue, JobStore, MediaStore, Stranded, UnsentJob};

/// How long after its creation a job whose message is not known to have been sent is sent
/// again: far beyond `submit`'s timeout, so that the submit that made it has surely ended. A
/// message sent twice is harmless: `generate` claims the job by a conditional write.
pub const UNSENT_AFTER: Duration = Duration::from_secs(300);
/// How long a dead letter that names no job is kept out of the sweeper's way: SQS holds a message
/// back 12 hours at most, counted from its receive, so an hour less leaves room for the time
/// since.
const UNREADABLE_HIDDEN: Duration = Duration::from_secs(11 * 3600);
/// The most unsent jobs one sweep takes; the next sweep takes the rest.
const SWEEP_LIMIT: u32 = 500;

/// What a scheduled sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unsent jobs found old enough.
    pub found: usize,
    /// Of those, the jobs whose message was sent again.
    pub sent: usize,
    /// Of those, the jobs now `failed` (past their retention, or their message could not be
    /// sent); the others were picked up or ended meanwhile.
    pub failed: usize,
    /// Jobs that could not be looked at; the next sweep tries again.
    pub errors: usize,
}

/// What became of one unsent job.
enum Swept {
    Sent,
    Failed,
    /// Picked up or ended meanwhile.
    Gone,
    Error,
}

/// The sweeper's two queues.
pub struct SweeperQueues<Q> {
    /// The jobs dead-letter queue, which it takes.
    pub dead_letters: Q,
    /// The jobs queue, on which it sends the messages of unsent jobs again.
    pub jobs: Q,
}

pub struct Sweeper<S, Q, M, I> {
    store: S,
    /// The dead-letter queue, to hand back a message whose job a worker still holds.
    dead_letters: Q,
    /// The jobs queue, to send again the messages of unsent jobs.
    jobs: Q,
    media: M,
    /// The model, to stop the runs a failed job's attempts left running.
    model: I,
    webhooks: Notifier,
    /// How long a job is kept (`RETENTION_DAYS`): an unsent job older than that is failed, not sent.
    retention: Duration,
}

impl<S: JobStore, Q: JobQueue, M: MediaStore, I: ImageModel> Sweeper<S, Q, M, I> {
    pub fn new(
        store: S,
        queues: SweeperQueues<Q>,
        media: M,
        model: I,
        webhooks: Notifier,
        retention: Duration,
    ) -> Self {
        Self {
            store,
            dead_letters: queues.dead_letters,
            jobs: queues.jobs,
            media,
            model,
            webhooks,
            retention,
        }
    }

    /// One message of the jobs dead-letter queue. Idempotent: a final or missing job is left as
    /// it is, so a message seen twice changes nothing.
    pub async fn dead_letter(&self, delivery: &Delivery<'_>) -> Outcome {
        let now = Utc::now();
        match self
            .store
            .fail_stranded(delivery.job_id, &JobError::stranded(), now)
            .await
        {
            Ok(Stranded::Failed(job)) => {
                tracing::error!(attempts = job.attempts, "job stranded by its queue; marked failed");
                metrics::emit(&job.request.model, &[(Metric::JobsFailed, 1.0)]);
                // Any attempt may have stored images before it died, or left a run going.
                discard_images(&self.media, &job.possible_media_keys()).await;
                cancel_runs(&self.model, &job.predictions).await;
                self.webhooks.job_final(&job).await;
                Outcome::Acknowledge
            }
            Ok(Stranded::Final(job)) if job.webhook_pending => {
                // A worker ended it on the last receive and did not queue its webhook
                // (docs/design.md, "Webhooks"). If the queue fails now, the dead letter comes back.
                tracing::info!(status = %job.status, "dead letter of a final job whose webhook was never queued");
                if self.webhooks.job_final_marked(&self.store, &job).await {
                    Outcome::Acknowledge
                } else {
                    Outcome::Retry
                }
            }
            Ok(Stranded::Final(job)) => {
                tracing::info!(status = %job.status, "dead letter of a final job; dropped");
                Outcome::Acknowledge
            }
            Ok(Stranded::Missing) => {
                tracing::warn!("dead letter names a job that does not exist; dropped");
                Outcome::Acknowledge
            }
            Ok(Stranded::Held { until }) => {
                // A worker may still finish it: look again when its lease has run out.
                tracing::info!(lease_until = %until, "dead letter of a job a worker holds; looked at again later");
                self.later(delivery.receipt_handle, lease_wait(now, until)).await;
                Outcome::Retry
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not end the stranded job; message returned");
                Outcome::Retry
            }
        }
    }

    /// A dead letter that names no job. It may stand for a job no message will bring back, which
    /// only an operator can find, so it stays in the dead-letter queue (kept 14 days) rather than
    /// be dropped: reported for redelivery, and hidden for hours so that the sweeper does not
    /// take it again every few minutes (docs/design.md, "Failure rules").
    pub async fn unreadable_dead_letter(&self, receipt_handle: Option<&str>) -> Outcome {
        self.later(receipt_handle, UNREADABLE_HIDDEN).await;
        Outcome::Retry
    }

    /// Sends again the messages of the jobs made before `before` whose message is not known to
    /// have been sent; fails those past their retention or whose message cannot be sent.
    pub async fn sweep(&self, before: DateTime<Utc>) -> SweepReport {
        let jobs = match self.store.unsent(before, SWEEP_LIMIT).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(error = %err, "could not list the unsent jobs");
                return SweepReport {
                    errors: 1,
                    ..SweepReport::default()
                };
            }
        };
        let results: Vec<Swept> = futures::stream::iter(&jobs)
            .map(|job| self.send_again(*job))
            .buffer_unordered(8)
            .collect()
            .await;
        let mut report = SweepReport {
            found: jobs.len(),
            ..SweepReport::default()
        };
        for result in results {
            match result {
                Swept::Sent => report.sent += 1,
                Swept::Failed => report.failed += 1,
                Swept::Gone => {}
                Swept::Error => report.errors += 1,
            }
        }
        tracing::info!(
            found = report.found,
            sent = report.sent,
            failed = report.failed,
            errors = report.errors,
            "sweep done"
        );
        report
    }

    /// Sends an unsent job's message and clears its mark; fails the job if it is past its
    /// retention or the send fails.
    async fn send_again(&self, unsent: UnsentJob) -> Swept {
        let age = (Utc::now() - unsent.created_at).to_std().unwrap_or_default();
        if age > self.retention {
            tracing::error!(job_id = %unsent.id, "unsent job past its retention; marked failed");
            return self.give_up(unsent.id).await;
        }
        if let Err(err) = self.jobs.enqueue(unsent.id).await {
            tracing::error!(job_id = %unsent.id, error = %err, "could not send the unsent job's message; marked failed");
            return self.give_up(unsent.id).await;
        }
        tracing::warn!(job_id = %unsent.id, "the job's message was not known to have been sent; sent again");
        if let Err(err) = self.store.mark_sent(unsent.id).await {
            // Its message is out: the claim clears the mark, or the next sweep sends it again.
            tracing::warn!(job_id = %unsent.id, error = %err, "could not record that the job's message was sent");
        }
        Swept::Sent
    }

    async fn give_up(&self, id: JobId) -> Swept {
        match self
            .store
            .fail_unsent(id, &JobError::enqueue_failed(), Utc::now())
            .await
        {
            Ok(Some(job)) => {
                metrics::emit(&job.request.model, &[(Metric::JobsFailed, 1.0)]);
                self.webhooks.job_final(&job).await;
                Swept::Failed
            }
            Ok(None) => Swept::Gone,
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "could not fail an unsent job");
                Swept::Error
            }
        }
    }

    async fn later(&self, receipt_handle: Option<&str>, delay: Duration) {
        if let Some(receipt_handle) = receipt_handle
            && let Err(err) = self.dead_letters.retry_later(receipt_handle, delay).await
        {
            // The dead-letter queue's own visibility timeout still brings it back.
            tracing::warn!(error = %err, "could not set the dead letter's redelivery delay");
        }
    }
}

/// Removes images of a job that did not succeed (a crash between the S3 put and the commit
/// leaves some), so that the bucket holds the images of succeeded jobs only. Objects that are not
/// there are no error; a failure is logged, and the bucket's lifecycle rule removes what is left
/// after the retention.
pub(super) async fn discard_images<M: MediaStore>(media: &M, keys: &[String]) {
    let results = futures::future::join_all(keys.iter().map(|key| media.delete(key))).await;
    for (key, result) in keys.iter().zip(results) {
        if let Err(err) = result {
            tracing::warn!(error = %err, %key, "could not remove an image of a job that did not succeed");
        }
    }
}

/// Stops the model's runs noted for a job that ended without success, which would otherwise run,
/// and be paid for, to the end (docs/design.md, "Failure rules"). Best effort: called after the
/// job's final write, a failure is logged and changes nothing about the job.
pub(super) async fn cancel_runs<I: ImageModel>(model: &I, ids: &[String]) {
    let results = futures::future::join_all(ids.iter().map(|id| model.cancel_run(id))).await;
    for (id, result) in ids.iter().zip(results) {
        if let Err(err) = result {
            tracing::warn!(error = %err, run = %id, "could not stop a model run of a job that did not succeed");
        }
    }
}
