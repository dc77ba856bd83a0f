//! The reads (the `status` function): `GET /media/status/{job_id}` (light, for polling),
//! `GET /media/jobs/{job_id}` (whole, with `Prefer: wait`), `GET /media/jobs` (the caller's
//! jobs), and their Replicate-compatible forms `GET /v1/predictions/{id}` and
//! `GET /v1/predictions`; the caller's webhook secret, and its rotation. This function also
//! answers every path no other function serves, with a 404 problem.

use std::sync::LazyLock;
use std::time::Duration;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;
use utoipa::ToSchema;

use super::problem::Problem;
use super::replicate;
use super::routes::{self, Endpoint, PublicEndpoint, StatusEndpoint};
use super::{ApiError, OnFirstUse, applied_wait, base_path, json_response, preferred_wait, respond, with_caller};
use crate::domain::generation::FieldError;
use crate::domain::ids::JobId;
use crate::domain::job::JobStatus;
use crate::domain::listing::ListQuery;
use crate::domain::quota::{QuotaDefaults, Usage, dollars};
use crate::domain::timestamp;
use crate::domain::webhook::{DEFAULT_GRACE, MAX_GRACE};
use crate::entrypoints::views::{
    FileLinks, JobPageView, JobStatusView, JobView, ModelListView, job_body, links, page_body, status_body,
};
use crate::ports::{JobStore, KeyStore, QuotaStore, SigningStore};
use crate::services::auth::{Authenticator, Caller};
use crate::services::read::{ReadService, Waited};
use crate::services::webhooks::WebhookSecrets;

/// What the `status` function serves.
pub struct StatusApi<S> {
    pub auth: Authenticator<S>,
    pub reads: ReadService<S>,
    /// Made at the first request that hands out or checks a file link.
    pub links: OnFirstUse<FileLinks>,
    /// The owners' webhook secrets, when this deployment signs webhooks: made at the first
    /// request for one.
    pub webhook_secrets: OnFirstUse<Option<WebhookSecrets<S>>>,
    /// `GET /openapi.json`, for this deployment's models.
    pub openapi: LazyBody,
    /// `GET /v1/models`: the catalogue.
    pub models: ModelListView,
    /// The quota of owners who have none set.
    pub quota_defaults: QuotaDefaults,
}

/// A body made at the first request for it. `/openapi.json`'s, made at cold start, was most of
/// what `status`'s start added to a bare runtime's (scripts/bench/method.md).
pub type LazyBody = LazyLock<String, Box<dyn FnOnce() -> String + Send>>;

/// The answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub status: String,
}

/// The answer of `GET /v1/webhooks/default/secret`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretView {
    /// `whsec_<base64>`.
    pub key: String,
}

/// Jobs queued or running now, the owner's limit of them, and what remains.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveJobsLine {
    pub used: u32,
    pub limit: u32,
    pub remaining: u32,
}

/// The month's images, the budget (`null`: none), and what remains of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesLine {
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

/// The month's spend in US dollars as decimal strings, the budget (`null`: none), and what
/// remains of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendLine {
    pub used: String,
    pub limit: Option<String>,
    pub remaining: Option<String>,
}

/// The answer of `GET /media/usage`: the caller's owner's quota and their use of it this month.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub owner: String,
    /// The month counted, `YYYY-MM` in UTC.
    pub month: String,
    /// When the month's budget is whole again.
    pub resets_at: String,
    /// Jobs queued or running now.
    pub active_jobs: ActiveJobsLine,
    /// Images of the jobs submitted this month, but those that failed or were canceled.
    pub images: ImagesLine,
    /// Their price at the model's list price, in US dollars as a decimal string.
    pub spend_usd: SpendLine,
}

impl UsageView {
    fn new(owner: &str, usage: &Usage, defaults: QuotaDefaults) -> Self {
        let max_active = usage.max_active(defaults);
        let spend = usage.quota.monthly_microdollars;
        Self {
            owner: owner.to_owned(),
            month: usage.month.label(),
            resets_at: timestamp::render(usage.month.end()),
            active_jobs: ActiveJobsLine {
                used: usage.active,
                limit: max_active,
                remaining: max_active.saturating_sub(usage.active),
            },
            images: ImagesLine {
                used: usage.images,
                limit: usage.quota.monthly_images,
                remaining: usage
                    .quota
                    .monthly_images
                    .map(|limit| limit.saturating_sub(usage.images)),
            },
            spend_usd: SpendLine {
                used: dollars(usage.microdollars),
                limit: spend.map(dollars),
                remaining: spend.map(|limit| dollars(limit.saturating_sub(usage.microdollars))),
            },
        }
    }
}

