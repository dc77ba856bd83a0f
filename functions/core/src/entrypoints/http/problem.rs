//! RFC 9457 problem details, the one shape of every HTTP error, and the one place where an error
//! becomes a status code (docs/design.md, "HTTP contract").

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use super::MAX_BODY_BYTES;
use crate::domain::generation::FieldError;
use crate::domain::idempotency::InvalidIdempotencyKey;
use crate::domain::limits::Allowance;
use crate::domain::quota::Refusal;
use crate::ports::StoreError;
use crate::services::auth::AuthError;
use crate::services::cancel::CancelError;
use crate::services::content::ContentError;
use crate::services::submit::SubmitError;

pub const PROBLEM_JSON: &str = "application/problem+json";
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

/// Marks an answer with its key's rate limit and what remains of it (docs/design.md, "Rate
/// limits"): every answer to a request with a key carries them.
pub fn stamp(response: &mut Response<Body>, allowance: &Allowance) {
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
        if let ApiError::Submit(SubmitError::OverQuota(Refusal::ActiveJobs { .. })) = &self {
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
