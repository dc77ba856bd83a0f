//! HTTP entrypoints, one file per route: parse the request, call a service, render the answer.
//! Every error becomes a problem+json response in [`problem`], and nowhere else.

pub mod content;
pub mod openai;
pub mod openapi;
pub mod problem;
pub mod replicate;
pub mod requests;
pub mod routes;
pub mod status;
pub mod stream;
pub mod submit;

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::domain::idempotency::IdempotencyKey;
use crate::domain::limits::{Allowance, RouteClass};
use crate::ports::{KeyStore, StoreError};
use crate::services::auth::{Authenticator, Caller};
pub use problem::{ApiError, stamp};

/// The longest a `Prefer: wait` holds an answer: well inside API Gateway's 29 s and the HTTP
/// functions' timeout in `template.yaml`.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// The largest request body accepted (docs/design.md, "HTTP contract"): more than any valid body
/// can take (two 2000-character texts of escaped surrogate pairs, 12 bytes a character), so
/// that a body over it is never a valid one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A value made at its first use, once (docs/design.md, "Configuration"): the secret it needs is
/// read from the secret store then, so that a cold start waits for no read and an instance that
/// never needs the value never reads it. A making that failed is tried again at the next use.
pub struct OnFirstUse<T> {
    value: tokio::sync::OnceCell<T>,
    make: Option<MakeValue<T>>,
}

type MakeValue<T> = Box<dyn Fn() -> BoxFuture<'static, Result<T, String>> + Send + Sync>;

impl<T> OnFirstUse<T> {
    /// A value made already (a deployment with no secret to read, or a test).
    pub fn ready(value: T) -> Self {
        Self {
            value: tokio::sync::OnceCell::new_with(Some(value)),
            make: None,
        }
    }

    /// A value `make` makes at its first use.
    pub fn new<F, Fut>(make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        Self {
            value: tokio::sync::OnceCell::new(),
            make: Some(Box::new(move || Box::pin(make()))),
        }
    }

    /// The value; a failure to make it is the backend's, answered `503` and tried again later.
    pub async fn get(&self) -> Result<&T, ApiError> {
        self.value
            .get_or_try_init(|| async {
                match &self.make {
                    Some(make) => make().await,
                    None => Err("nothing makes this value".to_owned()),
                }
            })
            .await
            .map_err(|reason| {
                tracing::error!(%reason, "a value made at its first use could not be made");
                ApiError::Store(StoreError::Unavailable(reason))
            })
    }
}

/// Renders the outcome of a handler: the response, or its error as the route writes errors (a
/// problem, or OpenAI's shape on the OpenAI-compatible route).
pub fn respond(request: &Request, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|err| {
        if routes::speaks_openai(request) {
            err.into_openai_response()
        } else {
            err.into_response()
        }
    })
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_string(body).unwrap_or_default()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
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

/// Where the client reached us: scheme and host (as API Gateway forwards them) and the stage,
/// so that absolute links resolve where the client called.
fn api_root(request: &Request) -> String {
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

/// The caller an `Authorization: Bearer` header names, admitted for one request of `class`
/// under its key's rate limit, with what remains of it.
async fn admitted<K: KeyStore>(
    auth: &Authenticator<K>,
    request: &Request,
    class: RouteClass,
) -> Result<(Caller, Allowance), ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(auth.admit(header, class, chrono::Utc::now()).await?)
}

/// Runs `handle` for the admitted caller and marks its answer, whatever it is, with the key's
/// rate limit and what remains of it.
async fn with_caller<K: KeyStore>(
    auth: &Authenticator<K>,
    request: &Request,
    class: RouteClass,
    handle: impl AsyncFnOnce(&Caller) -> Result<Response<Body>, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let (caller, allowance) = admitted(auth, request, class).await?;
    let mut response = respond(request, handle(&caller).await);
    stamp(&mut response, &allowance);
    Ok(response)
}

/// How long the client asked to wait for a final job (`Prefer: wait` or `Prefer: wait=N`), at
/// most [`MAX_WAIT`].
fn preferred_wait(request: &Request) -> Option<Duration> {
    request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(str::trim)
        .find_map(|preference| match preference.split_once('=') {
            None if preference.eq_ignore_ascii_case("wait") => Some(MAX_WAIT),
            Some((name, seconds)) if name.trim().eq_ignore_ascii_case("wait") => seconds
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(|s| Duration::from_secs(s).min(MAX_WAIT)),
            _ => None,
        })
}

/// The `Idempotency-Key` a submit carries, if any.
fn idempotency_key(request: &Request) -> Result<Option<IdempotencyKey>, ApiError> {
    Ok(request
        .headers()
        .get("idempotency-key")
        .map(|value| IdempotencyKey::parse(value.as_bytes()))
        .transpose()?)
}

/// Marks a response as shaped by the client's `Prefer: wait`.
fn applied_wait(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert("preference-applied", HeaderValue::from_static("wait"));
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

/// What a signed link's query carries: when it expires (epoch seconds) and its signature.
fn link_signature(request: &Request) -> Option<(i64, String)> {
    let params = request.query_string_parameters();
    let expires = params.first("expires")?.parse().ok()?;
    Some((expires, params.first("signature")?.to_owned()))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_value_is_made_at_its_first_use_once_and_again_after_a_failure() {
        let makings = Arc::new(AtomicU32::new(0));
        let counted = makings.clone();
        let value = OnFirstUse::new(move || {
            let making = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                match making {
                    1 => Err("the secret store did not answer".to_owned()),
                    n => Ok(n),
                }
            }
        });
        assert_eq!(
            makings.load(Ordering::SeqCst),
            0,
            "nothing is made before its first use"
        );
        let failed = value.get().await.unwrap_err();
        assert_eq!(failed.problem().status, 503);
        assert_eq!(*value.get().await.unwrap(), 2, "a failed making is tried again");
        assert_eq!(*value.get().await.unwrap(), 2);
        assert_eq!(makings.load(Ordering::SeqCst), 2, "made once it succeeded");
        assert_eq!(*OnFirstUse::ready(7).get().await.unwrap(), 7);
    }
}