/// The answer of `POST /media/webhooks/secret/rotate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecretView {
    /// The secret that signs from now on, `whsec_<base64>`.
    pub key: String,
    /// Until when deliveries also carry a signature with the secret it replaced (RFC 3339);
    /// `null`: that secret stopped verifying at once.
    pub previous_key_valid_until: Option<String>,
}

/// The web playground (docs/design.md, "Clients"): one static page, no build step.
const PLAYGROUND: &str = include_str!("../../../../../web/playground.html");

pub async fn handle<S: JobStore + KeyStore + QuotaStore + SigningStore>(
    api: &StatusApi<S>,
    request: Request,
) -> Response<Body> {
    let span = tracing::info_span!("status", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async { respond(&request, answer(api, &request).await) }
        .instrument(span)
        .await
}

async fn answer<S: JobStore + KeyStore + QuotaStore + SigningStore>(
    api: &StatusApi<S>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, matched) = routes::endpoint(request)?;
    let reads = match endpoint {
        Endpoint::Public(PublicEndpoint::Playground) => return Ok(playground()),
        Endpoint::Public(PublicEndpoint::Health) => return Ok(health()),
        Endpoint::Public(PublicEndpoint::OpenApi) => return Ok(openapi(api)),
        Endpoint::Public(PublicEndpoint::Models) => return Ok(models(api)),
        Endpoint::Status(reads) => reads,
        Endpoint::Submit(_) | Endpoint::Content(_) | Endpoint::Stream => {
            return Err(ApiError::NoRoute(routes::request_path(request).to_owned()));
        }
    };
    let mut response = with_caller(&api.auth, request, endpoint.class(), async |caller| match reads {
        StatusEndpoint::GetPrediction => {
            replicate::get(
                &api.reads,
                caller,
                matched.param("prediction_id"),
                request,
                api.links.get().await?,
            )
            .await
        }
        StatusEndpoint::WebhookSecret => webhook_secret(api, caller, matched.route.path).await,
        StatusEndpoint::RotateWebhookSecret => rotate_webhook_secret(api, caller, request, matched.route.path).await,
        StatusEndpoint::JobStatus => status(api, caller, job_id(matched.param("job_id"))?).await,
        StatusEndpoint::Job => job(api, caller, job_id(matched.param("job_id"))?, request).await,
        StatusEndpoint::ListJobs => list(api, caller, request).await,
        StatusEndpoint::Usage => usage(api, caller).await,
    })
    .await?;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The web playground, one static page.
#[utoipa::path(get, path = "/playground", tag = "clients", security(()),
    responses((status = 200, description = "The page", content_type = "text/html")))]
pub(super) fn playground() -> Response<Body> {
    let mut page = Response::new(Body::from(PLAYGROUND));
    page.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    page
}

/// Whether the API answers.
#[utoipa::path(get, path = "/health", tag = "clients", security(()),
    responses((status = 200, description = "The API answers", body = HealthView)))]
pub(super) fn health() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &HealthView {
            status: "ok".to_owned(),
        },
    )
}

/// The models this deployment offers, in OpenAI's list shape, with what each costs and makes.
#[utoipa::path(get, path = "/v1/models", tag = "clients", security(()),
    responses((status = 200, description = "The catalogue", body = ModelListView)))]
