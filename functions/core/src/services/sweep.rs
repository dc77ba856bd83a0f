//! The sweeper (docs/design.md, "Failure rules"): it ends the jobs that no message will bring
//! back. A job message that used up its receives lands in the jobs dead-letter queue; if its job
//! is still `queued` or `processing` (a crash or timeout on the last receive, a failed write on
//! it), the job is marked `failed` (`retries_exhausted`), what its attempts stored is removed,
//! and its webhook is queued.

use chrono::Utc;
use std::time::Duration;

use super::message::{Delivery, Outcome};
use super::metrics::{self, Metric};
use super::webhooks::Notifier;
use crate::domain::job::JobError;
use crate::domain::retry::lease_wait;
use crate::ports::{JobQueue, JobStore, MediaStore, Stranded};

pub struct Sweeper<S, Q, M> {
    store: S,
    /// The dead-letter queue, to hand back a message whose job a worker still holds.
    dead_letters: Q,
    media: M,
    webhooks: Notifier,
}

impl<S: JobStore, Q: JobQueue, M: MediaStore> Sweeper<S, Q, M> {
    pub fn new(store: S, dead_letters: Q, media: M, webhooks: Notifier) -> Self {
        Self {
            store,
            dead_letters,
            media,
            webhooks,
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
                // Any attempt may have stored images before it died.
                discard_images(&self.media, &job.possible_media_keys()).await;
                self.webhooks.job_final(&job).await;
                Outcome::Acknowledge
            }
            Ok(Stranded::Final(status)) => {
                tracing::info!(%status, "dead letter of a final job; dropped");
                Outcome::Acknowledge
            }
            Ok(Stranded::Missing) => {
                tracing::warn!("dead letter names a job that does not exist; dropped");
                Outcome::Acknowledge
            }
            Ok(Stranded::Held { until }) => {
                // A worker may still finish it: look again when its lease has run out.
                tracing::info!(lease_until = %until, "dead letter of a job a worker holds; looked at again later");
                self.later(delivery, lease_wait(now, until)).await;
                Outcome::Retry
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not end the stranded job; message returned");
                Outcome::Retry
            }
        }
    }

    async fn later(&self, delivery: &Delivery<'_>, delay: Duration) {
        if let Some(receipt_handle) = delivery.receipt_handle
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
