//! Read jobs back, always as their owner (docs/design.md, "API keys and owners"): another
//! owner's job is answered exactly as an unknown one.

use std::time::Duration;

use chrono::Utc;

use super::auth::Caller;
use crate::domain::ids::JobId;
use crate::domain::job::{Job, MediaItem};
use crate::domain::listing::ListQuery;
use crate::domain::quota::{Month, Usage};
use crate::ports::{JobPage, JobStore, KeyStore, QuotaStore, StoreError};

/// How often a waiting request looks at the job again.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// How long past its wait a count of open waits is kept, unless another wait starts: a count
/// whose function died in a wait is not kept for ever.
const WAIT_HOLD_MARGIN: Duration = Duration::from_secs(10);

pub struct ReadService<S> {
    store: S,
}

impl<S: JobStore> ReadService<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The caller's job, or `None` if there is no such job of theirs.
    pub async fn job(&self, caller: &Caller, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.store.job(id).await?.filter(|job| job.owner == caller.owner))
    }

    /// The caller's job with its media items in index order.
    pub async fn job_with_media(
        &self,
        caller: &Caller,
        id: JobId,
    ) -> Result<Option<(Job, Vec<MediaItem>)>, StoreError> {
        let Some(job) = self.job(caller, id).await? else {
            return Ok(None);
        };
        let media = self.store.job_media(&job).await?;
        Ok(Some((job, media)))
    }

    async fn poll_until_final(&self, caller: &Caller, id: JobId, wait: Duration) -> Result<Option<Job>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let job = self.job(caller, id).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match job {
                Some(job) if !job.status.is_final() && !left.is_zero() => {
                    tokio::time::sleep(left.min(WAIT_POLL)).await;
                }
                other => return Ok(other),
            }
        }
    }

    /// A page of the caller's jobs, newest first.
    pub async fn list(&self, caller: &Caller, query: &ListQuery) -> Result<JobPage, StoreError> {
        self.store.list(&caller.owner, query).await
    }
}

/// How a request asking to wait (`Prefer: wait`) went.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// It waited until the job was final or the wait ran out: the job as it is then (`None`:
    /// no such job of the caller's).
    Held(Option<Box<Job>>),
    /// The caller's key already holds as many requests open as it may: answered at once.
    NotHeld,
}

impl<S: JobStore + KeyStore> ReadService<S> {
    /// The caller's job once it is final, or as it is when `wait` has passed, if the caller's key
    /// may hold one more request open (docs/design.md, "Rate limits"): each holds a function
    /// instance for up to `wait`.
    pub async fn wait_until_final(&self, caller: &Caller, id: JobId, wait: Duration) -> Result<Waited, StoreError> {
        let allowed = self
            .store
            .start_wait(
                &caller.key,
                caller.limits.concurrent_waits,
                Utc::now(),
                wait + WAIT_HOLD_MARGIN,
            )
            .await?;
        if !allowed {
            tracing::info!("the key holds as many waits open as it may; answered at once");
            return Ok(Waited::NotHeld);
        }
        let held = self.poll_until_final(caller, id, wait).await;
        if let Err(err) = self.store.end_wait(&caller.key).await {
            // Taken as stale once no wait of the key has started for a while.
            tracing::warn!(error = %err, "could not end the wait");
        }
        Ok(Waited::Held(held?.map(Box::new)))
    }
}

impl<S: QuotaStore> ReadService<S> {
    /// The caller's owner's use of their quota this month (docs/design.md, "Quotas").
    pub async fn usage(&self, caller: &Caller) -> Result<Usage, StoreError> {
        self.store.usage(&caller.owner, Month::of(Utc::now())).await
    }
}
