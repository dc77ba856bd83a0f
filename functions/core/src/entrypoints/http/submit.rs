//! `POST /media/generate`.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::Instrument;

use super::{base_path, json_body, json_response, require_method, respond};
use crate::domain::job::Job;
use crate::domain::timestamp;
use crate::ports::{JobQueue, JobStore};
use crate::services::submit::SubmitService;

pub async fn handle<S: JobStore, Q: JobQueue>(service: &SubmitService<S, Q>, request: Request) -> Response<Body> {
    let span = tracing::info_span!("submit", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async {
        respond(
            async {
                require_method(&request, Method::POST, "POST")?;
                let body = json_body(&request)?;
                let job = service.submit(&body).await?;
                Ok(accepted(&job, &base_path(&request)))
            }
            .await,
        )
    }
    .instrument(span)
    .await
}

fn accepted(job: &Job, base: &str) -> Response<Body> {
    let status_url = format!("{base}/media/status/{}", job.id);
    let mut response = json_response(
        StatusCode::ACCEPTED,
        &json!({
            "job_id": job.id.to_string(),
            "status": job.status.as_str(),
            "created_at": timestamp::render(job.created_at),
            "links": {
                "status": status_url,
                "job": format!("{base}/media/jobs/{}", job.id),
            },
        }),
    );
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
