//! The JSON shapes of a job (docs/design.md, "HTTP contract", "Webhooks"), made in one place for
//! the HTTP answers and the webhooks that carry the same job: as `/media/…` shows it, and as a
//! Replicate prediction. Each is a type, so the OpenAPI description (`http/openapi.rs`) is
//! derived from what is sent.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::catalogue::Catalogue;
use crate::domain::catalogue::public_name;
use crate::domain::file_urls::FileLinkSigner;
use crate::domain::format::OutputFormat;
use crate::domain::ids::MediaId;
use crate::domain::job::{Job, JobStatus, MediaItem, ModelAttempt};
use crate::domain::listing::Cursor;
use crate::domain::prediction::PredictionStatus;
use crate::domain::timestamp::render as timestamp;
use crate::ports::JobPage;

/// Why a job failed, or why its last attempt did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}

/// The light view of a job, for polling: `GET /media/status/{job_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobStatusView {
    #[schema(format = "uuid")]
    pub job_id: String,
    pub status: JobStatus,
    pub attempts: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
}

/// A job with what was asked of it: a listing's entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobSummaryView {
    #[serde(flatten)]
    pub status: JobStatusView,
    pub prompt: String,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub num_outputs: u32,
    pub output_format: String,
}

/// One stored image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaView {
    #[schema(format = "uuid")]
    pub media_id: String,
    pub index: u32,
    pub content_type: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Where the image is served: a redirect to a short-lived link.
    pub content_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimingsView {
    /// From submission to the first claim.
    pub queued_ms: Option<i64>,
    /// From the first claim to completion.
    pub generation_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobMetricsView {
    /// The model's price for the images plus the AWS share, in dollars (docs/cost.md).
    pub cost_usd: Option<f64>,
}

/// Where a job can be followed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinksView {
    pub status: String,
    pub job: String,
    /// The job's progress as Server-Sent Events, signed when the deployment signs links, so that
    /// a browser's `EventSource` (which sends no key) can follow it (docs/design.md, "Progress
    /// stream").
    pub stream: String,
}

/// The whole job: `GET /media/jobs/{job_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub summary: JobSummaryView,
    pub negative_prompt: Option<String>,
    pub seed: u32,
    pub webhook_url: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// A cancel was asked while the job ran: its attempt ends it `canceled`.
    pub cancel_requested: bool,
    pub timings: TimingsView,
    /// When its model's provider has room for it, if the provider is limited and the job waits
    /// for its turn (docs/design.md, "Provider limits").
    #[schema(format = DateTime)]
    pub estimated_start: Option<String>,
    /// What the job cost, once it succeeded.
    pub metrics: JobMetricsView,
    /// Each model tried, in order, once the job succeeded: the last one made its images.
    pub model_attempts: Vec<ModelAttempt>,
    pub media: Vec<MediaView>,
    /// Where the job can be followed; given with the answers of a submit and a job's read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<LinksView>,
}

/// The answer to a submit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcceptedView {
    #[schema(format = "uuid")]
    pub job_id: String,
    pub status: JobStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub links: LinksView,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PageLinksView {
    /// The next page, if there may be one.
    pub next: Option<String>,
}

/// A page of the caller's jobs, newest first: `GET /media/jobs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobPageView {
    pub jobs: Vec<JobSummaryView>,
    /// Give it as `cursor` for the next page; absent only on the last. A page can hold fewer
    /// jobs than `limit`, even none, and still have one.
    pub next_cursor: Option<String>,
    pub links: PageLinksView,
}

/// A short-lived link to an image: `GET /media/content/{media_id}` with
/// `Accept: application/json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContentLinkView {
    pub url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub content_type: String,
}

pub(crate) fn status_body(job: &Job) -> JobStatusView {
    JobStatusView {
        job_id: job.id.to_string(),
        status: job.status,
        attempts: job.attempts,
        created_at: timestamp(job.created_at),
        updated_at: timestamp(job.updated_at),
        error: job.error.as_ref().map(|error| ErrorView {
            code: error.code.clone(),
            message: error.message.clone(),
        }),
    }
}

pub(crate) fn summary_body(job: &Job) -> JobSummaryView {
    let request = &job.request;
    JobSummaryView {
        status: status_body(job),
        prompt: request.prompt.clone(),
        model: request.model.clone(),
        width: request.width,
        height: request.height,
        num_outputs: request.num_outputs,
        output_format: request.output_format.extension().to_owned(),
    }
}

