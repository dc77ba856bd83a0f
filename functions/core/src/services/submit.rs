//! Accept a generation request: validate, record the job, queue it (docs/design.md, "HTTP contract", "Failure rules").

use chrono::Utc;
use serde_json::Value;
use std::time::Duration;

use super::metrics::{self, Metric};
use crate::domain::generation::{FieldError, GenerateRequest, RequestPolicy};
use crate::domain::ids::JobId;
use crate::domain::job::{Job, JobError};
use crate::ports::{JobQueue, JobStore, StoreError, Transition};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    /// The job was recorded but could not be queued; it is now `failed` (`enqueue_failed`).
    #[error("job {0} could not be queued")]
    QueueUnavailable(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct SubmitService<S, Q> {
    store: S,
    queue: Q,
    policy: RequestPolicy,
    retention: Duration,
}

impl<S: JobStore, Q: JobQueue> SubmitService<S, Q> {
    pub fn new(store: S, queue: Q, policy: RequestPolicy, retention: Duration) -> Self {
        Self {
            store,
            queue,
            policy,
            retention,
        }
    }

    pub async fn submit(&self, body: &Value) -> Result<Job, SubmitError> {
        let request = GenerateRequest::parse(body, &self.policy).map_err(SubmitError::Invalid)?;
        let job = Job::new(request, Utc::now(), self.retention);
        tracing::Span::current().record("job_id", tracing::field::display(job.id));
        self.store.create(&job).await?;

        if let Err(err) = self.queue.enqueue(job.id).await {
            tracing::error!(error = %err, "could not queue the job; marking it failed");
            // No job may stay `queued` without a message that will ever pick it up.
            match self
                .store
                .fail_queued(job.id, &JobError::enqueue_failed(), Utc::now())
                .await
            {
                Ok(Transition::Applied) => {}
                Ok(Transition::Stale) => tracing::warn!("job left the queued state before it could be failed"),
                Err(store_err) => tracing::error!(error = %store_err, "could not mark the unqueued job failed"),
            }
            return Err(SubmitError::QueueUnavailable(job.id));
        }
        tracing::info!(model = %job.request.model, outputs = job.request.num_outputs, "job queued");
        metrics::emit(&job.request.model, &[(Metric::JobsSubmitted, 1.0)]);
        Ok(job)
    }
}
