//! The Replicate-compatible API (docs/design.md, "Replicate-compatible API"): the routes the
//! official `replicate` clients call, answered from the same services as `/media/…`. Each
//! function serves its share: `submit` creates and cancels, `status` reads and lists,
//! `content` serves the files.

use std::time::Duration;

use chrono::Utc;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::problem::Problem;
use super::requests::PredictionRequest;
use super::{ApiError, base_path, idempotency_key, json_body, json_response, preferred_wait};
use crate::domain::catalogue::public_name;
use crate::domain::file_urls::FileLinkSigner;
use crate::domain::generation::FieldError;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Interface, Job, JobStatus};
use crate::domain::listing::ListQuery;
use crate::domain::prediction::{generate_body, input_field, status_name};
use crate::domain::timestamp::render as timestamp;
use crate::ports::{JobPage, JobQueue, JobStore, KeyStore, MediaStore};
use crate::services::auth::{Authenticator, Caller};
use crate::services::cancel::{CancelError, CancelService, Canceled};
use crate::services::content::ContentService;
use crate::services::read::ReadService;
use crate::services::submit::{SubmitError, SubmitService};

/// How the file links in predictions are made.
#[derive(Debug, Clone)]
pub struct FileLinks {
    /// Signs links so that any HTTP client may fetch them; without it they need the API key.
    pub signer: Option<FileLinkSigner>,
    /// How long a signed link holds.
    pub ttl: Duration,
}

/// Where the client reached us: scheme and host (as API Gateway forwards them) and the stage,
/// so that absolute links resolve where the client called.
pub(super) fn api_root(request: &Request) -> String {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}", base_path(request))
}

/// A prediction's status, in Replicate's words.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl From<JobStatus> for PredictionStatus {
    fn from(status: JobStatus) -> Self {
        match status_name(status) {
            "processing" => PredictionStatus::Processing,
            "succeeded" => PredictionStatus::Succeeded,
            "failed" => PredictionStatus::Failed,
            "canceled" => PredictionStatus::Canceled,
            _ => PredictionStatus::Starting,
        }
    }
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
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PredictionMetrics {
    /// Seconds from the first claim to completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_time: Option<f64>,
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

/// A page of the caller's predictions, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionPageView {
    pub results: Vec<PredictionView>,
    /// The next page's whole URL, if there may be one.
    pub next: Option<String>,
    pub previous: Option<String>,
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
            get,
        },
        metrics: PredictionMetrics {
            predict_time: job.timings().generation_ms.map(|ms| ms as f64 / 1000.0),
        },
        webhook: request.webhook_url.as_ref().map(|url| url.as_str().to_owned()),
    }
}

fn file_url(root: &str, id: MediaId, links: &FileLinks, expires: i64) -> String {
    match &links.signer {
        Some(signer) => format!(
            "{root}/v1/files/{id}?expires={expires}&signature={}",
            signer.sign(id, expires)
        ),
        None => format!("{root}/v1/files/{id}"),
    }
}

