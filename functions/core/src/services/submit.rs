//! Accept a generation request: validate, record the job (with its idempotency key), queue it
//! (docs/design.md, "HTTP contract", "Idempotency", "Failure rules", "Webhooks").

use chrono::Utc;
use serde_json::Value;
use std::time::Duration;

use super::auth::Caller;
use super::metrics::{self, Metric};
use super::webhooks::Notifier;
use crate::domain::generation::{FieldError, GenerateRequest, RequestPolicy};
use crate::domain::idempotency::{IDEMPOTENCY_WINDOW_SECONDS, IdempotencyKey, request_fingerprint};
use crate::domain::ids::JobId;
use crate::domain::job::{Interface, Job, JobError, JobStatus, ProviderSlot};
use crate::domain::quota::{Admission, Charge, QuotaDefaults, Refusal};
use crate::ports::{Created, IdempotencyClaim, JobQueue, JobStore, ProviderGate, QuotaStore, StoreError, Transition};

/// The longest a submit runs: the `submit` function's timeout in template.yaml. A job still
/// unsent when older than that was left by a submit that ended before sending it.
const SUBMIT_LIFETIME: chrono::Duration = chrono::Duration::seconds(10);

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the request is invalid")]
    Invalid(Vec<FieldError>),
    /// The job was recorded but could not be queued; it is now `failed` (`enqueue_failed`).
    #[error("job {0} could not be queued")]
    QueueUnavailable(JobId),
    /// The idempotency key was used for another request.
    #[error("the idempotency key was used with another request body")]
    IdempotencyMismatch,
    #[error(transparent)]
    OverQuota(#[from] Refusal),
    /// The model's provider is booked further ahead than a job may wait (docs/design.md,
    /// "Provider limits"): `wait` past the longest.
    #[error("the provider of {model} is booked {booked_s} s ahead, past the longest wait of {longest_s} s")]
    ProviderBacklog {
        model: String,
        booked_s: u64,
        longest_s: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// The idempotency key named a job made before: this is that job, not a new one.
    pub replayed: bool,
}

pub struct SubmitService<S, Q> {
    store: S,
    queue: Q,
    webhooks: Notifier,
    policy: RequestPolicy,
    retention: Duration,
    quota: QuotaDefaults,
    /// The longest a job may wait for its slot at its provider: past it, submit refuses.
    longest_wait: Duration,
}

/// How long a job may wait for its provider when no other is set: `MAX_PROVIDER_WAIT_SECONDS`.
pub const LONGEST_PROVIDER_WAIT: Duration = Duration::from_secs(15 * 60);

impl<S: JobStore + QuotaStore + ProviderGate, Q: JobQueue> SubmitService<S, Q> {
    pub fn new(
        store: S,
        queue: Q,
        webhooks: Notifier,
        policy: RequestPolicy,
        retention: Duration,
        quota: QuotaDefaults,
    ) -> Self {
        Self {
            store,
            queue,
            webhooks,
            policy,
            retention,
            quota,
            longest_wait: LONGEST_PROVIDER_WAIT,
        }
    }

    /// The service with jobs refused when their provider is booked more than `longest` ahead.
    pub fn with_longest_wait(self, longest: Duration) -> Self {
        Self {
            longest_wait: longest,
            ..self
        }
    }

    /// Refuses a job whose model's provider is booked past the longest wait (docs/design.md,
    /// "Provider limits"); else reserves its slot there, its estimated start.
    async fn book(&self, job: &mut Job) -> Result<(), SubmitError> {
        let Some((key, limit)) = self.policy.catalogue.limit_of(&job.request.model) else {
            return Ok(());
        };
        let now = Utc::now();
        if let Some(next) = self.store.next_slot(&key).await? {
            let booked = (next - now).to_std().unwrap_or_default();
            if booked > self.longest_wait {
                return Err(SubmitError::ProviderBacklog {
                    model: job.request.model.clone(),
                    booked_s: booked.as_secs(),
                    longest_s: self.longest_wait.as_secs(),
                });
            }
        }
        let per_call = self
            .policy
            .catalogue
            .entry(&job.request.model)
            .map_or(1, |entry| entry.max_outputs.max(1));
        let creates = job.request.num_outputs.div_ceil(per_call);
        let at = self.store.reserve(&key, limit, creates, now).await?;
        job.provider_slot = Some(ProviderSlot {
            model: job.request.model.clone(),
            at,
        });
        Ok(())
    }

    /// Whether this deployment offers the model.
    pub fn offers(&self, model: &str) -> bool {
        self.policy.catalogue.entry(model).is_some()
    }

    /// `interface` is the API the job was asked through, and `api_root` where the client reached
    /// it (scheme, host and stage).
    pub async fn submit(
        &self,
        caller: &Caller,
        body: &Value,
        idempotency_key: Option<&IdempotencyKey>,
        interface: Interface,
        api_root: String,
    ) -> Result<Submitted, SubmitError> {
        let request = GenerateRequest::parse(body, &self.policy).map_err(SubmitError::Invalid)?;
        let price_per_image = self
            .policy
            .catalogue
            .entry(&request.model)
            .map_or(0, |entry| entry.price_per_image);
        let mut job = Job::new(caller.owner.clone(), request, Utc::now(), self.retention);
        job.price_per_image = price_per_image;
        self.book(&mut job).await?;
        job.interface = interface;
        job.api_root = Some(api_root);
        let fingerprint = idempotency_key.map(|_| request_fingerprint(body));
        let claim = idempotency_key
            .zip(fingerprint.as_deref())
            .map(|(key, fingerprint)| IdempotencyClaim {
                key,
                fingerprint,
                expires_at: job.created_at.timestamp() + IDEMPOTENCY_WINDOW_SECONDS,
            });
        if let Admission::Refused(refusal) = self.store.admit(&job, self.quota).await? {
            // A replay answers with its job, whatever the quota says now.
            if let Some(key) = idempotency_key
                && let Some((job_id, stored)) = self.store.idempotent_job(&caller.owner, key, Utc::now()).await?
            {
                let original = self.original(job_id, &stored, fingerprint.as_deref()).await?;
                if !original.never_queued() {
                    return Ok(self.replay(original).await);
                }
            }
            tracing::info!(%refusal, "the owner's quota admits no more jobs");
            return Err(SubmitError::OverQuota(refusal));
        }
        let replayed = self
            .create_or_replay(&job, claim, caller, idempotency_key, fingerprint.as_deref())
            .await;
        if matches!(replayed, Ok(Some(_)) | Err(SubmitError::IdempotencyMismatch)) {
            // No new job was written: its slot and charge go back. After a store error the job
            // may have been written, so its slot stays until the job ends.
            if let Err(err) = self.store.free_slot(&job, Charge::of(&job)).await {
                tracing::warn!(error = %err, "could not give back the slot of a job never written");
            }
        }
        if let Some(replay) = replayed? {
            return Ok(replay);
        }
        tracing::Span::current().record("job_id", tracing::field::display(job.id));

        // A job booked at its provider comes to generate at its slot, not before.
        let sent = match job
            .provider_slot
            .as_ref()
            .and_then(|slot| (slot.at - Utc::now()).to_std().ok())
        {
            Some(wait) if wait > Duration::from_secs(1) => self.queue.enqueue_after(job.id, wait).await,
            _ => self.queue.enqueue(job.id).await,
        };
        if let Err(err) = sent {
            tracing::error!(error = %err, "could not queue the job; marking it failed");
            // No job may stay `queued` without a message that will ever pick it up.
            match self
                .store
                .fail_queued(job.id, &JobError::enqueue_failed(), Utc::now())
                .await
            {
                Ok(Transition::Applied) => {
                    // At most once here: no message will come back to queue it again
                    // (docs/design.md, "Webhooks").
                    self.webhooks.job_final(&job).await;
                }
                Ok(Transition::Stale) => {
                    if let Some(running) = self.picked_up(job.id).await {
                        return Ok(running);
                    }
                }
                Err(store_err) => tracing::error!(error = %store_err, "could not mark the unqueued job failed"),
            }
            return Err(SubmitError::QueueUnavailable(job.id));
        }
        self.mark_sent(job.id).await;
        tracing::info!(model = %job.request.model, outputs = job.request.num_outputs, "job queued");
        metrics::emit(&job.request.model, &[(Metric::JobsSubmitted, 1.0)]);
        Ok(Submitted { job, replayed: false })
    }

    /// Writes the job, or answers the earlier job its idempotency key names (`Some`).
    async fn create_or_replay(
        &self,
        job: &Job,
        claim: Option<IdempotencyClaim<'_>>,
        caller: &Caller,
        idempotency_key: Option<&IdempotencyKey>,
        fingerprint: Option<&str>,
    ) -> Result<Option<Submitted>, SubmitError> {
        // At most twice: a key whose job was never queued is freed once, for this new job.
        let mut freed = false;
        while let Created::Existing {
            job_id,
            fingerprint: stored,
        } = self.store.create(job, claim).await?
        {
            let original = self.original(job_id, &stored, fingerprint).await?;
            if original.never_queued()
                && !freed
                && let Some(key) = idempotency_key
            {
                // The first submit answered 503 and its job never ran: the client retried as
                // told, so the key goes to a job that runs (docs/design.md, "Idempotency").
                self.store.release_idempotency(&caller.owner, key, job_id).await?;
                freed = true;
                tracing::info!("the key's job was never queued; the key is freed for a new job");
                continue;
            }
            return Ok(Some(self.replay(original).await));
        }
        Ok(None)
    }

    /// The job an idempotency key names, if it was made from the same request.
    async fn original(&self, job_id: JobId, stored: &str, fingerprint: Option<&str>) -> Result<Job, SubmitError> {
        if Some(stored) != fingerprint {
            return Err(SubmitError::IdempotencyMismatch);
        }
        tracing::Span::current().record("job_id", tracing::field::display(job_id));
        Ok(self
            .store
            .job(job_id)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("idempotency record names missing job {job_id}")))?)
    }

    /// Answers a replay with the earlier job.
    async fn replay(&self, original: Job) -> Submitted {
        tracing::info!("idempotent replay of an earlier submit");
        let age = Utc::now() - original.created_at;
        if original.status == JobStatus::Queued && original.unsent && age > SUBMIT_LIFETIME {
            // The first submit ended before its message went out (a crash, a timeout): the
            // retry sends it, as the client who retries expects the job to run. A younger job's
            // own submit may still be sending it (a slow one, under load); should both send,
            // the second message finds the job claimed or final.
            self.send_again(&original).await;
        }
        Submitted {
            job: original,
            replayed: true,
        }
    }

    async fn send_again(&self, job: &Job) {
        match self.queue.enqueue(job.id).await {
            Ok(()) => {
                tracing::warn!("the job's message had never been sent; sent now");
                self.mark_sent(job.id).await;
            }
            // Still unsent: another retry or the sweeper sends it.
            Err(err) => tracing::error!(error = %err, "could not send the unsent job's message"),
        }
    }

    async fn mark_sent(&self, id: JobId) {
        if let Err(err) = self.store.mark_sent(id).await {
            // Its message is out, so a worker will claim it, which clears the mark too.
            tracing::warn!(error = %err, "could not record that the job's message was sent");
        }
    }

    /// The job, if it left `queued` although sending its message seemed to fail: the send's answer
    /// was lost, not the message, and the job is running (docs/design.md, "Failure rules").
    async fn picked_up(&self, id: JobId) -> Option<Submitted> {
        match self.store.job(id).await {
            Ok(Some(job)) if job.status != JobStatus::Queued => {
                tracing::warn!(status = %job.status, "the queue's answer was lost, but the job was picked up");
                metrics::emit(&job.request.model, &[(Metric::JobsSubmitted, 1.0)]);
                Some(Submitted { job, replayed: false })
            }
            Ok(_) => None,
            Err(err) => {
                tracing::error!(error = %err, "could not read back the job whose message may have gone");
                None
            }
        }
    }
}
