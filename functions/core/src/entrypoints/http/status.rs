//! `GET /media/status/{job_id}` (light, for polling) and `GET /media/jobs/{job_id}` (whole).
//! This function also answers every path no other function serves, with a 404 problem.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use super::{ApiError, base_path, json_response, path, path_param, require_method, respond};
use crate::domain::ids::JobId;
use crate::domain::job::{Job, MediaItem};
use crate::domain::timestamp::render as timestamp;
use crate::ports::JobStore;
use crate::services::read::ReadService;

enum View {
    Status,
    Job,
}

pub async fn handle<S: JobStore>(service: &ReadService<S>, request: Request) -> Response<Body> {
    let span = tracing::info_span!("status", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async { respond(answer(service, &request).await) }
        .instrument(span)
        .await
}

async fn answer<S: JobStore>(service: &ReadService<S>, request: &Request) -> Result<Response<Body>, ApiError> {
    let path = path(request);
    let segments: Vec<&str> = path.rsplit('/').take(3).collect();
    let view = match segments.as_slice() {
        [_, "status", "media"] => View::Status,
        [_, "jobs", "media"] => View::Job,
        _ => return Err(ApiError::NoRoute(path)),
    };
    require_method(request, Method::GET, "GET")?;
    let id = JobId::parse(&path_param(request, "job_id")).map_err(|_| ApiError::MalformedId { param: "job_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let not_found = || ApiError::NotFound { what: "job" };
    let (mut response, job) = match view {
        View::Status => {
            let job = service.job(id).await?.ok_or_else(not_found)?;
            (json_response(StatusCode::OK, &status_body(&job)), job)
        }
        View::Job => {
            let (job, media) = service.job_with_media(id).await?.ok_or_else(not_found)?;
            (
                json_response(StatusCode::OK, &job_body(&job, &media, &base_path(request))),
                job,
            )
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !job.status.is_final() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

fn status_body(job: &Job) -> Value {
    let mut body = json!({
        "job_id": job.id.to_string(),
        "status": job.status.as_str(),
        "attempts": job.attempts,
        "created_at": timestamp(job.created_at),
        "updated_at": timestamp(job.updated_at),
    });
    if let Some(error) = &job.error {
        body["error"] = json!({ "code": error.code, "message": error.message });
    }
    body
}

fn job_body(job: &Job, media: &[MediaItem], base: &str) -> Value {
    let request = &job.request;
    let timings = job.timings();
    let mut body = status_body(job);
    let extra = json!({
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "model": request.model,
        "width": request.width,
        "height": request.height,
        "num_outputs": request.num_outputs,
        "seed": request.seed,
        "output_format": request.output_format.extension(),
        "webhook_url": request.webhook_url.as_ref().map(|u| u.as_str()),
        "started_at": job.started_at.map(timestamp),
        "completed_at": job.completed_at.map(timestamp),
        "timings": { "queued_ms": timings.queued_ms, "generation_ms": timings.generation_ms },
        "media": media.iter().map(|m| json!({
            "media_id": m.id.to_string(),
            "index": m.index,
            "content_type": m.content_type,
            "bytes": m.bytes,
            "width": m.width,
            "height": m.height,
            "content_url": format!("{base}/media/content/{}", m.id),
        })).collect::<Vec<_>>(),
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body
}
