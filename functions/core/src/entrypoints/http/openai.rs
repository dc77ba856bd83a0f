//! The OpenAI-compatible images API (docs/design.md, "OpenAI-compatible API"):
//! `POST /v1/images/generations` makes an ordinary job of the caller's and, as OpenAI's API
//! does, answers once it is final, from the same services as `/media/…`: one JSON body, or
//! with `stream: true` OpenAI's stream events, written whole then. Its errors are OpenAI's shape,
//! rendered in `problem.rs`, stream or not.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tokio::time::Instant;

use super::problem::{JOB_ID_HEADER, OpenAiError};
use super::requests::ImagesBody;
use super::{ApiError, MAX_WAIT, api_root, idempotency_key, json_body, json_response};
use crate::domain::images::{ResponseFormat, images_request};
use crate::domain::job::{Interface, Job, JobStatus};
use crate::entrypoints::views::{
    FileLinks, ImageDataView, ImageGenCompletedEvent, ImagesView, image_links, image_stream, images_body,
};
use crate::ports::{JobQueue, JobStore, KeyStore, MediaReader, ProviderGate, QuotaStore};
use crate::services::auth::Caller;
use crate::services::content::ContentService;
use crate::services::read::{ReadService, Waited};
use crate::services::submit::{SubmitError, SubmitService};

/// The most image bytes answered as base64 at once: 5.3 MiB of base64, inside the 6 MB a
/// Lambda function's answer may hold.
const MAX_B64_BYTES: u64 = 4 * 1024 * 1024;

/// Creates the images and answers them once the job is final. A stream's events come then too,
/// all at once: the function's answer is buffered, and no model of ours makes partial images.
#[utoipa::path(post, path = "/v1/images/generations", operation_id = "create_image", tag = "openai",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters: the same key and body within 24 h answer the first job")),
    request_body(content = ImagesBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The images: links or base64; with `stream: true`, one `image_generation.completed` event per image, each `event:` and `data:` (base64), sent once the job is final", content(
            (ImagesView = "application/json"),
            (ImageGenCompletedEvent = "text/event-stream"),
        ), headers(("x-mediagen-job-id" = String, description = "The job that made them"))),
        (status = 400, description = "A field breaks a rule, the body is not JSON, a malformed or reused Idempotency-Key, the prompt was refused (content_policy_violation), the job was canceled, or the images are too large for base64", body = OpenAiError),
        (status = 401, description = "No key, or not a key of ours", body = OpenAiError),
        (status = 404, description = "No such model here (model_not_found)", body = OpenAiError),
        (status = 502, description = "The job failed; x-mediagen-job-id names it", body = OpenAiError),
        (status = 503, description = "A backend did not answer; try again after Retry-After", body = OpenAiError),
        (status = 504, description = "The job is not final in time; it goes on, x-mediagen-job-id names it", body = OpenAiError, headers(("x-mediagen-job-id" = String, description = "The job, to fetch later"))),
    ))]
pub(super) async fn generate<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue, M: MediaReader>(
    submit: &SubmitService<S, Q>,
    reads: &ReadService<S>,
    content: &ContentService<S, M>,
    caller: &Caller,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let idempotency_key = idempotency_key(request)?;
    let raw = json_body(request)?;
    if let Some(model) = raw.get("model").and_then(Value::as_str)
        && !submit.offers(model)
    {
        return Err(ApiError::UnknownModel(model.to_owned()));
    }
    let images = images_request(&raw).map_err(SubmitError::Invalid)?;
    let root = api_root(request);
    let submitted = submit
        .submit(
            caller,
            &images.body,
            idempotency_key.as_ref(),
            Interface::OpenAi,
            root.clone(),
        )
        .await?;
    let id = submitted.job.id;
    let unfinished = ApiError::Unfinished {
        job: id,
        keyed: idempotency_key.is_some(),
    };
    // The whole answer keeps within the wait a `Prefer: wait` has, so inside the function's timeout.
    let wait = MAX_WAIT.saturating_sub(started.elapsed());
    let job = match reads.wait_until_final(caller, id, wait).await? {
        Waited::Held(Some(job)) => *job,
        Waited::Held(None) => return Err(ApiError::NotFound { what: "job" }),
        Waited::NotHeld => return Err(unfinished),
    };
    match job.status {
        JobStatus::Succeeded => {}
        status if status.is_final() => return Err(ApiError::JobUnsucceeded(Box::new(job))),
        _ => return Err(unfinished),
    }
    let mut response = match (images.stream, images.response_format) {
        (true, _) => event_stream(image_stream(&job, encoded(reads, content, caller, &job).await?)),
        (false, ResponseFormat::Url) => {
            json_response(StatusCode::OK, &images_body(&job, image_links(&job, &root, links)))
        }
        (false, ResponseFormat::B64Json) => {
            let data = encoded(reads, content, caller, &job).await?.into_iter();
            let data = data.map(|b64_json| ImageDataView {
                url: None,
                b64_json: Some(b64_json),
            });
            json_response(StatusCode::OK, &images_body(&job, data.collect()))
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(JOB_ID_HEADER, value);
    }
    if submitted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A stream's answer: its events, whole.
fn event_stream(body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The job's images as base64, in order, if they fit one answer.
async fn encoded<S: JobStore, M: MediaReader>(
    reads: &ReadService<S>,
    content: &ContentService<S, M>,
    caller: &Caller,
    job: &Job,
) -> Result<Vec<String>, ApiError> {
    let (_, media) = reads
        .job_with_media(caller, job.id)
        .await?
        .ok_or(ApiError::NotFound { what: "job" })?;
    let bytes: u64 = media.iter().map(|item| item.bytes).sum();
    if bytes > MAX_B64_BYTES {
        return Err(ApiError::ImagesTooLarge { job: job.id, bytes });
    }
    let mut data = Vec::with_capacity(media.len());
    for item in &media {
        let (_, bytes) = content
            .file(Some(caller), false, item.id)
            .await?
            .ok_or(ApiError::NotFound { what: "image" })?;
        data.push(STANDARD.encode(&bytes));
    }
    Ok(data)
}