/// The whole job, with its media; `base` is what the client's path has before our routes.
pub(crate) fn job_body(job: &Job, media: &[MediaItem], base: &str) -> JobView {
    let request = &job.request;
    let timings = job.timings();
    JobView {
        summary: summary_body(job),
        negative_prompt: request.negative_prompt.clone(),
        seed: request.seed,
        webhook_url: request.webhook_url.as_ref().map(|u| u.as_str().to_owned()),
        started_at: job.started_at.map(timestamp),
        completed_at: job.completed_at.map(timestamp),
        cancel_requested: job.cancel_requested,
        timings: TimingsView {
            queued_ms: timings.queued_ms,
            generation_ms: timings.generation_ms,
        },
        estimated_start: job
            .provider_slot
            .as_ref()
            .filter(|_| !job.status.is_final())
            .map(|slot| timestamp(slot.at)),
        metrics: JobMetricsView {
            cost_usd: cost_usd(job),
        },
        model_attempts: job.model_attempts.clone(),
        media: media
            .iter()
            .map(|m| MediaView {
                media_id: m.id.to_string(),
                index: m.index,
                content_type: m.content_type.clone(),
                bytes: m.bytes,
                width: m.width,
                height: m.height,
                content_url: format!("{base}/media/content/{}", m.id),
            })
            .collect(),
        links: None,
    }
}

/// Where a job can be followed.
pub(crate) fn links(job: &Job, base: &str, file_links: &FileLinks) -> LinksView {
    let expires = Utc::now().timestamp() + file_links.ttl.as_secs() as i64;
    LinksView {
        status: status_url(job, base),
        job: format!("{base}/media/jobs/{}", job.id),
        stream: stream_url(job, base, file_links, expires),
    }
}

pub(crate) fn status_url(job: &Job, base: &str) -> String {
    format!("{base}/media/status/{}", job.id)
}

/// The answer to a submit: where to follow the job.
pub(crate) fn accepted_body(job: &Job, base: &str, file_links: &FileLinks) -> AcceptedView {
    AcceptedView {
        job_id: job.id.to_string(),
        status: job.status,
        created_at: timestamp(job.created_at),
        links: links(job, base, file_links),
    }
}

/// A page of a listing, with the cursor of the next one and the query string of its link.
pub(crate) fn page_body(page: &JobPage, base: &str, next_query: impl Fn(Cursor) -> String) -> JobPageView {
    JobPageView {
        jobs: page.jobs.iter().map(summary_body).collect(),
        links: PageLinksView {
            next: page
                .next
                .map(|cursor| format!("{base}/media/jobs?{}", next_query(cursor))),
        },
        next_cursor: page.next.map(|cursor| cursor.encode()),
    }
}

/// How the file links in predictions are made.
#[derive(Debug, Clone)]
pub struct FileLinks {
    /// Signs links so that any HTTP client may fetch them; without it they need the API key.
    pub signer: Option<FileLinkSigner>,
    /// How long a signed link holds.
    pub ttl: Duration,
}

/// What a prediction was asked, in our terms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionInput {
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub width: u32,
    pub height: u32,
    pub num_outputs: u32,
    pub seed: u32,
    pub output_format: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionUrls {
    pub get: String,
    pub cancel: String,
    /// The job's progress as Server-Sent Events, signed when the deployment signs links, for
    /// Replicate's clients send no key to it (docs/design.md, "Progress stream").
    pub stream: String,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PredictionMetrics {
    /// Seconds from the first claim to completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_time: Option<f64>,
    /// What the prediction cost, model and AWS, in dollars, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A job's cost in dollars, from its micro-dollars.
fn cost_usd(job: &Job) -> Option<f64> {
    job.cost_microdollars.map(|micro| micro as f64 / 1e6)
}

/// A job as a Replicate prediction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionView {
    #[schema(format = "uuid")]
    pub id: String,
    /// `owner/name`.
    pub model: String,
    pub version: String,
    pub status: PredictionStatus,
    pub input: PredictionInput,
    /// Links to the images, once the prediction succeeded.
    pub output: Option<Vec<String>>,
    pub error: Option<String>,
    pub logs: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    pub source: String,
    pub data_removed: bool,
    pub urls: PredictionUrls,
    pub metrics: PredictionMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A job as a Replicate prediction.
pub(crate) fn prediction_body(job: &Job, root: &str, links: &FileLinks) -> PredictionView {
    let request = &job.request;
    let get = format!("{root}/v1/predictions/{}", job.id);
    let expires = Utc::now().timestamp() + links.ttl.as_secs() as i64;
    PredictionView {
        id: job.id.to_string(),
        model: public_name(&request.model),
        version: "mediagen".to_owned(),
        status: job.status.into(),
        input: PredictionInput {
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            width: request.width,
            height: request.height,
            num_outputs: request.num_outputs,
            seed: request.seed,
            output_format: request.output_format.extension().to_owned(),
        },
        output: (!job.media_ids.is_empty()).then(|| {
            job.media_ids
                .iter()
                .map(|id| file_url(root, *id, links, expires))
                .collect()
        }),
        error: job
            .error
            .as_ref()
            .filter(|_| job.status.is_final())
            .map(|e| e.message.clone()),
        logs: String::new(),
        created_at: timestamp(job.created_at),
        started_at: job.started_at.map(timestamp),
        completed_at: job.completed_at.map(timestamp),
        source: "api".to_owned(),
        data_removed: false,
        urls: PredictionUrls {
            cancel: format!("{get}/cancel"),
            stream: stream_url(job, root, links, expires),
            get,
        },
        metrics: PredictionMetrics {
            predict_time: job.timings().generation_ms.map(|ms| ms as f64 / 1000.0),
            cost_usd: cost_usd(job),
        },
        webhook: request.webhook_url.as_ref().map(|url| url.as_str().to_owned()),
    }
}

/// One image of an answer of the OpenAI-compatible images API: its link or its bytes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageDataView {
    /// Our file link (`GET /v1/files/{media_id}`), as the Replicate-compatible API's outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The image's bytes, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
}

/// The answer of `POST /v1/images/generations`, in OpenAI's shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImagesView {
    /// When the job was created, epoch seconds.
    pub created: i64,
    pub data: Vec<ImageDataView>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: String,
    /// The size the job asked for, `WIDTHxHEIGHT`.
    pub size: String,
}

