//! A job, its states and the media it produced (docs/design.md, "Job states", "Stored data").

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

use super::format::OutputFormat;
use super::generation::GenerateRequest;
use super::ids::{JobId, MediaId};
use super::keys::Owner;

/// A job's state.
// Named on the wire as in the store (docs/design.md, "Job states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Final states never change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "processing" => JobStatus::Processing,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "canceled" => JobStatus::Canceled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// Which API a job was asked through, so that what is sent about it later (a webhook) speaks
/// that API's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    #[default]
    Media,
    /// The Replicate-compatible API: the job is a prediction.
    Replicate,
    /// The OpenAI-compatible images API, which sends nothing later: its answer waits for the job.
    OpenAi,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Media => "media",
            Interface::Replicate => "replicate",
            Interface::OpenAi => "openai",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "media" => Some(Interface::Media),
            "replicate" => Some(Interface::Replicate),
            "openai" => Some(Interface::OpenAi),
            _ => None,
        }
    }
}

/// Why a job failed, or why its last attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

impl JobError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    pub const ENQUEUE_FAILED: &str = "enqueue_failed";

    pub fn enqueue_failed() -> Self {
        Self::new(Self::ENQUEUE_FAILED, "the job could not be queued for processing")
    }

    /// A job whose message the queue gave up on before any attempt could end it.
    pub fn stranded() -> Self {
        Self::new(
            "retries_exhausted",
            "gave up: the job's message used up its deliveries before an attempt could finish it",
        )
    }

    pub fn retries_exhausted(last: &str) -> Self {
        Self::new(
            "retries_exhausted",
            format!("gave up after the last allowed attempt: {last}"),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// Whose job it is: every read is scoped to its owner.
    pub owner: Owner,
    pub request: GenerateRequest,
    pub status: JobStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub error: Option<JobError>,
    pub media_ids: Vec<MediaId>,
    /// Set by a cancel while the job is `processing`: its attempt ends it `canceled`.
    pub cancel_requested: bool,
    pub interface: Interface,
    /// Where the client reached the API when it submitted the job (scheme, host and stage), so
    /// that the links sent about it later (in a webhook) resolve: `None` for jobs made before.
    pub api_root: Option<String>,
    /// Set from the job's creation until its queue message is known to have been sent (or a
    /// worker claims it): a job still unsent long after `submit` ended is sent again by the
    /// sweeper (docs/design.md, "Failure rules").
    pub unsent: bool,
    /// The model's own ids of the paid work started for this job (Replicate's predictions), in
    /// order, noted as each starts: a later attempt resumes them instead of paying again.
    pub predictions: Vec<String>,
    /// The model whose runs `predictions` are, if it is not the job's own: a fallback's.
    pub runs_model: Option<String>,
    /// The slot the job holds at its model's provider while it waits for it.
    pub provider_slot: Option<ProviderSlot>,
    /// Set by `generate`'s final write of a job with a `webhook_url`, removed once the webhook is
    /// queued: whoever finds a final job with it set queues the webhook (docs/design.md,
    /// "Webhooks").
    pub webhook_pending: bool,
    /// What one image of the requested model costs at its provider, in micro-dollars, from the
    /// catalogue when the job was submitted: what the job counts against its owner's budget.
    pub price_per_image: u64,
    /// Each model tried for the succeeded job, in order: the last one made its images
    /// (docs/design.md, "Fallback").
    pub model_attempts: Vec<ModelAttempt>,
    /// What the succeeded job cost, model and AWS, in micro-dollars (docs/cost.md).
    pub cost_microdollars: Option<u64>,
    /// Epoch seconds after which DynamoDB may delete the record.
    pub ttl: i64,
}

/// When a job's model may start at its provider, reserved from the provider's rate
/// (docs/design.md, "Provider limits"): the job waits for it without holding a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSlot {
    pub model: String,
    pub at: DateTime<Utc>,
}

/// How a job waits for its model: until when its lease holds, the models tried so far, and the
/// slot it holds at its provider, if it waits for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Parked<'a> {
    pub lease_until: DateTime<Utc>,
    pub attempts: &'a [ModelAttempt],
    pub slot: Option<&'a ProviderSlot>,
}

/// One model's try at a job's images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ModelAttempt {
    pub model: String,
    /// `succeeded`, or the job error code of its failure (`model_unavailable` when its provider
    /// was down or busy past the retries).
    pub outcome: String,
    pub duration_ms: u64,
}

