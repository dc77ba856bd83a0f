//! The HTTP client of the mediagen API (docs/design.md, "HTTP contract"), and how its answers
//! become [`Error`]s.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Source;
use crate::error::Error;

/// The longest `Prefer: wait` the API honours.
pub const MAX_WAIT_SECONDS: u64 = 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request is about, to word a 404.
#[derive(Debug, Clone)]
pub enum Subject {
    Nothing,
    Job(String),
    Media(String),
}

/// `POST /media/generate`'s body. Absent options are left out, so the API's defaults apply.
#[derive(Debug, Serialize)]
pub struct GenerateRequest {
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_outputs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Accepted {
    pub job_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A job as `GET /media/status/{id}`, `GET /media/jobs/{id}` or the listing shows it; fields
/// only some of them have are optional.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub status: String,
    #[serde(default)]
    pub attempts: u32,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub error: Option<JobError>,
    pub prompt: Option<String>,
    pub model: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub num_outputs: Option<u32>,
    pub seed: Option<u64>,
    pub output_format: Option<String>,
    #[serde(default)]
    pub media: Vec<Media>,
    #[serde(default)]
    pub cancel_requested: bool,
}

impl Job {
    pub fn is_final(&self) -> bool {
        is_final(&self.status)
    }
}

pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled")
}

