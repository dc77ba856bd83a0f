//! OpenAI's Images API (`POST /images/generations`) for the catalogue's `openai` models
//! (domain/catalogue.rs, [`ModelEntry`]).
//!
//! Images come back in the answer itself, base64-encoded, so there is no run to resume and no
//! output URL to fetch: one call makes `n` images and ends. A model that makes fewer images a call
//! than a request asks for (`dall-e-3` makes one) gets further calls, run side by side within the
//! same budget. Each call's timeout is the budget left less a reserve; with too little left, no
//! call is started. The decoded bytes go through [`inspect`]: the format is read from the image,
//! never taken from the answer. The token is sent only to the configured API, over https unless
//! local URLs are allowed, and never shows in an error.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::ProviderSettings;
use super::inspect::inspect;
use crate::adapters::fetch::retry_after;
use crate::adapters::settings::ConfigError;
use crate::domain::catalogue::{ModelEntry, Provider, Size, fit_size};
use crate::domain::format::OutputFormat;
use crate::domain::generation::GenerateRequest;
use crate::domain::retry::Budget;
use crate::domain::secret::Secret;
use crate::ports::{GeneratedImage, ModelError};

pub const DEFAULT_API_BASE_URL: &str = "https://api.openai.com/v1";
/// Kept back from the budget for what follows the call (storing the images).
const RESERVE: Duration = Duration::from_secs(1);
/// The least time a call is started with: less cannot make an image.
const MIN_CALL: Duration = Duration::from_secs(2);
/// The longest a call may take, whatever the budget: a GPT image call takes 30–60 s, a high
/// quality one longer.
const MAX_CALL: Duration = Duration::from_secs(240);
/// The largest answer read: ten 1536x1024 PNGs in base64 are well under it.
const MAX_ANSWER_BYTES: usize = 128 * 1024 * 1024;
/// How much of an unreadable error body goes into a message.
const MAX_DETAIL_CHARS: usize = 500;

#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    pub api_base_url: Url,
    pub token: Secret,
    pub allow_local_urls: bool,
}

#[derive(Debug, Clone)]
pub struct OpenAiModel {
    api: reqwest::Client,
    generations: Url,
    authorization: HeaderValue,
    /// Kept to strip it from anything the API echoes back.
    token: Secret,
}

/// The two families of the Images API, which take different parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `gpt-image-*`: always answers `b64_json`, takes `output_format`.
    GptImage,
    /// `dall-e-*`: answers URLs unless asked for `b64_json`, takes no `output_format`.
    DallE,
}

impl Family {
    fn of(provider_model: &str) -> Self {
        if provider_model.starts_with("dall-e") {
            Family::DallE
        } else {
            Family::GptImage
        }
    }
}

/// The API's name for a format (`jpeg`, where ours is `jpg`).
fn api_format(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Png => "png",
        OutputFormat::Jpg => "jpeg",
        OutputFormat::Webp => "webp",
    }
}

/// How many images each call makes: `max_outputs` at most, the rest in further calls.
fn batches(wanted: u32, max_outputs: u32) -> Vec<u32> {
    let per_call = max_outputs.max(1);
    let mut left = wanted;
    let mut calls = Vec::new();
    while left > 0 {
        let n = left.min(per_call);
        calls.push(n);
        left -= n;
    }
    calls
}

/// The body of one call making `n` images at `size`.
fn request_body(entry: &ModelEntry, request: &GenerateRequest, n: u32, size: Size) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(entry.provider_model));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("n".into(), json!(n));
    body.insert("size".into(), json!(size.to_string()));
    match Family::of(&entry.provider_model) {
        Family::GptImage => {
            body.insert("output_format".into(), json!(api_format(request.output_format)));
        }
        Family::DallE => {
            body.insert("response_format".into(), json!("b64_json"));
        }
    }
    Value::Object(body)
}