/// What a succeeded attempt records on its job beside the media.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    pub model_attempts: Vec<ModelAttempt>,
    pub cost_microdollars: u64,
}

impl Job {
    pub fn new(owner: Owner, request: GenerateRequest, now: DateTime<Utc>, retention: std::time::Duration) -> Self {
        Job {
            id: JobId::new(),
            owner,
            request,
            status: JobStatus::Queued,
            attempts: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
            lease_until: None,
            error: None,
            media_ids: Vec::new(),
            cancel_requested: false,
            interface: Interface::Media,
            api_root: None,
            unsent: true,
            predictions: Vec::new(),
            runs_model: None,
            provider_slot: None,
            webhook_pending: false,
            price_per_image: 0,
            model_attempts: Vec::new(),
            cost_microdollars: None,
            ttl: expiry(now, retention),
        }
    }

    /// Failed because its message was never sent: no attempt ever ran it.
    pub fn never_queued(&self) -> bool {
        self.status == JobStatus::Failed && self.error.as_ref().is_some_and(|e| e.code == JobError::ENQUEUE_FAILED)
    }

    pub fn timings(&self) -> Timings {
        self.timings_until(self.completed_at)
    }

    /// The timings as they will be if the job completes at `completed_at`.
    pub fn timings_until(&self, completed_at: Option<DateTime<Utc>>) -> Timings {
        let millis = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_milliseconds().max(0);
        Timings {
            queued_ms: self.started_at.map(|s| millis(self.created_at, s)),
            generation_ms: self.started_at.zip(completed_at).map(|(s, c)| millis(s, c)),
        }
    }

    /// Every key an attempt of this job may have stored an image under: the format is the one
    /// the model answered, which need not be the one asked for.
    pub fn possible_media_keys(&self) -> Vec<String> {
        (0..self.request.num_outputs)
            .flat_map(|index| OutputFormat::ALL.map(|format| self.media_key(index, format)))
            .collect()
    }

    /// The object key of the `index`th image of this job.
    pub fn media_key(&self, index: u32, format: OutputFormat) -> String {
        format!("media/{}/{}.{}", self.id, index, format.extension())
    }
}

pub fn expiry(now: DateTime<Utc>, retention: std::time::Duration) -> i64 {
    now.timestamp() + retention.as_secs() as i64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub queued_ms: Option<i64>,
    pub generation_ms: Option<i64>,
}

/// One stored image of a finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    pub id: MediaId,
    pub job_id: JobId,
    /// The job's owner, so that a media read is scoped without reading the job.
    pub owner: Owner,
    pub index: u32,
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub ttl: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::format::OutputFormat;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::keys::tests::sample_owner;
    use std::time::Duration;

    #[test]
    fn status_names_round_trip() {
        for status in [
            JobStatus::Queued,
            JobStatus::Processing,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Canceled,
        ] {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn only_succeeded_failed_and_canceled_are_final() {
        assert!(!JobStatus::Queued.is_final());
        assert!(!JobStatus::Processing.is_final());
        assert!(JobStatus::Succeeded.is_final());
        assert!(JobStatus::Failed.is_final());
        assert!(JobStatus::Canceled.is_final());
    }

    #[test]
    fn timings_come_from_the_timestamps() {
        let now = Utc::now();
        let mut job = Job::new(sample_owner(), sample_request(), now, Duration::from_secs(86_400));
        assert_eq!(
            job.timings(),
            Timings {
                queued_ms: None,
                generation_ms: None
            }
        );
        job.started_at = Some(now + chrono::Duration::milliseconds(250));
        job.completed_at = Some(now + chrono::Duration::milliseconds(1250));
        assert_eq!(
            job.timings(),
            Timings {
                queued_ms: Some(250),
                generation_ms: Some(1000)
            }
        );
        assert_eq!(job.ttl, now.timestamp() + 86_400);
    }

    #[test]
    fn media_keys_follow_the_stored_layout() {
        let job = Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(1));
        assert_eq!(job.media_key(2, OutputFormat::Png), format!("media/{}/2.png", job.id));
    }

    #[test]
    fn every_possible_key_of_a_job_is_listed() {
        let mut job = Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(1));
        job.request.num_outputs = 2;
        let keys = job.possible_media_keys();
        assert_eq!(keys.len(), 6);
        assert!(keys.contains(&format!("media/{}/1.webp", job.id)), "{keys:?}");
    }
}
