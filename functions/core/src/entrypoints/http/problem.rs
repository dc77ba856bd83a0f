//! RFC 9457 problem details, the one shape of every HTTP error, and the one place where an error
//! becomes a status code (docs/design.md, "HTTP contract").

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use super::MAX_BODY_BYTES;
use crate::domain::generation::FieldError;
use crate::domain::idempotency::InvalidIdempotencyKey;
use crate::domain::ids::JobId;
use crate::domain::images;
use crate::domain::job::{Job, JobStatus};
use crate::domain::limits::Allowance;
use crate::domain::quota::Refusal;
use crate::ports::StoreError;
use crate::services::auth::AuthError;
use crate::services::cancel::CancelError;
use crate::services::content::ContentError;
use crate::services::submit::SubmitError;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// The header that names the job an answer of the OpenAI-compatible API is about.
pub const JOB_ID_HEADER: &str = "x-mediagen-job-id";
/// The wait a submit refused for too many active jobs is told to take: about the time a local
/// job takes, the time after which a slot may well be free.
const ACTIVE_JOBS_RETRY_SECONDS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:mediagen:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// What was wrong with which field, when fields are at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// `slug` names the problem type; `title` is its fixed summary, `detail` this occurrence.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:mediagen:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// An error as OpenAI's API writes it, the one shape of the errors of the OpenAI-compatible
/// images API (docs/design.md, "OpenAI-compatible API").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorBody {
    pub message: String,
    /// `invalid_request_error`, `requests`, `insufficient_quota` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, by OpenAI's name for it.
    pub param: Option<String>,
    pub code: Option<String>,
}