#[derive(Debug, Clone, Deserialize)]
pub struct Media {
    pub media_id: String,
    #[serde(default)]
    pub index: u32,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct JobList {
    #[serde(default)]
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/models`: OpenAI's list shape, with what each model costs and makes
/// (functions/core/src/entrypoints/views.rs, `ModelListView`).
#[derive(Debug, Deserialize)]
pub struct ModelList {
    #[serde(default)]
    pub data: Vec<Model>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub id: String,
    /// The provider that runs it.
    #[serde(default)]
    pub owned_by: String,
    #[serde(default)]
    pub default: bool,
    /// `WIDTHxHEIGHT`; empty for any size within the API's rules.
    #[serde(default)]
    pub sizes: Vec<String>,
    #[serde(default)]
    pub price_per_image_usd: Option<f64>,
}

/// Where an image can be downloaded from, for a while.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ContentLink {
    pub url: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// An answer: its parsed body, and the raw JSON for `--json`.
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    pub raw: Value,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl<T> Answer<T> {
    /// `Retry-After` in seconds, when the API sent one.
    pub fn retry_after(&self) -> Option<u64> {
        retry_after(&self.headers)
    }
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// A problem+json body (RFC 9457).
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
}

impl Problem {
    /// `invalid-request` for `urn:mediagen:problem:invalid-request`: only our own problems.
    pub fn slug(&self) -> Option<&str> {
        self.kind.as_deref()?.strip_prefix("urn:mediagen:problem:")
    }

    /// `field: message; field: message`, or the detail, or the title.
    pub fn explain(&self) -> String {
        if !self.errors.is_empty() {
            return self
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
        }
        self.detail.clone().or_else(|| self.title.clone()).unwrap_or_default()
    }
}

pub struct Api {
    http: reqwest::Client,
    download: reqwest::Client,
    base: String,
    key: Option<(String, Source)>,
    config_path: Option<String>,
}

impl Api {
    pub fn new(base: &str, key: Option<(String, Source)>, config_path: Option<String>) -> Result<Self, Error> {
        let agent = concat!("mediagen-cli/", env!("CARGO_PKG_VERSION"));
        // API answers are never followed: `content` is asked for JSON, and a redirect would carry
        // the key along.
        let http = reqwest::Client::builder()
            .user_agent(agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Other(format!("cannot set up HTTP: {e}")))?;
        let download = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| Error::Other(format!("cannot set up HTTP: {e}")))?;
        Ok(Self {
            http,
            download,
            base: base.trim_end_matches('/').to_owned(),
            key,
            config_path,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.keyed(self.http.request(method, format!("{}{path}", self.base)))
            .timeout(REQUEST_TIMEOUT)
    }

    /// A request whose answer may last as long as the job's progress stream does: no overall
    /// timeout, the connect timeout still.
    pub fn streaming_request(&self, path: &str) -> RequestBuilder {
        self.keyed(self.http.get(format!("{}{path}", self.base)))
            .header(ACCEPT, "text/event-stream")
    }

    fn keyed(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.key {
            Some((key, _)) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends a request and parses a JSON answer with one of `ok` statuses; anything else is an
    /// [`Error`].
    async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
        subject: &Subject,
        ok: &[StatusCode],
    ) -> Result<Answer<T>, Error> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        if !ok.contains(&status) {
            return Err(self.status_error(what, subject, status, &headers, &body));
        }
        let raw: Value = serde_json::from_slice(&body).map_err(|_| Error::NotOurApi {
            url: self.base.clone(),
            reason: format!("{what} answered {status} with {}, not JSON", content_type(&headers)),
        })?;
        let value = serde_json::from_value(raw.clone())
            .map_err(|e| Error::Protocol(format!("{what} answered {status} with an unexpected body: {e}")))?;
        Ok(Answer {
            value,
            raw,
            status,
            headers,
        })
    }

    /// `POST /media/generate` → `202`.
    pub async fn submit(
        &self,
        body: &GenerateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Answer<Accepted>, Error> {
        let mut request = self.request(Method::POST, "/media/generate").json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.call(
            request,
            "POST /media/generate",
            &Subject::Nothing,
            &[StatusCode::ACCEPTED, StatusCode::OK],
        )
        .await
    }

    /// `GET /media/status/{id}`.
    pub async fn status(&self, job_id: &str) -> Result<Answer<Job>, Error> {
        let path = format!("/media/status/{job_id}");
        let what = format!("GET {path}");
        self.call(
            self.request(Method::GET, &path),
            &what,
            &Subject::Job(job_id.into()),
            &[StatusCode::OK],
        )
        .await
    }

    /// `GET /media/jobs/{id}`, held by the API up to `wait` seconds until the job is final.
    /// The answer says whether the API honoured the wait (`Preference-Applied: wait`).
    pub async fn job(&self, job_id: &str, wait: Option<u64>) -> Result<(Answer<Job>, bool), Error> {
        let path = format!("/media/jobs/{job_id}");
        let what = format!("GET {path}");
        let mut request = self.request(Method::GET, &path);
        if let Some(seconds) = wait {
            let seconds = seconds.min(MAX_WAIT_SECONDS);
            request = request
                .header("Prefer", format!("wait={seconds}"))
                .timeout(REQUEST_TIMEOUT + Duration::from_secs(seconds));
        }
        let answer: Answer<Job> = self
            .call(request, &what, &Subject::Job(job_id.into()), &[StatusCode::OK])
            .await?;
        let applied = wait.is_some()
            && answer
                .headers
                .get_all("Preference-Applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|v| {
                    v.trim()
                        .split('=')
                        .next()
                        .is_some_and(|name| name.trim().eq_ignore_ascii_case("wait"))
                });
        Ok((answer, applied))
    }

    /// `GET /media/jobs?status=&limit=&cursor=`.
    pub async fn jobs(
        &self,
        status: Option<&str>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Answer<JobList>, Error> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(status) = status {
            query.push(("status", status.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let request = self.request(Method::GET, "/media/jobs").query(&query);
        self.call(request, "GET /media/jobs", &Subject::Nothing, &[StatusCode::OK])
            .await
    }

    /// `POST /media/jobs/{id}/cancel` → `200` canceled, or `202` cancel requested.
    pub async fn cancel(&self, job_id: &str) -> Result<Answer<Job>, Error> {
        let path = format!("/media/jobs/{job_id}/cancel");
        let what = format!("POST {path}");
        self.call(
            self.request(Method::POST, &path),
            &what,
            &Subject::Job(job_id.into()),
            &[StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await
    }

    /// `GET /v1/models`: public, but the key is sent if there is one.
    pub async fn models(&self) -> Result<Answer<ModelList>, Error> {
        self.call(
            self.request(Method::GET, "/v1/models"),
            "GET /v1/models",
            &Subject::Nothing,
            &[StatusCode::OK],
        )
        .await
    }

    /// `GET /media/content/{id}` with `Accept: application/json`: the presigned URL. A `302`
    /// (an API that ignores the `Accept`) gives its `Location` instead.
    pub async fn content(&self, media_id: &str) -> Result<ContentLink, Error> {
        let path = format!("/media/content/{media_id}");
        let what = format!("GET {path}");
        let request = self.request(Method::GET, &path).header(ACCEPT, "application/json");
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(LOCATION).and_then(|v| v.to_str().ok())
        {
            let url = reqwest::Url::parse(&self.base)
                .and_then(|base| base.join(location))
                .map_err(|e| Error::Protocol(format!("{what} redirected to a bad URL: {e}")))?;
            return Ok(ContentLink {
                url: url.to_string(),
                expires_at: None,
                content_type: None,
            });
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        if status != StatusCode::OK {
            return Err(self.status_error(&what, &Subject::Media(media_id.into()), status, &headers, &body));
        }
        serde_json::from_slice(&body).map_err(|_| Error::NotOurApi {
            url: self.base.clone(),
            reason: format!(
                "{what} answered {status} with {}, not a JSON link",
                content_type(&headers)
            ),
        })
    }

    /// Downloads a presigned URL: a plain GET, without the API key (the URL is its own
    /// authorisation, and S3 refuses a second one).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, Error> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| url.to_owned());
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: host.clone(),
            reason: root_cause(&e),
        };
        let response = self.download.get(url).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Server(format!(
                "the image's storage at {host} answered {status} (the link may have expired: try again)"
            )));
        }
        Ok(response.bytes().await.map_err(unreachable)?.to_vec())
    }

    pub fn transport_error(&self, error: &reqwest::Error) -> Error {
        if error.is_timeout() {
            return Error::Unreachable {
                url: self.base.clone(),
                reason: "no answer in time".into(),
            };
        }
        if error.is_connect() || error.is_request() {
            return Error::Unreachable {
                url: self.base.clone(),
                reason: root_cause(error),
            };
        }
        Error::Protocol(format!("the connection to {} broke: {}", self.base, root_cause(error)))
    }

    /// Turns an answer that is not the one asked for into an error that says what to do.
    pub fn status_error(
        &self,
        what: &str,
        subject: &Subject,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Error {
        let problem: Option<Problem> = serde_json::from_slice::<Problem>(body)
            .ok()
            .filter(|p| p.kind.is_some() || p.title.is_some() || p.detail.is_some());
        let slug = problem.as_ref().and_then(|p| p.slug()).map(str::to_owned);
        let explained = problem.as_ref().map(Problem::explain).filter(|e| !e.is_empty());
        let code = status.as_u16();
        let label = match &slug {
            Some(slug) => format!("{code} {slug}"),
            None => code.to_string(),
        };
        let not_ours = || Error::NotOurApi {
            url: self.base.clone(),
            reason: format!("{what} answered {status} ({})", content_type(headers)),
        };
        match code {
            300..=399 => Error::NotOurApi {
                url: self.base.clone(),
                reason: match headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
                    Some(location) => format!("{what} redirects to {location}: use that address"),
                    None => format!("{what} answered {status}"),
                },
            },
            401 | 403 => {
                if code == 403 && slug.is_none() {
                    return not_ours();
                }
                let reason = explained.unwrap_or_else(|| "refused".into());
                Error::Auth(match &self.key {
                    None => format!(
                        "the API wants a key ({label}: {reason}): pass --api-key, set MEDIAGEN_API_KEY or put api_key = \"...\" in {}",
                        self.config_path.as_deref().unwrap_or("the config file")
                    ),
                    Some((_, source)) => {
                        let from = match source {
                            Source::Flag => "given with --api-key".to_owned(),
                            Source::Env => "from MEDIAGEN_API_KEY".to_owned(),
                            Source::File => {
                                format!("from {}", self.config_path.as_deref().unwrap_or("the config file"))
                            }
                        };
                        format!("the API refused the key {from} ({label}: {reason})")
                    }
                })
            }
            404 if slug.as_deref() == Some("not-found") => Error::NotFound(match subject {
                Subject::Job(id) => format!("no job {id} (404 not-found)"),
                Subject::Media(id) => format!("no image {id} (404 not-found)"),
                Subject::Nothing => format!("{what}: {}", explained.unwrap_or_else(|| "not found".into())),
            }),
            404 if slug.as_deref() == Some("no-route") => Error::NoRoute {
                url: self.base.clone(),
                what: what.into(),
            },
            400 | 413 | 415 | 422 if slug.is_some() => {
                Error::Invalid(explained.unwrap_or_else(|| format!("{what} answered {status}")))
            }
            409 if slug.is_some() => Error::Conflict(match subject {
                Subject::Job(id) => format!(
                    "cannot cancel job {id} ({label}: {})",
                    explained.unwrap_or_else(|| "it is already final".into())
                ),
                _ => format!("{what}: {label}: {}", explained.unwrap_or_default()),
            }),
            429 | 500..=599 => {
                let retry = retry_after(headers)
                    .map(|s| format!("; try again in {s}s"))
                    .unwrap_or_default();
                let reason = explained.map(|e| format!(": {e}")).unwrap_or_default();
                if code == 429 {
                    Error::Server(format!("the API is limiting requests ({label}{reason}){retry}"))
                } else {
                    Error::Server(format!("the API failed to answer {what} ({label}{reason}){retry}"))
                }
            }
            _ if slug.is_none() => not_ours(),
            _ => Error::Protocol(format!("{what} answered {label}: {}", explained.unwrap_or_default())),
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(value) => value.split(';').next().unwrap_or(value).trim().to_owned(),
        None => "no content type".to_owned(),
    }
}

/// The innermost cause, which says what happened ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.contains("Connection refused") {
        return "connection refused".into();
    }
    if text.contains("failed to lookup address") || text.contains("Name or service not known") {
        return "unknown host".into();
    }
    if text.contains("corrupt message") || text.contains("InvalidContentType") {
        return format!("TLS failed: {text}; does it speak http:// rather than https://?");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(key: Option<(String, Source)>) -> Api {
        Api::new(
            "http://api.test/prod",
            key,
            Some("/home/u/.config/mediagen/config.toml".into()),
        )
        .unwrap()
    }

    fn problem_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/problem+json".parse().unwrap());
        headers
    }

    fn error(api: &Api, subject: Subject, status: u16, body: &str) -> Error {
        api.status_error(
            "GET /x",
            &subject,
            StatusCode::from_u16(status).unwrap(),
            &problem_headers(),
            body.as_bytes(),
        )
    }

    #[test]
    fn a_validation_problem_lists_each_field() {
        let body = r#"{"type":"urn:mediagen:problem:invalid-request","title":"Invalid request","status":422,
            "detail":"check these fields: width, prompt","errors":[{"field":"width","message":"must be a multiple of 32"},
            {"field":"prompt","message":"must not be empty"}]}"#;
        let error = error(&api(None), Subject::Nothing, 422, body);
        assert_eq!(error.exit_code(), 4);
        assert_eq!(
            error.to_string(),
            "invalid request: width: must be a multiple of 32; prompt: must not be empty"
        );
    }

    #[test]
    fn a_refused_key_says_where_it_came_from() {
        let body = r#"{"type":"urn:mediagen:problem:unauthorized","title":"Unauthorized","status":401,"detail":"the API key is not valid"}"#;
        let error = error(&api(Some(("k".into(), Source::Env))), Subject::Nothing, 401, body);
        assert_eq!(error.exit_code(), 3);
        assert_eq!(
            error.to_string(),
            "the API refused the key from MEDIAGEN_API_KEY (401 unauthorized: the API key is not valid)"
        );
        let error = self::error(&api(None), Subject::Nothing, 401, body);
        assert!(error.to_string().starts_with("the API wants a key"), "{error}");
        assert!(
            error.to_string().contains("/home/u/.config/mediagen/config.toml"),
            "{error}"
        );
    }

    #[test]
    fn not_found_no_route_and_foreign_answers_differ() {
        let api = api(None);
        let nf = r#"{"type":"urn:mediagen:problem:not-found","title":"Not found","status":404}"#;
        let error = error(&api, Subject::Job("j1".into()), 404, nf);
        assert_eq!(
            (error.exit_code(), error.to_string()),
            (6, "no job j1 (404 not-found)".into())
        );

        let nr = r#"{"type":"urn:mediagen:problem:no-route","title":"No route","status":404}"#;
        let error = self::error(&api, Subject::Nothing, 404, nr);
        assert_eq!(error.exit_code(), 7);
        assert!(
            error
                .to_string()
                .starts_with("http://api.test/prod has no route for GET /x (404 no-route)"),
            "{error}"
        );

        let mut html = HeaderMap::new();
        html.insert(CONTENT_TYPE, "text/html; charset=utf-8".parse().unwrap());
        let error = api.status_error("GET /x", &Subject::Nothing, StatusCode::NOT_FOUND, &html, b"<html>");
        assert_eq!(error.exit_code(), 7);
        assert_eq!(
            error.to_string(),
            "http://api.test/prod does not look like the mediagen API: GET /x answered 404 Not Found (text/html); \
             check --url or MEDIAGEN_API_URL"
        );
    }

    #[test]
    fn a_redirect_names_where_to() {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, "https://api.test/prod/media/jobs".parse().unwrap());
        let error = api(None).status_error(
            "GET /media/jobs",
            &Subject::Nothing,
            StatusCode::MOVED_PERMANENTLY,
            &headers,
            b"",
        );
        assert_eq!(error.exit_code(), 7);
        assert!(
            error
                .to_string()
                .contains("GET /media/jobs redirects to https://api.test/prod/media/jobs: use that address"),
            "{error}"
        );
    }

    #[test]
    fn busy_answers_say_when_to_try_again() {
        let api = api(None);
        let mut headers = problem_headers();
        headers.insert(RETRY_AFTER, "5".parse().unwrap());
        let body = br#"{"type":"urn:mediagen:problem:queue-unavailable","title":"Queue unavailable","status":503,"detail":"the job could not be queued"}"#;
        let error = api.status_error(
            "POST /media/generate",
            &Subject::Nothing,
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            body,
        );
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.to_string(),
            "the API failed to answer POST /media/generate (503 queue-unavailable: the job could not be queued); try again in 5s"
        );
    }

    #[test]
    fn a_final_job_cannot_be_canceled() {
        let body = r#"{"type":"urn:mediagen:problem:job-final","title":"Conflict","status":409,"detail":"the job is already succeeded"}"#;
        let error = error(&api(None), Subject::Job("j1".into()), 409, body);
        assert_eq!(error.exit_code(), 8);
        assert_eq!(
            error.to_string(),
            "cannot cancel job j1 (409 job-final: the job is already succeeded)"
        );
    }
}
