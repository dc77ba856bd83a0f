//! The writes (the `submit` function): `POST /media/generate` (with `Idempotency-Key` and
//! `Prefer: wait`) and `POST /media/jobs/{job_id}/cancel`, and their Replicate-compatible
//! forms `POST /v1/predictions`, `POST /v1/models/{owner}/{name}/predictions` and
//! `POST /v1/predictions/{id}/cancel`; and `GET /v1/predictions`, a read on the same path as
//! creating in Replicate's API, so served here where every method of that path arrives; and
//! `POST /v1/images/generations`, the OpenAI-compatible API's, which creates a job and answers
//! its images.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use super::problem::Problem;
use super::requests::GenerateBody;
use super::routes::{self, Endpoint, SubmitEndpoint};
use super::{
    ApiError, OnFirstUse, api_root, applied_wait, base_path, idempotency_key, json_body, json_response, preferred_wait,
    respond, with_caller,
};
use super::{openai, replicate};
use crate::domain::ids::JobId;
use crate::domain::job::Interface;
use crate::entrypoints::views::{AcceptedView, FileLinks, JobView, accepted_body, job_body, links, status_url};
use crate::ports::{JobQueue, JobStore, KeyStore, MediaReader, ProviderGate, QuotaStore};
use crate::services::auth::{Authenticator, Caller};
use crate::services::cancel::{CancelService, Canceled};
use crate::services::content::ContentService;
use crate::services::read::{ReadService, Waited};
use crate::services::submit::SubmitService;

/// What the `submit` function serves.
pub struct SubmitApi<S, Q, M> {
    pub auth: Authenticator<S>,
    pub submit: SubmitService<S, Q>,
    pub cancel: CancelService<S, Q>,
    pub reads: ReadService<S>,
    /// The images' bytes, which the OpenAI-compatible API answers as base64.
    pub content: ContentService<S, M>,
    /// Made at the first request that hands out or checks a file link.
    pub links: OnFirstUse<FileLinks>,
}

pub async fn handle<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue, M: MediaReader>(
    api: &SubmitApi<S, Q, M>,
    request: Request,
) -> Response<Body> {
    let span = tracing::info_span!("submit", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async { respond(&request, answer(api, &request).await) }
        .instrument(span)
        .await
}

async fn answer<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue, M: MediaReader>(
    api: &SubmitApi<S, Q, M>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, matched) = routes::endpoint(request)?;
    let Endpoint::Submit(endpoint) = endpoint else {
        return Err(ApiError::NoRoute(routes::request_path(request).to_owned()));
    };
    with_caller(
        &api.auth,
        request,
        Endpoint::Submit(endpoint).class(),
        async |caller| match endpoint {
            SubmitEndpoint::Generate => generate(api, caller, request).await,
            SubmitEndpoint::CancelJob => cancel(api, caller, matched.param("job_id"), request).await,
            SubmitEndpoint::CreatePrediction => {
                replicate::create(&api.submit, &api.reads, caller, None, request, api.links.get().await?).await
            }
            SubmitEndpoint::CreateModelPrediction => {
                let model = format!("{}/{}", matched.param("owner"), matched.param("name"));
                replicate::create(
                    &api.submit,
                    &api.reads,
                    caller,
                    Some(model),
                    request,
                    api.links.get().await?,
                )
                .await
            }
            SubmitEndpoint::ListPredictions => {
                replicate::list(&api.reads, caller, request, api.links.get().await?).await
            }
            SubmitEndpoint::CancelPrediction => {
                replicate::cancel(
                    &api.cancel,
                    caller,
                    matched.param("prediction_id"),
                    request,
                    api.links.get().await?,
                )
                .await
            }
            SubmitEndpoint::CreateImage => {
                openai::generate(
                    &api.submit,
                    &api.reads,
                    &api.content,
                    caller,
                    request,
                    api.links.get().await?,
                )
                .await
            }
        },
    )
    .await
}

/// Submits a job.
#[utoipa::path(post, path = "/media/generate", tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters: the same key and body within 24 h answer the first job"), ("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` (N ≤ 20): answer when the job is final or N seconds have passed")),
    request_body(content = GenerateBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued (or, with Prefer: wait, not final when the wait ran out: then the whole job)", body = AcceptedView),
        (status = 200, description = "An idempotent replay, or with Prefer: wait the job, final", body = AcceptedView),
        (status = 400, description = "The body is not JSON, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 413, description = "The body is over 64 KiB", body = Problem, content_type = "application/problem+json"), (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"), (status = 402, description = "The owner's monthly budget of images or dollars is used up (GET /media/usage)", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field breaks a rule, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"), (status = 503, description = "A backend did not answer; try again after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn generate<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue, M: MediaReader>(
    api: &SubmitApi<S, Q, M>,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let idempotency_key = idempotency_key(request)?;
    let body = json_body(request)?;
    // Before the job is made, as the other creates do: a key that cannot be read then fails the
    // request with nothing made, rather than a made job's answer.
    let file_links = api.links.get().await?;
    let submitted = api
        .submit
        .submit(
            caller,
            &body,
            idempotency_key.as_ref(),
            Interface::Media,
            api_root(request),
        )
        .await?;
    let base = base_path(request);
    let wait = preferred_wait(request);
    let mut response = match wait {
        // The whole job, as it is when it is final or the wait runs out.
        Some(wait) => {
            let id = submitted.job.id;
            let waited = api.reads.wait_until_final(caller, id, wait).await? != Waited::NotHeld;
            let (job, media) = api
                .reads
                .job_with_media(caller, id)
                .await?
                .ok_or(ApiError::NotFound { what: "job" })?;
            let mut body = job_body(&job, &media, &base);
            body.links = Some(links(&job, &base, file_links));
            let status = if job.status.is_final() || submitted.replayed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let mut response = json_response(status, &body);
            if waited {
                applied_wait(&mut response);
            }
            response
        }
        None if submitted.replayed => json_response(StatusCode::OK, &accepted_body(&submitted.job, &base, file_links)),
        None => json_response(StatusCode::ACCEPTED, &accepted_body(&submitted.job, &base, file_links)),
    };
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&status_url(&submitted.job, &base)) {
        headers.insert(header::LOCATION, location);
    }
    if submitted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Cancels a job: a queued one at once, a processing one when its attempt ends.
#[utoipa::path(post, path = "/media/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id")),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        (status = 202, description = "Processing: its attempt will end it canceled", body = JobView),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is already final", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn cancel<S: JobStore + KeyStore + QuotaStore + ProviderGate, Q: JobQueue, M: MediaReader>(
    api: &SubmitApi<S, Q, M>,
    caller: &Caller,
    raw_id: &str,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let id = JobId::parse(raw_id).map_err(|_| ApiError::MalformedId { param: "job_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let canceled = api
        .cancel
        .cancel(caller, id)
        .await?
        .ok_or(ApiError::NotFound { what: "job" })?;
    let (status, job) = match canceled {
        Canceled::Now(job) => (StatusCode::OK, job),
        Canceled::Pending(job) => (StatusCode::ACCEPTED, job),
    };
    Ok(json_response(status, &job_body(&job, &[], &base_path(request))))
}
