//! Process one queued job: claim it, run the model, store the images, finish the job
//! (docs/design.md, "Job states", "Failure rules"), and queue its webhook once it is final, at
//! least once ("Webhooks"). The caller turns the [`Outcome`] into an SQS acknowledgement or a retry.

use chrono::Utc;
use std::time::{Duration, Instant};

use super::message::{Delivery, Outcome};
use super::metrics::{self, Metric};
use super::sweep::{cancel_runs, discard_images};
use super::webhooks::Notifier;
use crate::domain::catalogue::{Catalogue, fit_size};
use crate::domain::cost::{AwsRates, JobUsage, job_cost};
use crate::domain::generation::GenerateRequest;
use crate::domain::ids::MediaId;
use crate::domain::job::{Job, JobError, JobStatus, MediaItem, ModelAttempt, Parked, ProviderSlot, RunRecord, expiry};
use crate::domain::retry::{Backoff, Budget, lease_wait, redelivery_delay, transient_redelivery};
use crate::ports::{
    Claim, Commit, ImageModel, JobQueue, JobStore, MediaStore, ModelError, NoGate, ProviderGate, RunLog, Transition,
};

/// The shortest and longest wait before a running model is looked at again.
const CHECK_AFTER: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(900));

/// How early a job may start before its slot at the provider: a delayed message comes in whole
/// seconds. Any minute then sees at most the provider's rate and a second's creates more.
const SLOT_EARLY: Duration = Duration::from_secs(1);

/// How soon a message returned unclaimed for lack of time comes back: at once, to another
/// invocation with a fresh budget.
const UNCLAIMED_DELAY: Duration = Duration::from_secs(1);

/// What a job waits for, without holding an invocation: its model's run at the provider, or its
/// slot there (docs/design.md, "Slow models", "Provider limits").
#[derive(Debug)]
struct Waiting {
    message: String,
    check_after: Duration,
    /// The models tried so far, kept on the job for the next look.
    attempts: Vec<ModelAttempt>,
    /// The slot at its provider the job waits for, if it waits for one.
    slot: Option<ProviderSlot>,
}

/// Why an attempt did not finish the job.
#[derive(Debug)]
enum AttemptError {
    /// Worth another delivery, not before `retry_after` if the other side asked for a delay.
    Transient {
        /// What went wrong, for the log: it may hold an SDK's whole error chain.
        message: String,
        /// What the job shows its client instead.
        public: &'static str,
        retry_after: Option<Duration>,
    },
    /// The job can never succeed.
    Permanent(JobError),
    /// Another worker took the job over; it is theirs now.
    LostClaim,
    /// The job's cancel was requested while it ran.
    Canceled,
    /// The model runs on at its provider: look again after `check_after`.
    Pending(Waiting),
}

pub struct GenerateSettings {
    pub max_receive_count: u32,
    pub retention: Duration,
    /// Which models fall back to which, and what each costs (docs/design.md, "Fallback").
    pub catalogue: Catalogue,
    /// The memory of the function, in MB: the Lambda share of a job's cost.
    pub memory_mb: u32,
    /// The longest a job's model may run, from its first claim: past it the job fails
    /// `model_timeout` and its runs are stopped (docs/design.md, "Slow models").
    pub max_model_time: Duration,
    /// How long a claim outlives the invocation's budget, so that no other worker takes over a
    /// job whose attempt is still writing its result.
    pub lease_margin: Duration,
    pub retries: Backoff,
    /// The retries of a model that has a fallback after it: fewer, so that the fallback still
    /// has time in the same invocation.
    pub fallback_retries: Backoff,
}

impl GenerateSettings {
    pub fn new(max_receive_count: u32, retention: Duration) -> Self {
        Self {
            max_receive_count,
            retention,
            catalogue: Catalogue::default(),
            memory_mb: 1024,
            max_model_time: Duration::from_secs(30 * 60),
            lease_margin: Duration::from_secs(30),
            retries: Backoff::new(Duration::from_millis(200), Duration::from_secs(10), 5),
            fallback_retries: Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 2),
        }
    }
}

