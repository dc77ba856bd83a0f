//! Read a job back, alone (for polling) or with its media.

use crate::domain::ids::JobId;
use crate::domain::job::{Job, MediaItem};
use crate::ports::{JobStore, StoreError};

pub struct ReadService<S> {
    store: S,
}

impl<S: JobStore> ReadService<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The job, or `None` if there is no such job.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.store.job(id).await
    }

    /// The job with its media items in index order, or `None` if there is no such job.
    pub async fn job_with_media(&self, id: JobId) -> Result<Option<(Job, Vec<MediaItem>)>, StoreError> {
        let Some(job) = self.store.job(id).await? else {
            return Ok(None);
        };
        let media = self.store.job_media(&job).await?;
        Ok(Some((job, media)))
    }
}