fn prediction_id(raw: &str) -> Result<JobId, ApiError> {
    let id = JobId::parse(raw).map_err(|_| ApiError::MalformedId { param: "prediction_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    Ok(id)
}

/// `POST /v1/models/{owner}/{name}/predictions` (with `model`) and `POST /v1/predictions`
/// (with the model in `version`).
#[utoipa::path(post, path = "/v1/models/{owner}/{name}/predictions", operation_id = "create_prediction", tag = "replicate",
    params(
        ("owner" = String, Path, description = "The model's owner, e.g. `mediagen`"),
        ("name" = String, Path, description = "The model's name, e.g. `local`"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters: the same key and body within 24 h answer the first job"), ("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` (N ≤ 20): answer when the job is final or N seconds have passed"),
    ),
    request_body(content = PredictionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; with Prefer: wait, `starting` if not final when the wait ran out", body = PredictionView),
        (status = 200, description = "An idempotent replay", body = PredictionView),
        (status = 400, description = "The body is not JSON, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 413, description = "The body is over 64 KiB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such model here", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"), (status = 503, description = "A backend did not answer; try again after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn create<S: JobStore, Q: JobQueue>(
    submit: &SubmitService<S, Q>,
    reads: &ReadService<S>,
    caller: &Caller,
    model: Option<String>,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let idempotency_key = idempotency_key(request)?;
    let create = json_body(request)?;
    let model = match model {
        Some(model) => model,
        // A version names its model here: `owner/name`, optionally `:version`.
        None => match create.get("version").and_then(Value::as_str) {
            Some(version) => version.split(':').next().unwrap_or(version).to_owned(),
            None => {
                return Err(SubmitError::Invalid(vec![FieldError::new(
                    "version",
                    "is required: the model as owner/name",
                )])
                .into());
            }
        },
    };
    let body = generate_body(&model, &create).map_err(SubmitError::Invalid)?;
    if let Some(name) = body.get("model").and_then(Value::as_str)
        && !submit.offers(name)
    {
        return Err(ApiError::UnknownModel(model));
    }
    let submitted = submit
        .submit(caller, &body, idempotency_key.as_ref(), Interface::Replicate)
        .await
        .map_err(|err| match err {
            SubmitError::Invalid(errors) => SubmitError::Invalid(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(input_field(&e.field), e.message))
                    .collect(),
            ),
            other => other,
        })?;
    let mut job = submitted.job;
    let wait = preferred_wait(request);
    if let Some(wait) = wait {
        job = reads
            .wait_until_final(caller, job.id, wait)
            .await?
            .ok_or(ApiError::NotFound { what: "prediction" })?;
    }
    let root = api_root(request);
    let mut body = prediction_body(&job, &root, links);
    // Replicate's clients take any answer but `starting` to a waiting create as final.
    if wait.is_some() && !job.status.is_final() {
        body.status = PredictionStatus::Starting;
    }
    let status = if submitted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = json_response(status, &body);
    if let Ok(location) = HeaderValue::from_str(&format!("{root}/v1/predictions/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if wait.is_some() {
        super::applied_wait(&mut response);
    }
    if submitted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `POST /v1/predictions/{id}/cancel`: the prediction as it is after the cancel; a final one
/// is answered as it is, as Replicate does.
#[utoipa::path(post, path = "/v1/predictions/{prediction_id}/cancel", operation_id = "cancel_prediction", tag = "replicate",
    params(("prediction_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The prediction's id")),
    responses((status = 200, description = "The prediction after the cancel", body = PredictionView), (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn cancel<S: JobStore>(
    service: &CancelService<S>,
    caller: &Caller,
    raw_id: &str,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let id = prediction_id(raw_id)?;
    let job = match service.cancel(caller, id).await {
        Ok(Some(Canceled::Now(job) | Canceled::Pending(job))) => job,
        Ok(None) => return Err(ApiError::NotFound { what: "prediction" }),
        Err(CancelError::AlreadyFinal(job)) => *job,
        Err(err) => return Err(err.into()),
    };
    Ok(json_response(
        StatusCode::OK,
        &prediction_body(&job, &api_root(request), links),
    ))
}

/// `GET /v1/predictions/{id}`.
#[utoipa::path(get, path = "/v1/predictions/{prediction_id}", operation_id = "get_prediction", tag = "replicate",
    params(("prediction_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The prediction's id")),
    responses((status = 200, description = "The prediction", body = PredictionView), (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get<S: JobStore>(
    reads: &ReadService<S>,
    caller: &Caller,
    raw_id: &str,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let id = prediction_id(raw_id)?;
    let job = reads
        .job(caller, id)
        .await?
        .ok_or(ApiError::NotFound { what: "prediction" })?;
    Ok(json_response(
        StatusCode::OK,
        &prediction_body(&job, &api_root(request), links),
    ))
}

/// `GET /v1/predictions?cursor=`: `{"results","next","previous"}`, `next` a whole URL the
/// client fetches as it is.
#[utoipa::path(get, path = "/v1/predictions", operation_id = "list_predictions", tag = "replicate",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Predictions in a page (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "From the page before's `next`"),
    ),
    responses((status = 200, description = "A page of predictions", body = PredictionPageView),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list<S: JobStore>(
    reads: &ReadService<S>,
    caller: &Caller,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let params = request.query_string_parameters();
    let query = ListQuery::parse(params.iter()).map_err(ApiError::InvalidQuery)?;
    let page: JobPage = reads.list(caller, &query).await?;
    let root = api_root(request);
    let next = page
        .next
        .map(|cursor| format!("{root}/v1/predictions?limit={}&cursor={}", query.limit, cursor.encode()));
    Ok(json_response(
        StatusCode::OK,
        &PredictionPageView {
            results: page.jobs.iter().map(|job| prediction_body(job, &root, links)).collect(),
            next,
            previous: None,
        },
    ))
}

/// `GET /v1/files/{media_id}`: the image's bytes, for the caller's key or a signed link. The
/// clients' `FileOutput` fetches with the API key and follows no redirect, so a presigned S3
/// URL (which refuses a second credential) or a `302` would not do.
#[utoipa::path(get, path = "/v1/files/{media_id}", operation_id = "get_file", tag = "replicate",
    params(
        ("media_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The image's id"),
        ("expires" = Option<i64>, Query, description = "A signed link's expiry, epoch seconds"),
        ("signature" = Option<String>, Query, description = "A signed link's signature"),
    ),
    responses((status = 200, description = "The image's bytes", content_type = "image/*"), (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn file<S: JobStore + KeyStore, M: MediaStore>(
    auth: &Authenticator<S>,
    content: &ContentService<S, M>,
    raw_id: &str,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let id = MediaId::parse(raw_id).map_err(|_| ApiError::MalformedId { param: "media_id" })?;
    let params = request.query_string_parameters();
    let signed = match (&links.signer, params.first("expires"), params.first("signature")) {
        (Some(signer), Some(expires), Some(signature)) => expires
            .parse::<i64>()
            .is_ok_and(|expires| signer.verify(id, expires, signature, Utc::now().timestamp())),
        _ => false,
    };
    let caller = if signed {
        None
    } else {
        Some(super::caller(auth, request).await?)
    };
    let (item, bytes) = content
        .file(caller.as_ref(), signed, id)
        .await?
        .ok_or(ApiError::NotFound { what: "file" })?;
    let mut response = Response::new(Body::Binary(bytes.to_vec()));
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&item.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    Ok(response)
}