pub struct Generator<S, Q, M, I, G = NoGate> {
    store: S,
    queue: Q,
    media: M,
    model: I,
    webhooks: Notifier,
    settings: GenerateSettings,
    /// Where each provider's creates are counted (docs/design.md, "Provider limits").
    gate: G,
}

impl<S: JobStore, Q: JobQueue, M: MediaStore, I: ImageModel> Generator<S, Q, M, I> {
    pub fn new(store: S, queue: Q, media: M, model: I, webhooks: Notifier, settings: GenerateSettings) -> Self {
        Self {
            store,
            queue,
            media,
            model,
            webhooks,
            settings,
            gate: NoGate,
        }
    }
}

impl<S, Q, M, I, G> Generator<S, Q, M, I, G> {
    /// The generator with its providers' creates counted by `gate`.
    pub fn with_gate<H: ProviderGate>(self, gate: H) -> Generator<S, Q, M, I, H> {
        Generator {
            store: self.store,
            queue: self.queue,
            media: self.media,
            model: self.model,
            webhooks: self.webhooks,
            settings: self.settings,
            gate,
        }
    }
}

impl<S: JobStore, Q: JobQueue, M: MediaStore, I: ImageModel, G: ProviderGate> Generator<S, Q, M, I, G> {
    /// The least time one record needs: see [`ImageModel::min_budget`].
    pub fn min_budget(&self) -> Duration {
        self.model.min_budget()
    }

