//! Cancel a job (docs/design.md, "Job states"): a queued job is canceled at once; a processing
//! job is marked, and `generate` ends it `canceled` when its attempt ends, without committing
//! its images. A job canceled here is final, and its webhook is queued (docs/design.md, "Webhooks").
//! A queued job with model runs still going gets a message at once, whose delivery stops them
//! (docs/design.md, "Failure rules").

use chrono::Utc;

use super::auth::Caller;
use super::webhooks::Notifier;
use crate::domain::ids::JobId;
use crate::domain::job::Job;
use crate::ports::{Cancel, JobQueue, JobStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("job {} is already final", .0.id)]
    AlreadyFinal(Box<Job>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Canceled {
    /// The job is now `canceled`.
    Now(Job),
    /// The job is still `processing`; its attempt will end it `canceled`.
    Pending(Job),
}

pub struct CancelService<S, Q> {
    store: S,
    queue: Q,
    webhooks: Notifier,
}

impl<S: JobStore, Q: JobQueue> CancelService<S, Q> {
    pub fn new(store: S, queue: Q, webhooks: Notifier) -> Self {
        Self { store, queue, webhooks }
    }

    /// Cancels the caller's job; `None` if there is no such job of theirs.
    pub async fn cancel(&self, caller: &Caller, id: JobId) -> Result<Option<Canceled>, CancelError> {
        // Ownership first: another owner's job must look exactly like a missing one.
        match self.store.job(id).await? {
            Some(job) if job.owner == caller.owner => {}
            _ => return Ok(None),
        }
        match self.store.cancel(id, Utc::now()).await? {
            Cancel::Canceled(job) => {
                tracing::info!("queued job canceled");
                self.webhooks.job_final(&job).await;
                self.stop_runs(&job).await;
                Ok(Some(Canceled::Now(*job)))
            }
            Cancel::Requested(job) => {
                tracing::info!("cancel requested of a processing job");
                Ok(Some(Canceled::Pending(*job)))
            }
            Cancel::AlreadyFinal(job) => Err(CancelError::AlreadyFinal(job)),
            Cancel::Missing => Ok(None),
        }
    }

    /// A job back in the queue after a transient failure keeps the runs its attempt started
    /// going at their provider, to be taken up by the next attempt. Canceled now, they would run
    /// and bill until the job's own message comes back, up to minutes later: a message now has
    /// `generate` find the job final and stop them. If it cannot be sent, the job's own message
    /// still does.
    async fn stop_runs(&self, job: &Job) {
        if job.predictions.is_empty() {
            return;
        }
        match self.queue.enqueue(job.id).await {
            Ok(()) => tracing::info!(runs = job.predictions.len(), "the stop of the job's model runs queued"),
            Err(err) => tracing::warn!(error = %err, "could not queue the stop of the job's model runs"),
        }
    }
}
