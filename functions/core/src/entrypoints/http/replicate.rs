//! The Replicate-compatible API (docs/design.md, "Replicate-compatible API"): the routes the
//! official `replicate` clients call, answered from the same services as `/media/…`. Each
//! function serves its share: `submit` creates and cancels, `status` reads and lists,
//! `content` serves the files.

use chrono::Utc;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::problem::Problem;
use super::requests::PredictionRequest;
use super::{ApiError, api_root, idempotency_key, json_body, json_response, link_signature, preferred_wait};
use crate::domain::generation::FieldError;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::Interface;
use crate::domain::listing::ListQuery;
use crate::domain::prediction::{PredictionStatus, generate_body, input_field};
use crate::entrypoints::views::{FileLinks, PredictionView, prediction_body};
use crate::ports::{JobPage, JobQueue, JobStore, KeyStore, MediaReader, ProviderGate, QuotaStore};
use crate::services::auth::Caller;
use crate::services::cancel::{CancelError, CancelService, Canceled};
use crate::services::content::ContentService;
use crate::services::read::{ReadService, Waited};
use crate::services::submit::{SubmitError, SubmitService};

/// A page of the caller's predictions, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionPageView {
    pub results: Vec<PredictionView>,
    /// The next page's whole URL, if there may be one; `null` only on the last. A page can hold
    /// fewer results than `limit`, even none, and still have one.
    pub next: Option<String>,
    pub previous: Option<String>,
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
        (status = 402, description = "The owner's monthly budget of images or dollars is used up (GET /media/usage)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field breaks a rule, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"), (status = 503, description = "A backend did not answer; try again after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn create<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue>(
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
        .submit(
            caller,
            &body,
            idempotency_key.as_ref(),
            Interface::Replicate,
            api_root(request),
        )
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
    let mut waited = false;
    if let Some(wait) = preferred_wait(request) {
        match reads.wait_until_final(caller, job.id, wait).await? {
            Waited::Held(Some(now)) => (job, waited) = (*now, true),
            Waited::Held(None) => return Err(ApiError::NotFound { what: "prediction" }),
            Waited::NotHeld => {}
        }
    }
    let root = api_root(request);
    let mut body = prediction_body(&job, &root, links);
    // Replicate's clients take any answer but `starting` to a waiting create as final.
    if waited && !job.status.is_final() {
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
    if waited {
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
pub(super) async fn cancel<S: JobStore, Q: JobQueue>(
    service: &CancelService<S, Q>,
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
        .map(|cursor| format!("{root}/v1/predictions?{}", query.next_page(cursor)));
    Ok(json_response(
        StatusCode::OK,
        &PredictionPageView {
            results: page.jobs.iter().map(|job| prediction_body(job, &root, links)).collect(),
            next,
            previous: None,
        },
    ))
}

/// Whether the request carries a signed link's valid signature for the image: then no key is
/// needed.
pub(super) fn signed(links: &FileLinks, id: MediaId, request: &Request) -> bool {
    match (&links.signer, link_signature(request)) {
        (Some(signer), Some((expires, signature))) => signer.verify(id, expires, &signature, Utc::now().timestamp()),
        _ => false,
    }
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
pub(super) async fn file<S: JobStore + KeyStore, M: MediaReader>(
    content: &ContentService<S, M>,
    caller: Option<&Caller>,
    id: MediaId,
) -> Result<Response<Body>, ApiError> {
    let (item, bytes) = content
        .file(caller, caller.is_none(), id)
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