    pub async fn process(&self, delivery: &Delivery<'_>, budget: &Budget) -> Outcome {
        if budget.remaining() < self.model.min_budget() {
            // A claim now would spend an attempt that cannot finish: the message goes back for
            // an invocation with time to run it (docs/design.md, "Failure rules").
            tracing::info!(
                budget_ms = budget.remaining().as_millis() as u64,
                "too little time left to start the job; message returned unclaimed"
            );
            self.delay_redelivery(delivery, UNCLAIMED_DELAY).await;
            return Outcome::Retry;
        }
        let now = Utc::now();
        let lease_until = now + budget.remaining() + self.settings.lease_margin;
        let claimed = match self.store.claim(delivery.job_id, now, lease_until).await {
            Ok(Claim::Claimed(job)) => job,
            Ok(Claim::Final(job)) => {
                if job.status != JobStatus::Succeeded {
                    // Canceled while it waited in the queue, with a run an earlier attempt left
                    // going; or ended by an attempt that died before stopping its runs.
                    cancel_runs(&self.model, &job.predictions).await;
                }
                if job.webhook_pending {
                    // The attempt that ended it died before queueing its webhook, or returned the
                    // message when its final write's answer was lost (docs/design.md, "Webhooks").
                    tracing::info!(status = %job.status, "job already final, its webhook never queued; queueing it");
                    return self.announce(&job, delivery, Outcome::Acknowledge).await;
                }
                tracing::info!(status = %job.status, "job already final; message dropped");
                return Outcome::Acknowledge;
            }
            Ok(Claim::Missing) => {
                tracing::warn!("message names a job that does not exist; dropped");
                return Outcome::Acknowledge;
            }
            Ok(Claim::Held { until }) => {
                tracing::info!(lease_until = %until, "job held by another worker; message returned");
                // Come back when that lease could have run out, not before.
                self.delay_redelivery(delivery, lease_wait(now, until)).await;
                return Outcome::Retry;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not claim the job; message returned");
                return Outcome::Retry;
            }
        };
        tracing::info!(
            attempt = claimed.attempts,
            receive_count = delivery.receive_count,
            "job claimed"
        );
        if claimed.cancel_requested {
            return self
                .finish_canceled(&claimed, &[], &claimed.predictions, delivery)
                .await;
        }

        // The keys this attempt stored images under, to remove if the job does not succeed.
        let mut stored = Vec::new();
        let runs = JobRuns {
            store: &self.store,
            job: &claimed,
            noted: std::sync::Mutex::new(claimed.predictions.clone()),
            model: std::sync::Mutex::new(claimed.request.model.clone()),
        };
        match self.attempt(&claimed, budget, &runs, &mut stored).await {
            Ok(record) => {
                let timings = claimed.timings_until(Some(Utc::now()));
                tracing::info!(
                    queued_ms = timings.queued_ms,
                    generation_ms = timings.generation_ms,
                    "job succeeded"
                );
                let mut values = vec![
                    (Metric::JobsSucceeded, 1.0),
                    (Metric::CostUsd, record.cost_microdollars as f64 / 1e6),
                ];
                values.extend(timings.queued_ms.map(|ms| (Metric::QueueLatency, ms as f64)));
                values.extend(timings.generation_ms.map(|ms| (Metric::GenerationLatency, ms as f64)));
                metrics::emit(&claimed.request.model, &values);
                if claimed.attempts > 1 {
                    // An earlier attempt may have stored an image in another format before it died.
                    let stray: Vec<String> = claimed
                        .possible_media_keys()
                        .into_iter()
                        .filter(|key| !stored.contains(key))
                        .collect();
                    discard_images(&self.media, &stray).await;
                }
                self.announce(&claimed, delivery, Outcome::Acknowledge).await
            }
            Err(AttemptError::LostClaim) => {
                tracing::warn!("another worker took the job over; this attempt's result is discarded");
                Outcome::Acknowledge
            }
            Err(AttemptError::Canceled) => self.finish_canceled(&claimed, &stored, &runs.noted(), delivery).await,
            Err(AttemptError::Pending(waiting)) => self.look_again(&claimed, &runs, &waiting, delivery).await,
            Err(AttemptError::Permanent(error)) => {
                tracing::warn!(code = %error.code, message = %error.message, "job failed for good");
                let ended = Ended {
                    stored: &stored,
                    runs: &runs.noted(),
                };
                self.finish_failed(&claimed, &error, ended, delivery, Outcome::Acknowledge)
                    .await
            }
            Err(AttemptError::Transient { message, public, .. })
                if delivery.receive_count >= self.settings.max_receive_count =>
            {
                tracing::error!(%message, "last allowed attempt failed; job failed");
                // Reported as a failure all the same, so that the queue moves the message to the
                // dead-letter queue for an operator to see.
                let error = JobError::retries_exhausted(public);
                let ended = Ended {
                    stored: &stored,
                    runs: &runs.noted(),
                };
                self.finish_failed(&claimed, &error, ended, delivery, Outcome::Retry)
                    .await
            }
            Err(AttemptError::Transient {
                message,
                public,
                retry_after,
            }) => {
                tracing::warn!(%message, "attempt failed; job goes back to the queue");
                let error = JobError::new("transient_error", public);
                match self.store.release(&claimed, &error, Utc::now()).await {
                    // A queued job holds no images: a cancel while it waits leaves none behind.
                    Ok(Transition::Applied) => discard_images(&self.media, &stored).await,
                    Ok(Transition::Stale) => {}
                    // The lease will run out and the next delivery will take the job over.
                    Err(err) => tracing::warn!(error = %err, "could not release the job"),
                }
                let delay = transient_redelivery(delivery.receive_count, retry_after);
                self.delay_redelivery(delivery, delay).await;
                Outcome::Retry
            }
        }
    }

