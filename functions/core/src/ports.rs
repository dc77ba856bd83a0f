//! The small traits the services are written against, with their error types and the values
//! that cross them; adapters implement them.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use url::Url;

use crate::domain::catalogue::ProviderLimit;
use crate::domain::format::OutputFormat;
use crate::domain::generation::GenerateRequest;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Job, JobError, MediaItem, Parked, RunRecord};
use crate::domain::keys::{KeyHash, KeyRecord, Owner};
use crate::domain::limits::{KeyLimits, RouteClass, Window};
use crate::domain::listing::{Cursor, ListQuery};
use crate::domain::quota::{Admission, Charge, Month, Quota, QuotaChanges, QuotaDefaults, Usage};
use crate::domain::retry::{Budget, Transient};
use crate::domain::webhook::SigningState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    #[error("job {0} already exists")]
    AlreadyExists(JobId),
    #[error("stored record {pk} is unreadable: {reason}")]
    Corrupt { pk: String, reason: String },
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The answer to an attempt to claim a job for processing.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The job is ours until its lease ends; `attempts` identifies this claim.
    Claimed(Box<Job>),
    /// The job is final: nothing to do but queue its webhook if it is still pending
    /// (docs/design.md, "Webhooks").
    Final(Box<Job>),
    /// Another worker holds the job until then.
    Held { until: DateTime<Utc> },
    /// No such job.
    Missing,
}

/// The answer to failing a job whose message the queue gave up on (docs/design.md, "Failure rules").
#[derive(Debug, Clone, PartialEq)]
pub enum Stranded {
    /// The job was `queued`, or `processing` with its lease run out: it is now `failed`.
    Failed(Box<Job>),
    /// The job is final: nothing to do but queue its webhook if it is still pending.
    Final(Box<Job>),
    /// A worker still holds the job until then.
    Held { until: DateTime<Utc> },
    /// No such job.
    Missing,
}

/// The answer to committing a job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The job is `succeeded` with these media: by this write, or by an earlier try of the same
    /// commit whose answer was lost.
    Applied,
    /// The claim still holds, but a cancel was requested: the job is to end `canceled`.
    CancelRequested,
    /// Another worker took the job over, or it is final.
    Stale,
}

/// What adding a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    New,
    /// The key was stored already, as this record: nothing was changed.
    Existing(KeyRecord),
}

/// Whether a conditional state change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Applied,
    /// The job was no longer in the state the change expected (another worker or a final state).
    Stale,
}

/// The idempotency key a new job is written with, and the fingerprint of its request.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyClaim<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a str,
    /// Until when the key holds, in epoch seconds.
    pub expires_at: i64,
}

/// The answer to writing a new job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The idempotency key already names this job, made from a request with this fingerprint.
    Existing {
        job_id: JobId,
        fingerprint: String,
    },
}

/// The answer to a cancel.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// The job was `queued` and is now `canceled`.
    Canceled(Box<Job>),
    /// The job is `processing`; its attempt will end it `canceled`.
    Requested(Box<Job>),
    /// The job was already final.
    AlreadyFinal(Box<Job>),
    Missing,
}

/// A job whose message is not known to have been sent, as the sweeper finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsentJob {
    pub id: JobId,
    pub created_at: DateTime<Utc>,
}

/// One page of an owner's jobs, newest first, each as it is when the page is read
/// (docs/design.md, "Listing").
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Where the next page starts, if there may be one. A page can hold fewer jobs than asked,
    /// even none, and still have one (a filtered read stopped at its bound); only `None` is the end.
    pub next: Option<Cursor>,
}

