//! Read jobs back, always as their owner (docs/design.md, "API keys and owners"): another
//! owner's job is answered exactly as an unknown one.

use std::time::Duration;

use super::auth::Caller;
use crate::domain::ids::JobId;
use crate::domain::job::{Job, MediaItem};
use crate::domain::listing::ListQuery;
use crate::ports::{JobPage, JobStore, StoreError};

/// How often a waiting request looks at the job again.
const WAIT_POLL: Duration = Duration::from_millis(250);

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

    /// The caller's job once it is final, or as it is when `wait` has passed.
    pub async fn wait_until_final(
        &self,
        caller: &Caller,
        id: JobId,
        wait: Duration,
    ) -> Result<Option<Job>, StoreError> {
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
