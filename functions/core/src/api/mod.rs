//! HTTP entrypoints: parse the request, call a service, render the answer. Every error becomes
//! a problem+json response here, in [`ApiError::problem`], and nowhere else.

pub mod content;
pub mod status;
pub mod submit;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::ids::JobId;
use crate::ports::{MediaError, StoreError};
use crate::problem::Problem;
use crate::request::FieldError;
use crate::services::content::ContentError;
use crate::services::submit::SubmitError;

/// The largest request body accepted (DESIGN §2).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: Method, allow: &'static str },
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("body of {0} bytes is too large")]
    PayloadTooLarge(usize),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("malformed {param} in path")]
    MalformedId { param: &'static str },
    #[error("job {0} could not be queued")]
    QueueUnavailable(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::Invalid(errors) => ApiError::Invalid(errors),
            SubmitError::QueueUnavailable(id) => ApiError::QueueUnavailable(id),
            SubmitError::Store(err) => ApiError::Store(err),
        }
    }
}

impl From<ContentError> for ApiError {
    fn from(err: ContentError) -> Self {
        match err {
            ContentError::Store(err) => ApiError::Store(err),
            ContentError::Media(err) => ApiError::Media(err),
        }
    }
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::NoRoute(path) => Problem::new(
                StatusCode::NOT_FOUND,
                "no-route",
                "No such route",
                format!("nothing is served at {path}; see the API in the README"),
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
            ApiError::Invalid(errors) => {
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
            ApiError::QueueUnavailable(job_id) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue-unavailable",
                "Service unavailable",
                format!("job {job_id} could not be queued and was marked failed; submit again later"),
            ),
            ApiError::Store(_) | ApiError::Media(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend-unavailable",
                "Service unavailable",
                "a storage backend did not answer; try again shortly",
            ),
        }
    }

    fn into_response(self) -> Response<Body> {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, status = problem.status, "request failed");
        } else {
            tracing::info!(error = %self, status = problem.status, "request rejected");
        }
        let mut response = problem.into_response();
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let ApiError::QueueUnavailable(_) | ApiError::Store(_) | ApiError::Media(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Renders the outcome of a handler: the response, or the problem for its error.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_string(body).unwrap_or_default()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn require_method(request: &Request, allowed: Method, allow: &'static str) -> Result<(), ApiError> {
    if request.method() == allowed {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed {
            method: request.method().clone(),
            allow,
        })
    }
}

/// The path as the client sent it, whichever event shape carried it.
fn path(request: &Request) -> String {
    match request.uri().path().trim_end_matches('/') {
        "" => "/".to_owned(),
        path => path.to_owned(),
    }
}

/// What the client's path has before our routes (an API Gateway stage such as `/prod`), so
/// that the links we hand out resolve where the client called us.
fn base_path(request: &Request) -> String {
    let raw = request.raw_http_path();
    if raw.is_empty() {
        return String::new();
    }
    let full = request.uri().path();
    full.strip_suffix(raw)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

/// The named path parameter, from the router's parameters when it gave them, else from the
/// path's last segment (a route of ours always ends with its id).
fn path_param(request: &Request, name: &str) -> String {
    let from_router = request
        .path_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_owned);
    from_router.unwrap_or_else(|| path(request).rsplit('/').next().unwrap_or_default().to_owned())
}

/// The request id of this invocation, for the log span.
pub fn request_id(request: &Request) -> String {
    request
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .unwrap_or_default()
}

/// The JSON body, after the checks every JSON endpoint makes in this order: content type,
/// size, syntax.
fn json_body(request: &Request) -> Result<serde_json::Value, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(body.len()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// Whether the client asked for JSON rather than a redirect.
fn accepts_json(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| media.split(';').next().unwrap_or_default().trim() == "application/json")
}