/// The job store. Every final write (`complete`, `fail`, `finish_canceled`, a cancel of a
/// queued job, `fail_queued`, `fail_unsent`, `fail_stranded`) gives the job's slot back to its
/// owner's quota, and its charge if it failed or was canceled ([`QuotaStore::free_slot`]); should
/// that second write be lost, the slot is reclaimed when the owner next reaches the limit.
pub trait JobStore: Send + Sync {
    /// Writes a new job, with its idempotency key in the same transaction if given. Fails with
    /// [`StoreError::AlreadyExists`] if its id is taken.
    fn create(
        &self,
        job: &Job,
        idempotency: Option<IdempotencyClaim<'_>>,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send;
    /// Frees an idempotency key that still names `job_id`, so that the next submit with it makes
    /// a new job; `Stale` if it names another job or none.
    fn release_idempotency(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
        job_id: JobId,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// The job and request fingerprint an owner's idempotency key names, while it holds.
    fn idempotent_job(
        &self,
        owner: &Owner,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(JobId, String)>, StoreError>> + Send;
    /// The owner's jobs, newest first, as the query asks, reading at most
    /// [`MAX_READ`](crate::domain::listing::MAX_READ) of them.
    fn list(&self, owner: &Owner, query: &ListQuery) -> impl Future<Output = Result<JobPage, StoreError>> + Send;
    /// `queued → canceled`, or marks a `processing` job for cancelling.
    fn cancel(&self, id: JobId, now: DateTime<Utc>) -> impl Future<Output = Result<Cancel, StoreError>> + Send;
    /// `processing → canceled` for a job whose cancel was requested, if the claim still holds.
    /// Like every final write of a claim, it marks a job with a `webhook_url` `webhook_pending`.
    fn finish_canceled(
        &self,
        claimed: &Job,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;
    fn media(&self, id: MediaId) -> impl Future<Output = Result<Option<MediaItem>, StoreError>> + Send;
    /// The media items of a succeeded job, in index order, read as of its commit: all of them,
    /// or [`StoreError::Unavailable`], never part of them.
    fn job_media(&self, job: &Job) -> impl Future<Output = Result<Vec<MediaItem>, StoreError>> + Send;
    /// The job's message was sent: the job leaves the sweeper's sight.
    fn mark_sent(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The final job's webhook is queued: its `webhook_pending` mark is removed.
    fn mark_webhook_queued(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Jobs whose message is not known to have been sent, made before `before`, oldest first, at
    /// most `limit` of them.
    fn unsent(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<UnsentJob>, StoreError>> + Send;
    /// `queued → failed` for a job whose message was never sent and cannot be (past its retention,
    /// or the send failed): the failed job, or `None` if the job was sent, picked up or ended
    /// meanwhile.
    fn fail_unsent(
        &self,
        id: JobId,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;
    /// `queued → failed`, for a job whose message could not be sent.
    fn fail_queued(
        &self,
        id: JobId,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// `queued`, or `processing` whose lease has expired, `→ failed`: for a job no message will
    /// ever bring back.
    fn fail_stranded(
        &self,
        id: JobId,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Stranded, StoreError>> + Send;
    /// `queued → processing`, or takes over a `processing` job whose lease has expired.
    fn claim(
        &self,
        id: JobId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// `processing → succeeded` with its media items, in one transaction, if the claim still holds
    /// and no cancel was requested. Tried again after a lost answer, it answers `Applied` if the
    /// first try went through.
    fn complete(
        &self,
        claimed: &Job,
        media: &[MediaItem],
        record: &RunRecord,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// `processing → queued` after a transient failure, if the claim still holds.
    fn release(
        &self,
        claimed: &Job,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// Notes the runs `model` started for a claimed job (replacing those noted before), if the
    /// claim still holds.
    fn note_predictions(
        &self,
        claimed: &Job,
        model: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// Keeps a claimed job `processing` while its model runs on without us or it waits for its
    /// slot at the provider: its lease ends when the message sent for that time takes it over,
    /// and the models tried so far and its slot are noted for the next look; if the claim holds.
    /// A release gives the slot up.
    fn park(
        &self,
        claimed: &Job,
        parked: &Parked<'_>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// `processing → failed`, if the claim still holds.
    fn fail(
        &self,
        claimed: &Job,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
}

/// Per-owner quotas (docs/design.md, "Quotas"): a slot for each job queued or running, and each
/// month's charges.
pub trait QuotaStore: Send + Sync {
    /// Takes a slot for a job about to be written and charges it to its month, if the owner's
    /// quota admits one more job; slots still held by jobs that have ended are reclaimed first.
    fn admit(&self, job: &Job, defaults: QuotaDefaults) -> impl Future<Output = Result<Admission, StoreError>> + Send;
    /// Gives back the job's slot and `refund` of its charge: once, however often it is asked.
    fn free_slot(&self, job: &Job, refund: Charge) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The owner's use of their quota in `month`.
    fn usage(&self, owner: &Owner, month: Month) -> impl Future<Output = Result<Usage, StoreError>> + Send;
    /// Changes the owner's quota; answers it as it now is.
    fn set_quota(&self, owner: &Owner, changes: QuotaChanges)
    -> impl Future<Output = Result<Quota, StoreError>> + Send;
}

/// The body of a message on the jobs queue: `{"job_id":"…"}`. The job record is the truth.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct JobMessage {
    pub job_id: String,
}

/// API keys, stored by their hash.
pub trait KeyStore: Send + Sync {
    fn find(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;
    /// Stores a key that is not stored yet; a stored key is left as it is, and answered.
    fn add(&self, record: &KeyRecord) -> impl Future<Output = Result<Added, StoreError>> + Send;
    /// Every key, oldest first.
    fn all(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;
    fn revoke(&self, hash: &KeyHash, now: DateTime<Utc>)
    -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// Sets a key's rate limits; `Stale` if there is no such key.
    fn set_limits(
        &self,
        hash: &KeyHash,
        limits: KeyLimits,
    ) -> impl Future<Output = Result<Transition, StoreError>> + Send;
    /// Starts one request held open by `Prefer: wait` for the key, unless `limit` are open:
    /// whether it may wait. A count not renewed for `hold` is taken as stale and starts again.
    fn start_wait(
        &self,
        hash: &KeyHash,
        limit: u32,
        now: DateTime<Utc>,
        hold: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends a wait [`KeyStore::start_wait`] allowed.
    fn end_wait(&self, hash: &KeyHash) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts one request of `class` in the key's `window`, unless the window already counts
    /// `limit`: one conditional write, exact across every instance.
    fn count_request(
        &self,
        hash: &KeyHash,
        class: RouteClass,
        window: Window,
        limit: u32,
    ) -> impl Future<Output = Result<Counted, StoreError>> + Send;
}

/// Which generations of each owner's webhook key sign (docs/design.md, "Webhooks"), in an item
/// of their own per owner.
pub trait SigningStore: Send + Sync {
    /// The owner's state; generation 0 alone if none is stored.
    fn signing_state(&self, owner: &Owner) -> impl Future<Output = Result<SigningState, StoreError>> + Send;
    /// Moves the owner to the next generation in one write, and answers the new state. With
    /// `grace_until`, the generation that signed until now keeps signing until then (any older
    /// one stops); without, it stops at once: a revocation.
    fn next_generation(
        &self,
        owner: &Owner,
        grace_until: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<SigningState, StoreError>> + Send;
}

/// Each provider's creates, spaced at its rate across every instance (docs/design.md, "Provider
/// limits"): a clock of the next free slot that each reservation moves on, one per `key` (a
/// provider's name, or `model:<name>` for a model with a rate of its own).
pub trait ProviderGate: Send + Sync {
    /// Reserves `creates` of the provider's creates: answers when they may go, `now` when the
    /// provider is idle, later when reservations made before hold the slots until then.
    fn reserve(
        &self,
        key: &str,
        limit: ProviderLimit,
        creates: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<DateTime<Utc>, StoreError>> + Send;
    /// Pauses the provider for every worker until `until`: it answered 429 with a delay. No slot
    /// is given before then.
    fn pause(&self, key: &str, until: DateTime<Utc>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The first free slot, if the clock has run: what a job reserving now would wait until.
    fn next_slot(&self, key: &str) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;
}

/// No provider limits: tests, and deployments that count nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

impl ProviderGate for NoGate {
    async fn reserve(
        &self,
        _: &str,
        _: ProviderLimit,
        _: u32,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        Ok(now)
    }

    async fn pause(&self, _: &str, _: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn next_slot(&self, _: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }
}

/// What counting a request against its key's limit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted: the window's count with this request.
    Within(u32),
    /// Not counted: the window has reached the limit.
    Over,
}

/// How long one call to the job store or a queue may take, its retries included: the adapters
/// hold their clients to it, and the time kept back after an attempt counts on it.
pub const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        true
    }
}

pub trait JobQueue: Send + Sync {
    fn enqueue(&self, id: JobId) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Sends the job's message to arrive after `delay` (SQS holds one at most 15 minutes).
    fn enqueue_after(&self, id: JobId, delay: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Makes a received message visible again after `delay`.
    fn retry_later(&self, receipt_handle: &str, delay: Duration)
    -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The queue of webhook deliveries (docs/design.md, "Webhooks"): a `{"job_id":"…"}` message for
/// each job that became final with a `webhook_url`.
pub trait WebhookQueue: Send + Sync {
    fn enqueue(&self, id: JobId) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Makes a received delivery visible again after `delay`.
    fn retry_later(&self, receipt_handle: &str, delay: Duration)
    -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// One signed webhook POST.
#[derive(Debug, Clone)]
pub struct WebhookPost<'a> {
    pub url: &'a Url,
    /// Besides `content-type: application/json`: the `webhook-*` headers.
    pub headers: &'a [(&'static str, String)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The URL may not be called (a private address, a bad scheme): never retried.
    #[error("refused to call {url}: {reason}")]
    Refused { url: String, reason: String },
    /// The receiver answered something other than 2xx.
    #[error("{url} answered {status}")]
    Rejected { url: String, status: u16 },
    /// No answer: DNS, connection, timeout.
    #[error("could not reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Sends webhooks to the URLs clients gave, refusing those that lead into our own network.
pub trait WebhookSender: Send + Sync {
    /// Delivered once the receiver answers 2xx.
    fn post(&self, post: &WebhookPost<'_>) -> impl Future<Output = Result<(), WebhookError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media store unavailable: {0}")]
    Unavailable(String),
    #[error("could not presign a URL: {0}")]
    Presign(String),
}

impl Transient for MediaError {
    fn is_transient(&self) -> bool {
        matches!(self, MediaError::Unavailable(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Reads stored media: what the functions that serve images need, and no more.
pub trait MediaReader: Send + Sync {
    /// The bytes of a stored object.
    fn get(&self, bucket: &str, key: &str) -> impl Future<Output = Result<Bytes, MediaError>> + Send;
    fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<PresignedUrl, MediaError>> + Send;
}

/// Reads and writes stored media: what the functions that make images need.
pub trait MediaStore: MediaReader {
    /// The bucket new media is written to.
    fn bucket(&self) -> &str;
    fn put(&self, key: &str, body: Bytes, content_type: &str) -> impl Future<Output = Result<(), MediaError>> + Send;
    /// Removes objects an attempt wrote but never committed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), MediaError>> + Send;
}

/// One encoded image, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Worth another try: throttling, a 5xx, a timeout, a lost connection.
    #[error("model temporarily unavailable: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The model refused this input; another try would fail the same way.
    #[error("model rejected the job ({code}): {message}")]
    Permanent { code: String, message: String },
    /// Our side is misconfigured (a bad token, say): no job can succeed until an operator acts.
    #[error("model misconfigured: {message}")]
    Configuration { message: String },
    /// The run goes on at the provider: the job is looked at again after `check_after`, and no
    /// invocation waits for it meanwhile (docs/design.md, "Slow models").
    #[error("model still running: {message}")]
    Pending { message: String, check_after: Duration },
}

impl Transient for ModelError {
    fn is_transient(&self) -> bool {
        matches!(self, ModelError::Transient { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Where a model notes the paid work it starts for a job, as it starts it, so that a later
/// attempt (after a crash, a timeout, a transient error) resumes that work instead of paying for
/// it again (docs/design.md, "Image models").
pub trait RunLog: Send + Sync {
    /// The ids noted so far, in order.
    fn noted(&self) -> Vec<String>;
    /// Replaces what is noted. Best effort: work that could not be noted is only paid again.
    fn note(&self, ids: Vec<String>) -> impl Future<Output = ()> + Send;
}

/// A log that keeps nothing: for models with no paid work to resume, and for tests.
#[derive(Debug, Default)]
pub struct NoRunLog;

impl RunLog for NoRunLog {
    fn noted(&self) -> Vec<String> {
        Vec::new()
    }

    async fn note(&self, _ids: Vec<String>) {}
}

/// An image model. A run ends with a list of outputs that may still have to be fetched (a URL,
/// say); the caller fetches and stores them one at a time, so that a job never holds all its
/// images in memory at once.
pub trait ImageModel: Send + Sync {
    type Output: Send + Sync;

    /// The least time an attempt needs to do anything useful: with less, a job is not claimed
    /// (docs/design.md, "Failure rules").
    fn min_budget(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Runs the model for the whole request; answers one output per requested image. Work it
    /// pays for is noted in `log` as it starts, and work noted there is resumed.
    fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> impl Future<Output = Result<Vec<Self::Output>, ModelError>> + Send;

    /// Turns one output into the encoded image.
    fn fetch(
        &self,
        request: &GenerateRequest,
        output: &Self::Output,
        budget: &Budget,
    ) -> impl Future<Output = Result<GeneratedImage, ModelError>> + Send;

    /// Stops a run noted in a [`RunLog`] that no attempt will collect, its job having ended
    /// without success, so that it is not paid for to the end (docs/design.md, "Image models").
    /// A run already over is left as it is. A model with no paid runs has nothing to stop.
    fn cancel_run(&self, _id: &str) -> impl Future<Output = Result<(), ModelError>> + Send {
        async { Ok(()) }
    }
}