    async fn attempt(
        &self,
        job: &Job,
        budget: &Budget,
        runs: &JobRuns<'_, S>,
        stored: &mut Vec<String>,
    ) -> Result<RunRecord, AttemptError> {
        let began = Instant::now();
        let retries = &self.settings.retries;
        // The models earlier looks at the job tried (docs/design.md, "Slow models").
        let mut model_attempts = job.model_attempts.clone();
        let (request, outputs) = self.run_models(job, budget, runs, &mut model_attempts).await?;

        let ttl = expiry(Utc::now(), self.settings.retention);
        let mut media = Vec::with_capacity(outputs.len());
        for (index, output) in (0u32..).zip(&outputs) {
            let image = retries
                .retry(budget, || self.model.fetch(&request, output, budget))
                .await
                .map_err(model_failure)?;
            let key = job.media_key(index, image.format);
            let content_type = image.format.content_type();
            let bytes = image.bytes.len() as u64;
            let body = bytes::Bytes::from(image.bytes);
            // The key is fixed per job and index, so a repeated attempt overwrites, never adds.
            stored.push(key.clone());
            retries
                .retry(budget, || self.media.put(&key, body.clone(), content_type))
                .await
                .map_err(transient)?;
            media.push(MediaItem {
                id: MediaId::new(),
                job_id: job.id,
                owner: job.owner.clone(),
                index,
                bucket: self.media.bucket().to_owned(),
                key,
                content_type: content_type.to_owned(),
                bytes,
                width: image.width,
                height: image.height,
                ttl,
            });
        }

        let usage = JobUsage {
            price_per_image: self
                .settings
                .catalogue
                .entry(&request.model)
                .map_or(job.price_per_image, |entry| entry.price_per_image),
            images: media.len() as u64,
            bytes: media.iter().map(|m| m.bytes).sum(),
            lambda_ms: began.elapsed().as_millis() as u64,
            memory_mb: self.settings.memory_mb,
            retention_days: self.settings.retention.as_secs() / 86_400,
        };
        let record = RunRecord {
            model_attempts,
            cost_microdollars: job_cost(usage, AwsRates::LIST),
        };
        match retries
            .retry(budget, || self.store.complete(job, &media, &record, Utc::now()))
            .await
            .map_err(transient)?
        {
            Commit::Applied => Ok(record),
            Commit::CancelRequested => Err(AttemptError::Canceled),
            Commit::Stale => Err(AttemptError::LostClaim),
        }
    }

    /// Runs the job's model, and while its provider is unavailable (5xx, 429 past the retries,
    /// a timeout) each fallback in turn; a model's verdict on the input is never passed on to
    /// another (docs/design.md, "Fallback"). Answers the request as the model that made the
    /// outputs took it, and notes every model tried in `tried`.
    async fn run_models(
        &self,
        job: &Job,
        budget: &Budget,
        runs: &JobRuns<'_, S>,
        tried: &mut Vec<ModelAttempt>,
    ) -> Result<(GenerateRequest, Vec<I::Output>), AttemptError> {
        let catalogue = &self.settings.catalogue;
        let request = &job.request;
        // A fallback that cannot make this request (its size, its format) is passed over.
        let mut chain: Vec<String> = catalogue
            .fallback_chain(&request.model)
            .into_iter()
            .enumerate()
            .filter(|(position, model)| {
                *position == 0
                    || catalogue.entry(model).is_some_and(|entry| {
                        entry.formats.contains(&request.output_format)
                            && fit_size(&entry.sizes, request.width, request.height).is_ok()
                    })
            })
            .map(|(_, model)| model)
            .collect();
        // Runs noted for a fallback are taken up by that fallback, where the last look left them.
        if let Some(at) = job
            .runs_model
            .as_ref()
            .filter(|_| !job.predictions.is_empty())
            .and_then(|model| chain.iter().position(|m| m == model))
        {
            chain.drain(..at);
        }
        let last = chain.len().saturating_sub(1);
        for (position, model) in chain.into_iter().enumerate() {
            runs.running(&model);
            let request = GenerateRequest {
                model,
                ..job.request.clone()
            };
            let retries = if position == last {
                &self.settings.retries
            } else {
                &self.settings.fallback_retries
            };
            if let Some(slot) = self.slot_at_provider(&request, runs).await? {
                let wait = (slot.at - Utc::now()).to_std().unwrap_or_default();
                return Err(AttemptError::Pending(Waiting {
                    message: format!("its slot at the provider of {} is at {}", request.model, slot.at),
                    check_after: wait,
                    attempts: std::mem::take(tried),
                    slot: Some(slot),
                }));
            }
            let began = Instant::now();
            let result = retries
                .retry(budget, || self.model.generate(&request, budget, runs))
                .await;
            if let Err(ModelError::Transient {
                retry_after: Some(delay),
                ..
            }) = &result
            {
                self.pause_provider(&request.model, *delay).await;
            }
            let duration_ms = began.elapsed().as_millis() as u64;
            if let Err(ModelError::Pending { message, check_after }) = result {
                return Err(AttemptError::Pending(Waiting {
                    message,
                    check_after,
                    attempts: std::mem::take(tried),
                    slot: None,
                }));
            }
            let outcome = match &result {
                Ok(_) => "succeeded".to_owned(),
                Err(ModelError::Transient { .. }) => MODEL_UNAVAILABLE_CODE.to_owned(),
                Err(ModelError::Permanent { code, .. }) => code.clone(),
                Err(ModelError::Configuration { .. }) => "model_configuration".to_owned(),
                Err(ModelError::Pending { .. }) => "pending".to_owned(),
            };
            tried.push(ModelAttempt {
                model: request.model.clone(),
                outcome,
                duration_ms,
            });
            match result {
                Ok(outputs) => return Ok((request, outputs)),
                Err(err @ ModelError::Transient { .. }) if position < last => {
                    tracing::warn!(model = %request.model, error = %err, "model unavailable; its fallback is tried");
                    // The next model does not collect this one's runs: stop them.
                    cancel_runs(&self.model, &runs.noted()).await;
                    runs.note(Vec::new()).await;
                }
                Err(err) => return Err(model_failure(err)),
            }
        }
        Err(AttemptError::Permanent(JobError::new(
            "unknown_model",
            "the job names no model",
        )))
    }