/// The answer for a succeeded job, each image as `data` gives it.
pub(crate) fn images_body(job: &Job, data: Vec<ImageDataView>) -> ImagesView {
    let request = &job.request;
    ImagesView {
        created: job.created_at.timestamp(),
        data,
        output_format: openai_format(request.output_format).to_owned(),
        size: format!("{}x{}", request.width, request.height),
    }
}

/// OpenAI's name of a format: ours but `jpeg` for `jpg`.
fn openai_format(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Jpg => "jpeg",
        other => other.extension(),
    }
}

/// The one event of a stream of `POST /v1/images/generations` per image: OpenAI's
/// `image_generation.completed`, with every field the `openai` SDK's `ImageGenCompletedEvent`
/// requires. No `image_generation.partial_image` is ever sent: no model of ours makes one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageGenCompletedEvent {
    /// `image_generation.completed`: the SDKs tell the events apart by it.
    #[serde(rename = "type")]
    pub kind: String,
    /// The image's bytes, base64: a stream never answers links, as OpenAI's does not.
    pub b64_json: String,
    /// When the job completed, epoch seconds: the image was final then.
    pub created_at: i64,
    /// The size the job asked for, `WIDTHxHEIGHT`, as `size` of the JSON answer.
    pub size: String,
    /// Always `auto`: the quality asked for changes nothing here.
    pub quality: String,
    /// Always `opaque`: no model of ours makes a transparent background.
    pub background: String,
    /// `png`, `jpeg` or `webp`.
    pub output_format: String,
    /// Always zeros: no tokens are counted here, but the SDK's type requires the object.
    pub usage: ImageGenUsage,
}

/// OpenAI's token counts of an image, here all 0.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ImageGenUsage {
    pub input_tokens: u64,
    pub input_tokens_details: ImageGenInputTokens,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// OpenAI's input tokens by kind, here all 0.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ImageGenInputTokens {
    pub image_tokens: u64,
    pub text_tokens: u64,
}

/// The event's name and its `type`.
const IMAGE_COMPLETED: &str = "image_generation.completed";

/// The body of a stream's answer for a succeeded job, its images base64 in order: one
/// `event:`/`data:` pair per image, as OpenAI's API sends them. The body is written whole once
/// the job is final (the route runs in a buffered Lambda function), and ends with no `[DONE]`:
/// OpenAI documents none for image streams, and a client that reads every `data:` as an event
/// would fail on it (the Python SDK would only stop there).
pub(crate) fn image_stream(job: &Job, images: Vec<String>) -> String {
    let request = &job.request;
    let completed = job.completed_at.unwrap_or(job.updated_at).timestamp();
    let mut body = String::new();
    for b64_json in images {
        let event = ImageGenCompletedEvent {
            kind: IMAGE_COMPLETED.to_owned(),
            b64_json,
            created_at: completed,
            size: format!("{}x{}", request.width, request.height),
            quality: "auto".to_owned(),
            background: "opaque".to_owned(),
            output_format: openai_format(request.output_format).to_owned(),
            usage: ImageGenUsage::default(),
        };
        // serde_json writes no line break in compact form, so the JSON is one `data:` line.
        let data = serde_json::to_string(&event).unwrap_or_default();
        body.push_str(&format!("event: {IMAGE_COMPLETED}\ndata: {data}\n\n"));
    }
    body
}