pub(super) fn models<S>(api: &StatusApi<S>) -> Response<Body> {
    json_response(StatusCode::OK, &api.models)
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "clients", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of the API", content_type = "application/json")))]
pub(super) fn openapi<S>(api: &StatusApi<S>) -> Response<Body> {
    let mut response = Response::new(Body::from(api.openapi.as_str().to_owned()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The caller's webhook signing secret, `whsec_<base64>`: Replicate's clients validate
/// deliveries with it.
#[utoipa::path(get, path = "/v1/webhooks/default/secret", tag = "replicate",
    responses(
        (status = 200, description = "The caller's signing secret", body = WebhookSecretView),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This deployment signs no webhooks", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn webhook_secret<S: SigningStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let secrets = signing(api, path).await?;
    Ok(json_response(
        StatusCode::OK,
        &WebhookSecretView {
            key: secrets.current(&caller.owner).await?.expose().to_owned(),
        },
    ))
}

/// The owners' webhook secrets; a deployment that signs no webhooks serves neither route.
async fn signing<'a, S>(api: &'a StatusApi<S>, path: &str) -> Result<&'a WebhookSecrets<S>, ApiError> {
    api.webhook_secrets
        .get()
        .await?
        .as_ref()
        .ok_or_else(|| ApiError::NoRoute(path.to_owned()))
}

/// Gives the caller's owner a new webhook signing secret. Until `grace_seconds` have passed,
/// deliveries carry a signature with each secret, so a receiver holding either verifies them;
/// then only the new one signs. A rotation during another's grace ends that one's old secret.
#[utoipa::path(post, path = "/media/webhooks/secret/rotate", tag = "webhooks",
    params(("grace_seconds" = Option<u32>, Query, minimum = 0, maximum = 604800,
        description = "How long the secret replaced still verifies, in seconds (default 86400, a day; 0: it stops at once)")),
    responses(
        (status = 200, description = "The new secret, and until when the old one still verifies", body = RotatedSecretView),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This deployment signs no webhooks", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn rotate_webhook_secret<S: SigningStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    request: &Request,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let secrets = signing(api, path).await?;
    let grace = grace(request.query_string_parameters().iter()).map_err(ApiError::InvalidQuery)?;
    let rotated = secrets.rotate(&caller.owner, grace).await?;
    tracing::info!(grace_s = grace.as_secs(), "webhook secret rotated");
    Ok(json_response(
        StatusCode::OK,
        &RotatedSecretView {
            key: rotated.secret.expose().to_owned(),
            previous_key_valid_until: rotated.previous_until.map(timestamp::render),
        },
    ))
}

/// The grace a rotation asks for: `grace_seconds`, at most [`MAX_GRACE`].
fn grace<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Duration, Vec<FieldError>> {
    let mut grace = DEFAULT_GRACE;
    let mut errors = Vec::new();
    for (name, value) in params {
        match name {
            "grace_seconds" => match value.parse::<u64>() {
                Ok(seconds) if seconds <= MAX_GRACE.as_secs() => grace = Duration::from_secs(seconds),
                _ => errors.push(FieldError::new(
                    "grace_seconds",
                    format!("must be a whole number from 0 to {}", MAX_GRACE.as_secs()),
                )),
            },
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if errors.is_empty() { Ok(grace) } else { Err(errors) }
}

/// The caller's quota and their use of it this month: jobs queued or running, and the month's
/// images and spend against their budgets (docs/api.md, "Quotas").
#[utoipa::path(get, path = "/media/usage", tag = "jobs",
    responses(
        (status = 200, description = "The quota and its use", body = UsageView),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn usage<S: JobStore + KeyStore + QuotaStore>(
    api: &StatusApi<S>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    let usage = api.reads.usage(caller).await?;
    Ok(json_response(
        StatusCode::OK,
        &UsageView::new(caller.owner.as_str(), &usage, api.quota_defaults),
    ))
}

/// A job's state, light, for polling; `Retry-After: 1` while it is not final.
#[utoipa::path(get, path = "/media/status/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id")),
    responses(
        (status = 200, description = "The job's state", body = JobStatusView),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job of the caller's has this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn status<S: JobStore + KeyStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    id: JobId,
) -> Result<Response<Body>, ApiError> {
    let job = api.reads.job(caller, id).await?.ok_or(NOT_FOUND)?;
    let mut response = json_response(StatusCode::OK, &status_body(&job));
    if !job.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

const NOT_FOUND: ApiError = ApiError::NotFound { what: "job" };

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    let id = JobId::parse(raw).map_err(|_| ApiError::MalformedId { param: "job_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    Ok(id)
}

/// The whole job with its images; `Prefer: wait=N` (N ≤ 20) holds the answer until the job is
/// final or N seconds have passed.
#[utoipa::path(get, path = "/media/jobs/{job_id}", tag = "jobs",
    params(
        ("job_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The job's id"),
        ("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` (N ≤ 20): wait for the job to be final"),
    ),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job of the caller's has this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn job<S: JobStore + KeyStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    id: JobId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let waited = match preferred_wait(request) {
        Some(wait) => match api.reads.wait_until_final(caller, id, wait).await? {
            Waited::Held(None) => return Err(NOT_FOUND),
            Waited::Held(Some(_)) => true,
            Waited::NotHeld => false,
        },
        None => false,
    };
    let (job, media) = api.reads.job_with_media(caller, id).await?.ok_or(NOT_FOUND)?;
    let base = base_path(request);
    let mut body = job_body(&job, &media, &base);
    body.links = Some(links(&job, &base, api.links.get().await?));
    let mut response = json_response(StatusCode::OK, &body);
    if !job.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if waited {
        applied_wait(&mut response);
    }
    Ok(response)
}

/// The caller's jobs, newest first, a page at a time.
///
/// A request reads at most 200 of them: with `status`, a page can hold fewer than `limit`, even
/// none, and still have a `next_cursor`; only its absence is the end.
#[utoipa::path(get, path = "/media/jobs", tag = "jobs",
    params(
        ("status" = Option<JobStatus>, Query, description = "Only jobs in this state"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Jobs in a page (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The `next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobPageView),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn list<S: JobStore + KeyStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = request.query_string_parameters();
    let query = ListQuery::parse(params.iter()).map_err(ApiError::InvalidQuery)?;
    let page = api.reads.list(caller, &query).await?;
    Ok(json_response(
        StatusCode::OK,
        &page_body(&page, &base_path(request), |next| query.next_page(next)),
    ))
}