    /// The slot a run of `request` waits for at its provider (docs/design.md, "Provider
    /// limits"): `None` when it may start now: its provider has no limit, its runs noted on the
    /// job are taken up (not made again), or its slot has come. A job keeps the slot it reserved
    /// until it is released.
    async fn slot_at_provider(
        &self,
        request: &GenerateRequest,
        runs: &JobRuns<'_, S>,
    ) -> Result<Option<ProviderSlot>, AttemptError> {
        let catalogue = &self.settings.catalogue;
        let Some(((key, limit), entry)) = catalogue.limit_of(&request.model).zip(catalogue.entry(&request.model))
        else {
            return Ok(None);
        };
        let job = runs.job;
        let resumes =
            job.runs_model.as_deref().unwrap_or(&job.request.model) == request.model && !runs.noted().is_empty();
        if resumes {
            return Ok(None);
        }
        let now = Utc::now();
        let at = match &job.provider_slot {
            Some(slot) if slot.model == request.model => slot.at,
            _ => {
                let creates = request.num_outputs.div_ceil(entry.max_outputs.max(1));
                self.gate.reserve(&key, limit, creates, now).await.map_err(transient)?
            }
        };
        Ok((at > now + SLOT_EARLY).then(|| ProviderSlot {
            model: request.model.clone(),
            at,
        }))
    }

    /// Pauses the provider of `model` for every worker: it asked for `delay`.
    async fn pause_provider(&self, model: &str, delay: Duration) {
        let Some((key, _)) = self.settings.catalogue.limit_of(model) else {
            return;
        };
        let until = Utc::now() + delay;
        match self.gate.pause(&key, until).await {
            Ok(()) => tracing::warn!(%key, %until, "the provider asked for a pause; paused for every worker"),
            Err(err) => tracing::warn!(error = %err, "could not pause the provider"),
        }
    }

