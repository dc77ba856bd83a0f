//! The reads (the `status` function): `GET /media/status/{job_id}` (light, for polling),
//! `GET /media/jobs/{job_id}` (whole, with `Prefer: wait`), `GET /media/jobs` (the caller's
//! jobs), and their Replicate-compatible forms `GET /v1/predictions/{id}` and
//! `GET /v1/predictions`. This function also answers every path no other function serves, with
//! a 404 problem.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::Instrument;

use super::replicate::{self, FileLinks};
use super::views::{job_body, page_body, status_body};
use super::{
    ApiError, applied_wait, base_path, caller, json_response, path, preferred_wait, require_method, respond,
    segments_from_end,
};
use crate::domain::ids::JobId;
use crate::domain::listing::ListQuery;
use crate::ports::{JobStore, KeyStore};
use crate::services::auth::{Authenticator, Caller};
use crate::services::read::ReadService;
use crate::services::webhooks::SigningKeys;

/// What the `status` function serves.
pub struct StatusApi<S> {
    pub auth: Authenticator<S>,
    pub reads: ReadService<S>,
    pub links: FileLinks,
    /// The owners' webhook signing keys, when this deployment signs webhooks.
    pub webhook_keys: Option<SigningKeys>,
}

/// The web playground (docs/design.md, "Clients"): one static page, no build step.
const PLAYGROUND: &str = include_str!("../../../../../web/playground.html");

enum Route {
    Playground,
    Health,
    Status(String),
    Job(String),
    List,
    Prediction(String),
    Predictions,
    WebhookSecret,
}

pub async fn handle<S: JobStore + KeyStore>(api: &StatusApi<S>, request: Request) -> Response<Body> {
    let span = tracing::info_span!("status", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async { respond(answer(api, &request).await) }.instrument(span).await
}

async fn answer<S: JobStore + KeyStore>(api: &StatusApi<S>, request: &Request) -> Result<Response<Body>, ApiError> {
    let segments = segments_from_end(request);
    let route = match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["playground", ..] => Route::Playground,
        ["health", ..] => Route::Health,
        [id, "status", "media", ..] => Route::Status(id.to_string()),
        ["jobs", "media", ..] => Route::List,
        [id, "jobs", "media", ..] => Route::Job(id.to_string()),
        ["predictions", "v1", ..] => Route::Predictions,
        ["secret", "default", "webhooks", "v1", ..] => Route::WebhookSecret,
        [id, "predictions", "v1", ..] => Route::Prediction(id.to_string()),
        _ => return Err(ApiError::NoRoute(path(request))),
    };
    require_method(request, Method::GET, "GET")?;
    // The page and the health check are public: the page asks for the key itself.
    match route {
        Route::Playground => {
            let mut page = Response::new(Body::from(PLAYGROUND));
            page.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return Ok(page);
        }
        Route::Health => return Ok(json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        _ => {}
    }
    let caller = caller(&api.auth, request).await?;
    let mut response = match route {
        Route::Playground | Route::Health => return Err(ApiError::NoRoute(path(request))),
        Route::Prediction(id) => replicate::get(&api.reads, &caller, &id, request, &api.links).await?,
        Route::Predictions => replicate::list(&api.reads, &caller, request, &api.links).await?,
        // The caller's own key: Replicate's clients validate deliveries with it.
        Route::WebhookSecret => match &api.webhook_keys {
            Some(keys) => json_response(
                StatusCode::OK,
                &serde_json::json!({ "key": keys.signing_secret(&caller.owner).expose() }),
            ),
            None => return Err(ApiError::NoRoute(path(request))),
        },
        Route::Status(id) => {
            let job = api.reads.job(&caller, job_id(&id)?).await?.ok_or(NOT_FOUND)?;
            let mut response = json_response(StatusCode::OK, &status_body(&job));
            if !job.status.is_final() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
        Route::Job(id) => job(api, &caller, job_id(&id)?, request).await?,
        Route::List => list(api, &caller, request).await?,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

const NOT_FOUND: ApiError = ApiError::NotFound { what: "job" };

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    let id = JobId::parse(raw).map_err(|_| ApiError::MalformedId { param: "job_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    Ok(id)
}

async fn job<S: JobStore + KeyStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    id: JobId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let wait = preferred_wait(request);
    if let Some(wait) = wait {
        api.reads.wait_until_final(caller, id, wait).await?.ok_or(NOT_FOUND)?;
    }
    let (job, media) = api.reads.job_with_media(caller, id).await?.ok_or(NOT_FOUND)?;
    let mut response = json_response(StatusCode::OK, &job_body(&job, &media, &base_path(request)));
    if !job.status.is_final() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if wait.is_some() {
        applied_wait(&mut response);
    }
    Ok(response)
}

async fn list<S: JobStore + KeyStore>(
    api: &StatusApi<S>,
    caller: &Caller,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = request.query_string_parameters();
    let query = ListQuery::parse(params.iter()).map_err(ApiError::InvalidQuery)?;
    let page = api.reads.list(caller, &query).await?;
    let next_query = |cursor: &str| {
        let mut next = format!("limit={}&cursor={cursor}", query.limit);
        if let Some(status) = query.status {
            next.push_str(&format!("&status={status}"));
        }
        next
    };
    Ok(json_response(
        StatusCode::OK,
        &page_body(&page, &base_path(request), next_query),
    ))
}