/// Marks an answer with its key's rate limit and what remains of it (docs/design.md, "Rate
/// limits"): every answer to a request with a key carries them.
pub fn stamp<B>(response: &mut Response<B>, allowance: &Allowance) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-policy", allowance.policy_header()),
        ("ratelimit", allowance.header()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Everything an HTTP request can fail with: the request's own mistakes, and the services'
/// errors as they are.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: Method, allow: String },
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("body of {0} bytes is too large")]
    PayloadTooLarge(usize),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("no model {0}")]
    UnknownModel(String),
    #[error("malformed {param} in path")]
    MalformedId { param: &'static str },
    #[error("invalid query parameters")]
    InvalidQuery(Vec<FieldError>),
    #[error(transparent)]
    IdempotencyKey(#[from] InvalidIdempotencyKey),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Cancel(#[from] CancelError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job an answer waits for (the OpenAI-compatible API's) was not final in time; `keyed`
    /// if the request had an `Idempotency-Key`, so that sending it again follows the same job.
    #[error("job {job} is not final yet")]
    Unfinished { job: JobId, keyed: bool },
    /// The job an answer waits for ended without its images.
    #[error("job {} ended {}", .0.id, .0.status)]
    JobUnsucceeded(Box<Job>),
    /// The images are more than one answer holds as base64.
    #[error("the images of job {job} come to {bytes} bytes")]
    ImagesTooLarge { job: JobId, bytes: u64 },
    /// The key, or the signed link, holds as many progress streams open as it may.
    #[error("{limit} streams are open already")]
    TooManyStreams { limit: u32 },
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::NoRoute(path) => Problem::new(
                StatusCode::NOT_FOUND,
                "no-route",
                "No such route",
                format!("nothing is served at {path}; see the API in docs/api.md"),
            ),
            ApiError::NotFound { what } => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("no {what} has this id"),
            ),
            ApiError::MethodNotAllowed { method, allow } => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{method} is not allowed here; use {allow}"),
            ),
            ApiError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as JSON with Content-Type: application/json",
            ),
            ApiError::PayloadTooLarge(size) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                format!("the body has {size} bytes; the limit is {MAX_BODY_BYTES}"),
            ),
            ApiError::MalformedJson(reason) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!("the body is not valid JSON: {reason}"),
            )
            .with_errors(vec![FieldError::new("body", reason.clone())]),
            ApiError::Submit(SubmitError::Invalid(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-request",
                    "Invalid request",
                    format!("check these fields: {}", fields.join(", ")),
                )
                .with_errors(errors.clone())
            }
            ApiError::MalformedId { param } => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-id",
                "Malformed id",
                format!("{param} must be a UUIDv7 such as 0192e5a0-7b1c-7c3d-8e9f-0123456789ab"),
            )
            .with_errors(vec![FieldError::new(*param, "is not a UUIDv7")]),
            ApiError::Submit(SubmitError::QueueUnavailable(job_id)) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue-unavailable",
                "Service unavailable",
                format!("job {job_id} could not be queued and was marked failed; submit again later"),
            ),
            ApiError::UnknownModel(model) => Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-model",
                "Model not found",
                format!("no model {model} is served here; see the models in docs/api.md"),
            ),
            ApiError::InvalidQuery(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-query",
                    "Invalid query",
                    format!("check these query parameters: {}", fields.join(", ")),
                )
                .with_errors(errors.clone())
            }
            ApiError::IdempotencyKey(err) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                err.to_string(),
            )
            .with_errors(vec![FieldError::new("Idempotency-Key", err.to_string())]),
            ApiError::Auth(AuthError::Format(err)) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                format!("{err}; send Authorization: Bearer <your API key>"),
            ),
            ApiError::Auth(AuthError::Refused) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "the API key is unknown or revoked",
            ),
            ApiError::Auth(AuthError::Limited(allowance)) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "this key may make {} {} requests a minute; try again in {} s",
                    allowance.quota,
                    allowance.class.name(),
                    allowance.reset_seconds
                ),
            ),
            ApiError::Submit(SubmitError::OverQuota(refusal @ Refusal::ActiveJobs { .. })) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-active-jobs",
                "Too many active jobs",
                format!("{refusal}; submit again when one of them ends (GET /media/usage shows them)"),
            ),
            ApiError::TooManyStreams { limit } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many open streams",
                format!(
                    "this key (or link) holds {limit} progress streams or held requests open, as many as it may; \
                     close one, or try again after Retry-After"
                ),
            ),
            ApiError::Submit(refusal @ SubmitError::ProviderBacklog { .. }) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "provider-backlog",
                "The model's provider is booked up",
                format!("{refusal}; submit again after Retry-After"),
            ),
            // 402, not 429: no retry helps before the month ends, and clients retry a 429
            // (docs/api.md, "Quotas").
            ApiError::Submit(SubmitError::OverQuota(refusal)) => Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "budget-exhausted",
                "Monthly budget used up",
                format!("{refusal}; GET /media/usage shows the budget"),
            ),
            ApiError::Submit(SubmitError::IdempotencyMismatch) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was used within 24 hours with another request body; use a new key",
            )
            .with_errors(vec![FieldError::new(
                "Idempotency-Key",
                "was used with another request body",
            )]),
            ApiError::Cancel(CancelError::AlreadyFinal(job)) => Problem::new(
                StatusCode::CONFLICT,
                "already-final",
                "Job already final",
                format!("job {} is {} and can no longer be canceled", job.id, job.status),
            ),
            ApiError::Unfinished { job, .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "not-final",
                "Job not final yet",
                format!("job {job} is not final yet and goes on; GET /media/jobs/{job} follows it"),
            ),
            ApiError::JobUnsucceeded(job) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "job-unsucceeded",
                "The job made no images",
                format!(
                    "job {} ended {}{}",
                    job.id,
                    job.status,
                    job.error
                        .as_ref()
                        .map(|e| format!(": {}", e.message))
                        .unwrap_or_default()
                ),
            ),
            ApiError::ImagesTooLarge { job, bytes } => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "answer-too-large",
                "The images do not fit one answer",
                format!(
                    "the images of job {job} come to {bytes} bytes, more than one answer holds as base64; \
                     ask for their links (response_format url) or GET /media/jobs/{job}"
                ),
            ),
            ApiError::Submit(SubmitError::Store(_))
            | ApiError::Content(_)
            | ApiError::Store(_)
            | ApiError::Auth(AuthError::Store(_))
            | ApiError::Cancel(CancelError::Store(_)) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend-unavailable",
                "Service unavailable",
                "a storage backend did not answer; try again shortly",
            ),
        }
    }

    /// The error as OpenAI's API answers it: its status, its body, and whether the SDKs may
    /// send the request again (`x-should-retry`) where their rule by status would be wrong.
    fn openai(&self) -> (StatusCode, OpenAiError, Option<bool>) {
        let problem = self.problem();
        let mut message = problem.detail.clone();
        let invalid = "invalid_request_error";
        let slug = problem.kind.rsplit(':').next().unwrap_or_default().replace('-', "_");
        let (status, kind, code, param, retry) = match self {
            ApiError::Auth(AuthError::Format(_) | AuthError::Refused) => (
                StatusCode::UNAUTHORIZED,
                invalid,
                Some("invalid_api_key".to_owned()),
                None,
                None,
            ),
            ApiError::Auth(AuthError::Limited(_))
            | ApiError::Submit(
                SubmitError::OverQuota(Refusal::ActiveJobs { .. }) | SubmitError::ProviderBacklog { .. },
            ) => (StatusCode::TOO_MANY_REQUESTS, "requests", Some(slug), None, None),
            // OpenAI's answer when the quota is used up: a 429, which no retry helps.
            ApiError::Submit(SubmitError::OverQuota(_)) => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota".to_owned()),
                None,
                Some(false),
            ),
            ApiError::UnknownModel(_) => (
                StatusCode::NOT_FOUND,
                invalid,
                Some("model_not_found".to_owned()),
                Some("model".to_owned()),
                None,
            ),
            ApiError::Submit(SubmitError::Invalid(errors)) => {
                let named: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", images::param(&e.field), e.message))
                    .collect();
                message = named.join("; ");
                let param = errors
                    .first()
                    .map(|e| images::param(&e.field))
                    .filter(|field| *field != "body")
                    .map(str::to_owned);
                (
                    StatusCode::BAD_REQUEST,
                    invalid,
                    Some("invalid_value".to_owned()),
                    param,
                    None,
                )
            }
            ApiError::NoRoute(_) | ApiError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, invalid, Some(slug), None, None)
            }
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, invalid, Some(slug), None, None),
            // A retry makes another job, unless an Idempotency-Key brings it back to this one.
            ApiError::Unfinished { job, keyed } => {
                message = format!(
                    "the images are not ready yet: job {job} goes on; GET /media/jobs/{job} or /v1/predictions/{job} \
                     follows it, or send this request again with the same Idempotency-Key"
                );
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    Some("timeout".to_owned()),
                    None,
                    Some(*keyed),
                )
            }
            ApiError::JobUnsucceeded(job) => {
                let error = job.error.as_ref();
                match (job.status, error.map(|e| e.code.as_str())) {
                    (JobStatus::Failed, Some("content_filtered")) => (
                        StatusCode::BAD_REQUEST,
                        invalid,
                        Some("content_policy_violation".to_owned()),
                        Some("prompt".to_owned()),
                        Some(false),
                    ),
                    (JobStatus::Canceled, _) => (
                        StatusCode::BAD_REQUEST,
                        invalid,
                        Some("job_canceled".to_owned()),
                        None,
                        Some(false),
                    ),
                    (_, code) => (
                        StatusCode::BAD_GATEWAY,
                        "server_error",
                        code.map(str::to_owned),
                        None,
                        Some(false),
                    ),
                }
            }
            ApiError::ImagesTooLarge { .. } => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("response_too_large".to_owned()),
                Some("response_format".to_owned()),
                Some(false),
            ),
            // The rest as the problem says, 4xx in OpenAI's one status for a bad request.
            _ if problem.status >= 500 => (problem.status(), "server_error", Some(slug), None, None),
            _ => (StatusCode::BAD_REQUEST, invalid, Some(slug), None, None),
        };
        let body = OpenAiError {
            error: OpenAiErrorBody {
                message,
                kind: kind.to_owned(),
                param,
                code,
            },
        };
        (status, body, retry)
    }

    /// The job an error is about, named in the OpenAI-compatible API's `x-mediagen-job-id`.
    fn job(&self) -> Option<JobId> {
        match self {
            ApiError::Unfinished { job, .. } | ApiError::ImagesTooLarge { job, .. } => Some(*job),
            ApiError::JobUnsucceeded(job) => Some(job.id),
            _ => None,
        }
    }

    /// The response in OpenAI's shape, with the headers the problem's would have.
    pub(super) fn into_openai_response(self) -> Response<Body> {
        let (status, body, retry) = self.openai();
        let job = self.job();
        let mut response = self.into_response();
        *response.status_mut() = status;
        *response.body_mut() = Body::from(serde_json::to_string(&body).unwrap_or_default());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(retry) = retry {
            headers.insert(
                "x-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        if let Some(job) = job
            && let Ok(value) = HeaderValue::from_str(&job.to_string())
        {
            headers.insert(JOB_ID_HEADER, value);
        }
        response
    }

    pub(super) fn into_response(self) -> Response<Body> {
        let problem = self.problem();
        let unavailable = problem.status() == StatusCode::SERVICE_UNAVAILABLE;
        if problem.status >= 500 {
            tracing::error!(error = %self, status = problem.status, "request failed");
        } else {
            tracing::info!(error = %self, status = problem.status, "request rejected");
        }
        let mut response = problem.into_response();
        let headers = response.headers_mut();
        if let ApiError::MethodNotAllowed { allow, .. } = &self
            && let Ok(allow) = HeaderValue::from_str(allow)
        {
            headers.insert(header::ALLOW, allow);
        }
        if unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::Auth(AuthError::Format(_) | AuthError::Refused) = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::Submit(SubmitError::OverQuota(Refusal::ActiveJobs { .. })) | ApiError::TooManyStreams { .. } =
            &self
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(ACTIVE_JOBS_RETRY_SECONDS));
        }
        if let ApiError::Submit(SubmitError::ProviderBacklog {
            booked_s, longest_s, ..
        }) = &self
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(booked_s.saturating_sub(*longest_s).max(1)),
            );
        }
        if let ApiError::Auth(AuthError::Limited(allowance)) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(allowance.reset_seconds));
            stamp(&mut response, allowance);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::job::JobError;
    use crate::domain::keys::Owner;
    use crate::domain::limits::RouteClass;
    use crate::domain::quota::Month;
    use serde_json::Value;

    fn openai(err: ApiError) -> (u16, Value, Response<Body>) {
        let response = err.into_openai_response();
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        (response.status().as_u16(), body["error"].clone(), response)
    }

    fn job(status: JobStatus, error: Option<JobError>) -> Box<Job> {
        let mut job = Job::new(
            Owner::parse("tester").unwrap(),
            sample_request(),
            chrono::Utc::now(),
            std::time::Duration::from_secs(60),
        );
        job.status = status;
        job.error = error;
        Box::new(job)
    }

    #[test]
    fn a_bad_request_is_openais_400_naming_the_field_by_its_name() {
        let (status, error, _) = openai(ApiError::Submit(SubmitError::Invalid(vec![
            FieldError::new("width", "no size this model makes has the shape of 1440x960"),
            FieldError::new("prompt", "must not be empty"),
        ])));
        assert_eq!(status, 400);
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], "size");
        assert_eq!(
            error["message"],
            "size: no size this model makes has the shape of 1440x960; prompt: must not be empty"
        );
        let (status, error, _) = openai(ApiError::MalformedJson("EOF".into()));
        assert_eq!(
            (status, error["code"].as_str(), error["param"].as_str()),
            (400, Some("malformed_json"), None)
        );
        let (status, _, _) = openai(ApiError::UnsupportedMediaType);
        assert_eq!(status, 400);
    }

    #[test]
    fn keys_models_and_limits_answer_openais_statuses() {
        let (status, error, response) = openai(ApiError::Auth(AuthError::Refused));
        assert_eq!((status, error["code"].as_str()), (401, Some("invalid_api_key")));
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let (status, error, _) = openai(ApiError::UnknownModel("dall-e-9".into()));
        assert_eq!(
            (status, error["code"].as_str(), error["param"].as_str()),
            (404, Some("model_not_found"), Some("model"))
        );
        let allowance = Allowance {
            class: RouteClass::Create,
            quota: 600,
            remaining: 0,
            reset_seconds: 17,
        };
        let (status, error, response) = openai(ApiError::Auth(AuthError::Limited(allowance)));
        assert_eq!((status, error["type"].as_str()), (429, Some("requests")));
        assert_eq!(response.headers()[header::RETRY_AFTER], "17");
        let budget = Refusal::MonthlyImages {
            limit: 10,
            used: 10,
            month: Month::of(chrono::Utc::now()),
        };
        let (status, error, response) = openai(ApiError::Submit(SubmitError::OverQuota(budget)));
        assert_eq!((status, error["code"].as_str()), (429, Some("insufficient_quota")));
        assert_eq!(response.headers()["x-should-retry"], "false");
        let (status, error, response) = openai(ApiError::Store(StoreError::Unavailable("down".into())));
        assert_eq!((status, error["type"].as_str()), (503, Some("server_error")));
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn a_job_not_final_in_time_or_failed_is_named_and_not_retried_into_a_duplicate() {
        let unfinished = job(JobStatus::Processing, None);
        let (status, error, response) = openai(ApiError::Unfinished {
            job: unfinished.id,
            keyed: false,
        });
        assert_eq!((status, error["code"].as_str()), (504, Some("timeout")));
        assert_eq!(response.headers()["x-should-retry"], "false");
        assert_eq!(response.headers()[JOB_ID_HEADER], unfinished.id.to_string().as_str());
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains(&format!("/media/jobs/{}", unfinished.id))
        );
        // With an Idempotency-Key, sending it again follows the same job.
        let (_, _, response) = openai(ApiError::Unfinished {
            job: unfinished.id,
            keyed: true,
        });
        assert_eq!(response.headers()["x-should-retry"], "true");

        let filtered = job(
            JobStatus::Failed,
            Some(JobError::new("content_filtered", "the prompt was refused")),
        );
        let (status, error, response) = openai(ApiError::JobUnsucceeded(filtered));
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some("content_policy_violation"))
        );
        assert_eq!(response.headers()["x-should-retry"], "false");
        let failed = job(JobStatus::Failed, Some(JobError::new("model_error", "nope")));
        let (status, error, _) = openai(ApiError::JobUnsucceeded(failed));
        assert_eq!(
            (status, error["type"].as_str(), error["code"].as_str()),
            (502, Some("server_error"), Some("model_error"))
        );
    }

    #[test]
    fn the_problem_rendering_stays_for_every_other_route() {
        let response = ApiError::UnknownModel("x".into()).into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
