//! The Replicate-compatible API (docs/design.md, "Replicate-compatible API"): the routes the
//! official `replicate` clients call, answered from the same services as `/media/…`. Each
//! function serves its share: `submit` creates and cancels, `status` reads and lists,
//! `content` serves the files.

use std::time::Duration;

use chrono::Utc;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use super::{ApiError, base_path, json_body, json_response, preferred_wait};
use crate::domain::catalogue::public_name;
use crate::domain::file_urls::FileLinkSigner;
use crate::domain::generation::FieldError;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::ids::{JobId, MediaId};
use crate::domain::job::{Interface, Job};
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

/// A job as a Replicate prediction.
pub(crate) fn prediction_body(job: &Job, root: &str, links: &FileLinks) -> Value {
    let request = &job.request;
    let mut input = json!({
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "num_outputs": request.num_outputs,
        "seed": request.seed,
        "output_format": request.output_format.extension(),
    });
    if let Some(negative) = &request.negative_prompt {
        input["negative_prompt"] = json!(negative);
    }
    let get = format!("{root}/v1/predictions/{}", job.id);
    let mut body = json!({
        "id": job.id.to_string(),
        "model": public_name(&request.model),
        "version": "mediagen",
        "status": status_name(job.status),
        "input": input,
        "output": Value::Null,
        "error": job.error.as_ref().filter(|_| job.status.is_final()).map(|e| e.message.clone()),
        "logs": "",
        "created_at": timestamp(job.created_at),
        "started_at": job.started_at.map(timestamp),
        "completed_at": job.completed_at.map(timestamp),
        "source": "api",
        "data_removed": false,
        "urls": { "cancel": format!("{get}/cancel"), "get": get },
        "metrics": {},
    });
    if !job.media_ids.is_empty() {
        let expires = Utc::now().timestamp() + links.ttl.as_secs() as i64;
        body["output"] = job
            .media_ids
            .iter()
            .map(|id| file_url(root, *id, links, expires))
            .collect();
    }
    if let Some(generation_ms) = job.timings().generation_ms {
        body["metrics"] = json!({ "predict_time": generation_ms as f64 / 1000.0 });
    }
    if let Some(webhook) = &request.webhook_url {
        body["webhook"] = json!(webhook.as_str());
    }
    body
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
pub(super) async fn create<S: JobStore, Q: JobQueue>(
    submit: &SubmitService<S, Q>,
    reads: &ReadService<S>,
    caller: &Caller,
    model: Option<String>,
    request: &Request,
    links: &FileLinks,
) -> Result<Response<Body>, ApiError> {
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .map(|value| IdempotencyKey::parse(value.as_bytes()))
        .transpose()?;
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
        body["status"] = json!("starting");
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
        &json!({
            "results": page.jobs.iter().map(|job| prediction_body(job, &root, links)).collect::<Vec<_>>(),
            "next": next,
            "previous": Value::Null,
        }),
    ))
}

/// `GET /v1/files/{media_id}`: the image's bytes, for the caller's key or a signed link. The
/// clients' `FileOutput` fetches with the API key and follows no redirect, so a presigned S3
/// URL (which refuses a second credential) or a `302` would not do.
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