    /// Leaves a job whose model runs on at its provider, to be looked at again after
    /// `check_after` by a message of its own: the job stays `processing`, no invocation waits,
    /// and no receive is spent (docs/design.md, "Slow models"). A model past its
    /// `max_model_time` fails the job instead.
    async fn look_again(
        &self,
        claimed: &Job,
        runs: &JobRuns<'_, S>,
        waiting: &Waiting,
        delivery: &Delivery<'_>,
    ) -> Outcome {
        let now = Utc::now();
        let running = claimed
            .started_at
            .and_then(|started| (now - started).to_std().ok())
            .unwrap_or_default();
        let limit = self.settings.max_model_time;
        if running >= limit {
            tracing::warn!(running_s = running.as_secs(), "the model ran past its time; job failed");
            let error = JobError::new(
                "model_timeout",
                format!("the model did not finish within {} s", limit.as_secs()),
            );
            let ended = Ended {
                stored: &[],
                runs: &runs.noted(),
            };
            return self
                .finish_failed(claimed, &error, ended, delivery, Outcome::Acknowledge)
                .await;
        }
        let check_after = waiting.check_after.clamp(CHECK_AFTER.0, CHECK_AFTER.1);
        let parked = Parked {
            lease_until: now + check_after,
            attempts: &waiting.attempts,
            slot: waiting.slot.as_ref(),
        };
        match self.store.park(claimed, &parked, now).await {
            Ok(Transition::Applied) => {}
            Ok(Transition::Stale) => {
                tracing::warn!("another worker took the job over while its model ran");
                return Outcome::Acknowledge;
            }
            Err(err) => {
                // The lease still runs out, later: the message comes back then.
                tracing::warn!(error = %err, "could not shorten the job's lease; message returned");
                self.delay_redelivery(delivery, check_after).await;
                return Outcome::Retry;
            }
        }
        match self.queue.enqueue_after(claimed.id, check_after).await {
            Ok(()) => {
                tracing::info!(message = %waiting.message, check_after_s = check_after.as_secs(), "job waits for its model; looked at again later");
                Outcome::Acknowledge
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not send the job's next look; message returned");
                self.delay_redelivery(delivery, check_after).await;
                Outcome::Retry
            }
        }
    }

    /// Ends a job whose cancel was requested, removes what its attempts stored, and stops the
    /// model's runs noted for it (`runs`).
    async fn finish_canceled(
        &self,
        claimed: &Job,
        stored: &[String],
        runs: &[String],
        delivery: &Delivery<'_>,
    ) -> Outcome {
        match self.store.finish_canceled(claimed, Utc::now()).await {
            Ok(Transition::Applied) => {
                tracing::info!("job canceled as requested; its images were not committed");
            }
            Ok(Transition::Stale) => {
                tracing::warn!("another worker took the job over before it could be canceled");
                return Outcome::Acknowledge;
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not mark the job canceled; message returned");
                return Outcome::Retry;
            }
        }
        discard_images(&self.media, &leftovers(claimed, stored)).await;
        cancel_runs(&self.model, runs).await;
        self.announce(claimed, delivery, Outcome::Acknowledge).await
    }

    async fn finish_failed(
        &self,
        claimed: &Job,
        error: &JobError,
        ended: Ended<'_>,
        delivery: &Delivery<'_>,
        outcome: Outcome,
    ) -> Outcome {
        match self.store.fail(claimed, error, Utc::now()).await {
            Ok(Transition::Applied) => {
                metrics::emit(&claimed.request.model, &[(Metric::JobsFailed, 1.0)]);
                discard_images(&self.media, &leftovers(claimed, ended.stored)).await;
                cancel_runs(&self.model, ended.runs).await;
                self.announce(claimed, delivery, outcome).await
            }
            Ok(Transition::Stale) => {
                tracing::warn!("another worker took the job over before it could be failed");
                Outcome::Acknowledge
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not mark the job failed; message returned");
                Outcome::Retry
            }
        }
    }

    /// Queues the webhook of a job whose final write (this attempt's, or an earlier one's) marked
    /// it pending; answers `done` once nothing is left to queue. When it cannot be queued the
    /// message is returned, so that its next delivery finds the mark and tries again
    /// (docs/design.md, "Webhooks").
    async fn announce(&self, job: &Job, delivery: &Delivery<'_>, done: Outcome) -> Outcome {
        if self.webhooks.job_final_marked(&self.store, job).await {
            return done;
        }
        self.delay_redelivery(delivery, redelivery_delay(delivery.receive_count))
            .await;
        Outcome::Retry
    }

