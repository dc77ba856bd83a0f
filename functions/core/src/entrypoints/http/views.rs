//! The JSON shapes of jobs in answers (docs/design.md, "HTTP contract"), made in one place.

use serde_json::{Value, json};

use crate::domain::job::{Job, MediaItem};
use crate::domain::timestamp::render as timestamp;
use crate::ports::JobPage;

/// The light view, for polling.
pub(super) fn status_body(job: &Job) -> Value {
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

/// The status view with what was asked for: a listing's entry.
pub(super) fn summary_body(job: &Job) -> Value {
    let request = &job.request;
    let mut body = status_body(job);
    merge(
        &mut body,
        json!({
            "prompt": request.prompt,
            "model": request.model,
            "width": request.width,
            "height": request.height,
            "num_outputs": request.num_outputs,
            "output_format": request.output_format.extension(),
        }),
    );
    body
}

/// The whole job, with its media; `base` is what the client's path has before our routes.
/// Webhook deliveries carry it too (`entrypoints/sqs.rs`).
pub(crate) fn job_body(job: &Job, media: &[MediaItem], base: &str) -> Value {
    let request = &job.request;
    let timings = job.timings();
    let mut body = summary_body(job);
    merge(
        &mut body,
        json!({
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "webhook_url": request.webhook_url.as_ref().map(|u| u.as_str()),
            "started_at": job.started_at.map(timestamp),
            "completed_at": job.completed_at.map(timestamp),
            "cancel_requested": job.cancel_requested,
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
        }),
    );
    body
}

/// Where a job can be followed.
pub(super) fn links(job: &Job, base: &str) -> Value {
    json!({
        "status": status_url(job, base),
        "job": format!("{base}/media/jobs/{}", job.id),
    })
}

pub(super) fn status_url(job: &Job, base: &str) -> String {
    format!("{base}/media/status/{}", job.id)
}

/// The answer to a submit: where to follow the job.
pub(super) fn accepted_body(job: &Job, base: &str) -> Value {
    json!({
        "job_id": job.id.to_string(),
        "status": job.status.as_str(),
        "created_at": timestamp(job.created_at),
        "links": links(job, base),
    })
}

/// A page of a listing, with the cursor of the next one.
pub(super) fn page_body(page: &JobPage, base: &str, next_query: impl Fn(&str) -> String) -> Value {
    let next_cursor = page.next.map(|cursor| cursor.encode());
    json!({
        "jobs": page.jobs.iter().map(summary_body).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
        "links": {
            "next": next_cursor.as_deref().map(|cursor| format!("{base}/media/jobs?{}", next_query(cursor))),
        },
    })
}

fn merge(body: &mut Value, extra: Value) {
    if let (Value::Object(body), Value::Object(extra)) = (body, extra) {
        body.extend(extra);
    }
}