/// The size a request is made at: the entry's nearest allowed size, or its own when the entry
/// takes any.
fn size_for(entry: &ModelEntry, request: &GenerateRequest) -> Result<Size, ModelError> {
    match fit_size(&entry.sizes, request.width, request.height) {
        Ok(Some(size)) => Ok(size),
        Ok(None) => Ok(Size {
            width: request.width,
            height: request.height,
        }),
        Err(message) => Err(ModelError::Permanent {
            code: "invalid_size".into(),
            message,
        }),
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<Datum>,
}

#[derive(Debug, Deserialize)]
struct Datum {
    b64_json: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

fn malformed(detail: impl std::fmt::Display) -> ModelError {
    ModelError::Transient {
        message: format!("OpenAI sent a malformed answer: {detail}"),
        retry_after: None,
    }
}

/// The images of a 2xx answer to a call asking for `n`.
fn decode_answer(text: &str, n: u32) -> Result<Vec<GeneratedImage>, ModelError> {
    let answer: Answer = serde_json::from_str(text).map_err(|e| malformed(format!("unreadable JSON: {e}")))?;
    if answer.data.len() < n as usize {
        return Err(malformed(format!("{} images of the {n} asked", answer.data.len())));
    }
    answer
        .data
        .into_iter()
        .take(n as usize)
        .map(|datum| {
            let encoded = datum.b64_json.ok_or_else(|| malformed("an image without b64_json"))?;
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|e| malformed(format!("b64_json is not base64: {e}")))?;
            inspect(bytes)
        })
        .collect()
}

/// The delay a throttled answer asks for: `retry-after-ms` if given, else `retry-after`.
fn throttle_delay(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| retry_after(headers))
}