/// The links to a job's images, as `data` of an images answer.
pub(crate) fn image_links(job: &Job, root: &str, links: &FileLinks) -> Vec<ImageDataView> {
    let expires = Utc::now().timestamp() + links.ttl.as_secs() as i64;
    job.media_ids
        .iter()
        .map(|id| ImageDataView {
            url: Some(file_url(root, *id, links, expires)),
            b64_json: None,
        })
        .collect()
}

/// The link to a job's progress stream.
pub(crate) fn stream_url(job: &Job, root: &str, links: &FileLinks, expires: i64) -> String {
    let url = format!("{root}/v1/predictions/{}/stream", job.id);
    signed(url, links, expires, |signer| signer.sign_stream(job.id, expires))
}

pub(crate) fn file_url(root: &str, id: MediaId, links: &FileLinks, expires: i64) -> String {
    signed(format!("{root}/v1/files/{id}"), links, expires, |signer| {
        signer.sign(id, expires)
    })
}

/// `url` with its expiry and `sign`'s signature, when the deployment signs links.
fn signed(url: String, links: &FileLinks, expires: i64, sign: impl FnOnce(&FileLinkSigner) -> String) -> String {
    match &links.signer {
        Some(signer) => format!("{url}?expires={expires}&signature={}", sign(signer)),
        None => url,
    }
}

/// `GET /v1/models`: the catalogue, in the list shape of OpenAI's `GET /v1/models`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelListView {
    /// `list`.
    pub object: String,
    pub data: Vec<ModelView>,
}

/// One model of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelView {
    /// The name a request gives as `model`.
    pub id: String,
    /// `model`.
    pub object: String,
    /// OpenAI's field, here always 0: the catalogue has no dates.
    pub created: i64,
    /// The provider that runs it: `local`, `replicate`, `openai`, `bedrock`.
    pub owned_by: String,
    /// The model's id at its provider.
    pub provider_model: String,
    /// Whether a request that names no model gets this one.
    pub default: bool,
    /// The sizes it makes, `WIDTHxHEIGHT`; empty for any size within the API's rules.
    pub sizes: Vec<String>,
    pub formats: Vec<String>,
    pub price_per_image_usd: f64,
    pub price_source: String,
    /// The models tried in turn when its provider is unavailable.
    pub fallback: Vec<String>,
}

pub fn model_list(catalogue: &Catalogue) -> ModelListView {
    ModelListView {
        object: "list".to_owned(),
        data: catalogue
            .entries()
            .iter()
            .map(|entry| ModelView {
                id: entry.name.clone(),
                object: "model".to_owned(),
                created: 0,
                owned_by: entry.provider.name().to_owned(),
                provider_model: entry.provider_model.clone(),
                default: entry.name == catalogue.default_model(),
                sizes: entry.sizes.iter().map(ToString::to_string).collect(),
                formats: entry.formats.iter().map(|f| f.extension().to_owned()).collect(),
                price_per_image_usd: entry.price_per_image as f64 / 1e6,
                price_source: entry.price_source.clone(),
                fallback: entry.fallback.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::keys::Owner;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    #[test]
    fn a_stream_is_one_completed_event_per_image_as_the_sdk_reads_it() {
        let created = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
        let mut job = Job::new(
            Owner::parse("tester").unwrap(),
            sample_request(),
            created,
            Duration::from_secs(60),
        );
        job.request.width = 512;
        job.request.height = 768;
        job.request.output_format = OutputFormat::Jpg;
        job.status = JobStatus::Succeeded;
        job.completed_at = Some(created + chrono::Duration::seconds(3));
        let body = image_stream(&job, vec!["AAAA".into(), "BBBB".into()]);
        // Events are separated by a blank line; each is its name, then its data on one line.
        let events: Vec<&str> = body.split_terminator("\n\n").collect();
        assert!(body.ends_with("\n\n") && !body.contains("[DONE]"));
        assert_eq!(events.len(), 2);
        for (event, b64) in events.iter().zip(["AAAA", "BBBB"]) {
            let lines: Vec<&str> = event.lines().collect();
            assert_eq!(lines[0], "event: image_generation.completed");
            assert_eq!(lines.len(), 2);
            let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(
                data,
                json!({
                    "type": "image_generation.completed", "b64_json": b64, "created_at": 1_700_000_003,
                    "size": "512x768", "quality": "auto", "background": "opaque", "output_format": "jpeg",
                    "usage": {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                              "output_tokens": 0, "total_tokens": 0},
                })
            );
        }
        assert_eq!(image_stream(&job, Vec::new()), "");
    }
}