    async fn delay_redelivery(&self, delivery: &Delivery<'_>, delay: Duration) {
        let Some(receipt_handle) = delivery.receipt_handle else {
            return;
        };
        if let Err(err) = self.queue.retry_later(receipt_handle, delay).await {
            // The queue's own visibility timeout still brings the message back.
            tracing::warn!(error = %err, "could not set the message's redelivery delay");
        }
    }
}

/// What an attempt that did not succeed leaves to clean up once its job is failed.
struct Ended<'a> {
    /// The keys it stored images under.
    stored: &'a [String],
    /// The model's runs noted for the job, by it or by earlier attempts.
    runs: &'a [String],
}

/// The images a job that ends without success may have left: what this attempt stored, and if
/// an earlier attempt may have stored some before it crashed, every key the job may have.
fn leftovers(claimed: &Job, stored: &[String]) -> Vec<String> {
    if claimed.attempts > 1 {
        claimed.possible_media_keys()
    } else {
        stored.to_vec()
    }
}

/// What a job shows for a failure of our own stores, and for one of the model.
const STORAGE_UNAVAILABLE: &str = "storage was briefly unavailable";
const MODEL_UNAVAILABLE: &str = "the image model was unavailable or busy";
/// A model attempt's outcome when its provider was down or busy past the retries.
const MODEL_UNAVAILABLE_CODE: &str = "model_unavailable";

/// A failure of our own stores: worth another delivery, at the usual pace.
fn transient(err: impl std::fmt::Display) -> AttemptError {
    AttemptError::Transient {
        message: err.to_string(),
        public: STORAGE_UNAVAILABLE,
        retry_after: None,
    }
}

/// Notes a claimed job's model runs on the job, under its claim, as the runs of the model
/// running now.
struct JobRuns<'a, S> {
    store: &'a S,
    job: &'a Job,
    noted: std::sync::Mutex<Vec<String>>,
    model: std::sync::Mutex<String>,
}

impl<S> JobRuns<'_, S> {
    fn running(&self, model: &str) {
        if let Ok(mut running) = self.model.lock() {
            model.clone_into(&mut running);
        }
    }
}

impl<S: JobStore> RunLog for JobRuns<'_, S> {
    fn noted(&self) -> Vec<String> {
        self.noted.lock().map(|noted| noted.clone()).unwrap_or_default()
    }

    async fn note(&self, ids: Vec<String>) {
        if let Ok(mut noted) = self.noted.lock() {
            noted.clone_from(&ids);
        }
        let model = self.model.lock().map(|m| m.clone()).unwrap_or_default();
        match self.store.note_predictions(self.job, &model, &ids).await {
            Ok(Transition::Applied) => tracing::info!(runs = ?ids, "model runs noted on the job"),
            Ok(Transition::Stale) => tracing::warn!("another worker took the job over; its runs are not noted"),
            // The run goes on; only a later attempt would not find it, and pay again.
            Err(err) => tracing::warn!(error = %err, "could not note the model's runs on the job"),
        }
    }
}

fn model_failure(err: ModelError) -> AttemptError {
    match err {
        ModelError::Pending { message, check_after } => AttemptError::Pending(Waiting {
            message,
            check_after,
            attempts: Vec::new(),
            slot: None,
        }),
        ModelError::Transient { message, retry_after } => AttemptError::Transient {
            message,
            public: MODEL_UNAVAILABLE,
            retry_after,
        },
        // The model's verdict on this input is the client's to read.
        ModelError::Permanent { code, message } => AttemptError::Permanent(JobError::new(code, message)),
        ModelError::Configuration { message } => {
            tracing::error!(%message, "the image model is misconfigured: every job will fail until fixed");
            AttemptError::Permanent(JobError::new(
                "model_configuration",
                "the image model is misconfigured on our side",
            ))
        }
    }
}