/// `text` with the token, and anything shaped like an OpenAI key (`sk-…`, which the API's 401
/// echoes half-masked), blotted out.
fn redact(text: &str, token: &Secret) -> String {
    let secret = token.expose();
    let text = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    };
    text.split(' ')
        .map(|word| if word.starts_with("sk-") { "sk-***" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Maps an error answer (`{"error":{"message","type","param","code"}}`): throttling and 5xx are
/// transient, a refused token is our configuration, a content filter and any other 4xx the
/// model's verdict on this input.
fn api_error(status: StatusCode, headers: &HeaderMap, body: &str, token: &Secret) -> ModelError {
    let error = serde_json::from_str::<ErrorBody>(body).map(|b| b.error).ok();
    let code = error.as_ref().and_then(|e| e.code.clone());
    let kind = error.as_ref().and_then(|e| e.kind.clone());
    let message = error
        .and_then(|e| e.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| body.chars().take(MAX_DETAIL_CHARS).collect());
    let message = redact(&message, token);
    let label = code.clone().or(kind).unwrap_or_else(|| "no code".into());
    match status {
        // Out of credit is not throttling: no retry helps until the account is topped up.
        StatusCode::TOO_MANY_REQUESTS if code.as_deref() == Some("insufficient_quota") => ModelError::Configuration {
            message: format!("OpenAI refused the request for want of credit ({status}, {label}): {message}"),
        },
        StatusCode::TOO_MANY_REQUESTS => ModelError::Transient {
            message: format!("OpenAI throttled the request ({label}): {message}"),
            retry_after: throttle_delay(headers),
        },
        status if status.is_server_error() => ModelError::Transient {
            message: format!("OpenAI answered {status} ({label}): {message}"),
            retry_after: throttle_delay(headers),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ModelError::Configuration {
            message: format!("OpenAI refused the API key ({status}, {label}): {message}"),
        },
        _ if matches!(code.as_deref(), Some("content_policy_violation" | "moderation_blocked")) => {
            ModelError::Permanent {
                code: "content_filtered".into(),
                message,
            }
        }
        status => ModelError::Permanent {
            code: "model_rejected_input".into(),
            message: format!("OpenAI rejected the request ({status}, {label}): {message}"),
        },
    }
}

impl OpenAiModel {
    /// At cold start, from the providers' settings; its token is read once, here.
    pub async fn start(settings: &ProviderSettings, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let access = &settings.openai;
        Self::new(OpenAiSettings {
            api_base_url: access.api_base_url.clone(),
            token: access.token(sdk).await?,
            allow_local_urls: settings.allow_local_urls,
        })
        .map_err(ConfigError::Startup)
    }

    pub fn new(settings: OpenAiSettings) -> Result<Self, String> {
        if settings.api_base_url.scheme() != "https" && !settings.allow_local_urls {
            return Err("the OpenAI API URL must be https: the key travels with every call".to_owned());
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", settings.token.expose()))
            .map_err(|_| "the OpenAI API key holds characters a header cannot carry".to_owned())?;
        // Kept out of debug output and logs.
        authorization.set_sensitive(true);
        let api = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("mediagen/", env!("CARGO_PKG_VERSION")))
            // The key must not follow a redirect elsewhere; the API does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        let mut base = settings.api_base_url;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let generations = base
            .join("images/generations")
            .map_err(|e| format!("bad OpenAI API URL: {e}"))?;
        Ok(Self {
            api,
            generations,
            authorization,
            token: settings.token,
        })
    }

    /// The least time an attempt needs to start a call.
    pub fn min_budget(&self) -> Duration {
        RESERVE + MIN_CALL
    }

    /// Runs `entry.provider_model` for the whole request: one image per requested output.
    pub async fn generate(
        &self,
        entry: &ModelEntry,
        request: &GenerateRequest,
        budget: &Budget,
    ) -> Result<Vec<GeneratedImage>, ModelError> {
        if entry.provider != Provider::OpenAi {
            return Err(ModelError::Permanent {
                code: "internal".into(),
                message: format!("the model {} is not an OpenAI model", entry.name),
            });
        }
        let size = size_for(entry, request)?;
        let calls = batches(request.num_outputs, entry.max_outputs)
            .into_iter()
            .map(|n| self.call(request_body(entry, request, n, size), n, budget));
        let answers = futures::future::try_join_all(calls).await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// One call to `POST /images/generations` asking for `n` images.
    async fn call(&self, body: Value, n: u32, budget: &Budget) -> Result<Vec<GeneratedImage>, ModelError> {
        let usable = budget.remaining().saturating_sub(RESERVE);
        if usable < MIN_CALL {
            return Err(ModelError::Transient {
                message: "no time left in this invocation to ask OpenAI for an image".into(),
                retry_after: None,
            });
        }
        let timeout = usable.min(MAX_CALL);
        let unanswered = |e: reqwest::Error| ModelError::Transient {
            message: if e.is_timeout() {
                format!("OpenAI did not answer within {timeout:?}")
            } else {
                format!(
                    "OpenAI did not answer: {}",
                    redact(&crate::adapters::describe_error(&e), &self.token)
                )
            },
            retry_after: None,
        };
        let mut response = self
            .api
            .post(self.generations.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(unanswered)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unanswered)? {
            if raw.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ModelError::Permanent {
                    code: "output_too_large".into(),
                    message: format!("OpenAI's answer is larger than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            raw.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&raw);
        if !status.is_success() {
            return Err(api_error(status, &headers, &text, &self.token));
        }
        decode_answer(&text, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;

    fn entry(provider_model: &str, sizes: &[&str], max_outputs: u32) -> ModelEntry {
        ModelEntry {
            name: provider_model.into(),
            provider: Provider::OpenAi,
            provider_model: provider_model.into(),
            sizes: sizes.iter().map(|s| s.parse().unwrap()).collect(),
            formats: OutputFormat::ALL.to_vec(),
            max_outputs,
            price_per_image: 40_000,
            price_source: "test".into(),
            fallback: Vec::new(),
            rate_per_minute: None,
        }
    }

    fn gpt_image() -> ModelEntry {
        entry("gpt-image-1", &["1024x1024", "1536x1024", "1024x1536"], 10)
    }

    fn dall_e_3() -> ModelEntry {
        entry("dall-e-3", &["1024x1024", "1792x1024", "1024x1792"], 1)
    }

    fn request(width: u32, height: u32, format: OutputFormat) -> GenerateRequest {
        GenerateRequest {
            prompt: "a fox".into(),
            width,
            height,
            output_format: format,
            ..sample_request()
        }
    }

    #[test]
    fn gpt_image_models_take_output_format_and_no_response_format() {
        let request = request(1440, 960, OutputFormat::Jpg);
        let size = size_for(&gpt_image(), &request).unwrap();
        assert_eq!(
            request_body(&gpt_image(), &request, 2, size),
            json!({"model": "gpt-image-1", "prompt": "a fox", "n": 2, "size": "1536x1024", "output_format": "jpeg"})
        );
        let webp = GenerateRequest {
            output_format: OutputFormat::Webp,
            ..request
        };
        assert_eq!(request_body(&gpt_image(), &webp, 1, size)["output_format"], "webp");
    }

    #[test]
    fn dall_e_models_ask_for_base64_and_take_no_output_format() {
        let request = request(1024, 1440, OutputFormat::Png);
        let size = size_for(&dall_e_3(), &request).unwrap();
        assert_eq!(
            request_body(&dall_e_3(), &request, 1, size),
            json!({"model": "dall-e-3", "prompt": "a fox", "n": 1, "size": "1024x1792", "response_format": "b64_json"})
        );
    }

    #[test]
    fn sizes_are_fitted_or_refused() {
        let square = request(512, 512, OutputFormat::Png);
        assert_eq!(size_for(&gpt_image(), &square).unwrap().to_string(), "1024x1024");
        let wide = request(1440, 480, OutputFormat::Png);
        let err = size_for(&gpt_image(), &wide).unwrap_err();
        assert!(
            matches!(err, ModelError::Permanent { ref code, .. } if code == "invalid_size"),
            "{err}"
        );
        // An entry with no sizes takes the request's own.
        let any = entry("gpt-image-1", &[], 10);
        assert_eq!(size_for(&any, &wide).unwrap().to_string(), "1440x480");
    }

    #[test]
    fn outputs_are_split_into_calls_of_at_most_max_outputs() {
        assert_eq!(batches(4, 1), vec![1, 1, 1, 1]);
        assert_eq!(batches(4, 10), vec![4]);
        assert_eq!(batches(5, 2), vec![2, 2, 1]);
        assert_eq!(batches(2, 0), vec![1, 1]);
        assert!(batches(0, 4).is_empty());
    }

    fn error_body(message: &str, kind: &str, code: Option<&str>) -> String {
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
    }

    fn token() -> Secret {
        Secret::new("sk-test-topsecret")
    }

    #[test]
    fn throttling_and_server_errors_are_transient_with_the_delay_asked() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let body = error_body("Rate limit reached", "requests", Some("rate_limit_exceeded"));
        let err = api_error(StatusCode::TOO_MANY_REQUESTS, &headers, &body, &token());
        assert!(
            matches!(err, ModelError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
            "{err:?}"
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        let err = api_error(StatusCode::TOO_MANY_REQUESTS, &headers, &body, &token());
        assert!(
            matches!(err, ModelError::Transient { retry_after: Some(d), .. } if d == Duration::from_millis(1500)),
            "{err:?}"
        );
        let err = api_error(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            "<html>bad gateway</html>",
            &token(),
        );
        assert!(
            matches!(err, ModelError::Transient { retry_after: None, .. }),
            "{err:?}"
        );
        let quota = error_body(
            "You exceeded your current quota",
            "insufficient_quota",
            Some("insufficient_quota"),
        );
        let err = api_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &quota, &token());
        assert!(matches!(err, ModelError::Configuration { .. }), "{err:?}");
    }

    #[test]
    fn content_filters_and_other_refusals_are_permanent() {
        for code in ["content_policy_violation", "moderation_blocked"] {
            let body = error_body(
                "Your request was rejected by the safety system.",
                "image_generation_user_error",
                Some(code),
            );
            let err = api_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &body, &token());
            assert_eq!(
                err,
                ModelError::Permanent {
                    code: "content_filtered".into(),
                    message: "Your request was rejected by the safety system.".into()
                }
            );
        }
        let body = error_body("Invalid size", "invalid_request_error", None);
        let err = api_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &body, &token());
        assert!(
            matches!(err, ModelError::Permanent { ref code, ref message } if code == "model_rejected_input" && message.contains("Invalid size")),
            "{err:?}"
        );
    }

    #[test]
    fn a_refused_key_is_configuration_and_never_echoed() {
        let body = error_body(
            "Incorrect API key provided: sk-test-topsecret. Or sk-tes*********cret.",
            "invalid_request_error",
            Some("invalid_api_key"),
        );
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let err = api_error(status, &HeaderMap::new(), &body, &token());
            assert!(matches!(err, ModelError::Configuration { .. }), "{err:?}");
            let text = err.to_string();
            assert!(!text.contains("topsecret") && !text.contains("sk-tes"), "{text}");
        }
    }

    #[test]
    fn answers_without_images_are_malformed() {
        for text in [
            "not json",
            r#"{"data": []}"#,
            r#"{"data": [{"url": "https://x"}]}"#,
            r#"{"data": [{"b64_json": "!!"}]}"#,
        ] {
            let err = decode_answer(text, 1).unwrap_err();
            assert!(matches!(err, ModelError::Transient { .. }), "{text}: {err:?}");
        }
        let png = super::super::local::render(&request(256, 256, OutputFormat::Png), 0)
            .unwrap()
            .bytes;
        let one = json!({"data": [{"b64_json": STANDARD.encode(&png)}]}).to_string();
        let images = decode_answer(&one, 1).unwrap();
        assert_eq!((images[0].format, images[0].width), (OutputFormat::Png, 256));
        assert!(matches!(decode_answer(&one, 2), Err(ModelError::Transient { .. })));
    }

    #[test]
    fn only_https_unless_local_urls_are_allowed_and_the_key_stays_hidden() {
        let settings = |url: &str, allow_local_urls| OpenAiSettings {
            api_base_url: Url::parse(url).unwrap(),
            token: token(),
            allow_local_urls,
        };
        assert!(OpenAiModel::new(settings("http://127.0.0.1:9/v1", false)).is_err());
        let model = OpenAiModel::new(settings("http://127.0.0.1:9/v1", true)).unwrap();
        assert_eq!(model.generations.as_str(), "http://127.0.0.1:9/v1/images/generations");
        let model = OpenAiModel::new(settings(DEFAULT_API_BASE_URL, false)).unwrap();
        assert_eq!(
            model.generations.as_str(),
            "https://api.openai.com/v1/images/generations"
        );
        assert!(!format!("{model:?}").contains("topsecret"));
    }
}
