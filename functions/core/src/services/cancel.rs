//! Cancel a job (docs/design.md, "Job states"): a queued job is canceled at once; a processing
//! job is marked, and `generate` ends it `canceled` when its attempt ends, without committing
//! its images. A job canceled here is final, and its webhook is queued (docs/design.md, "Webhooks").

use chrono::Utc;

use super::auth::Caller;
use super::webhooks::Notifier;
use crate::domain::ids::JobId;
use crate::domain::job::Job;
use crate::ports::{Cancel, JobStore, StoreError};

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

pub struct CancelService<S> {
    store: S,
    webhooks: Notifier,
}

impl<S: JobStore> CancelService<S> {
    pub fn new(store: S, webhooks: Notifier) -> Self {
        Self { store, webhooks }
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
}
