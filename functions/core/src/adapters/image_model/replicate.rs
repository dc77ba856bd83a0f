//! The Replicate predictions API as an [`ImageModel`] (docs/design.md, "Image models").
//!
//! A prediction is created with `Prefer: wait` of a few seconds, and the client waits a few
//! seconds longer than that, so that an answer at the end of the wait is not lost (with it the
//! prediction's id, and a retry would pay for a second one). Its id is noted on the job at once
//! ([`RunLog`]). If it is not final by then it is polled at `urls.get` for a few seconds more; a
//! prediction still running after that is left to run, and the attempt answers
//! [`ModelError::Pending`]: the job is looked at again later by a delayed message, and no
//! invocation waits for a slow model (docs/design.md, "Slow models"). The next attempt finds the
//! noted prediction and collects it, as it does every noted prediction still usable, instead of
//! starting again. The token goes only to the configured API's origin:
//! a `urls.get` or `urls.cancel` elsewhere is not followed. Outputs are URLs, fetched one at a
//! time through the checked [`Fetcher`], because Replicate deletes them after an hour: the copy in
//! our bucket is the point.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::ProviderSettings;
use super::inspect::inspect;
use crate::adapters::fetch::{FetchError, Fetcher, retry_after};
use crate::adapters::settings::ConfigError;
use crate::domain::catalogue::{ModelRef, SizeInput, Supported};
use crate::domain::generation::GenerateRequest;
use crate::domain::prediction::PredictionStatus;
use crate::domain::retry::Budget;
use crate::domain::secret::Secret;
use crate::ports::{GeneratedImage, ImageModel, ModelError, RunLog};

pub const DEFAULT_API_BASE_URL: &str = "https://api.replicate.com/v1";
/// Kept back from the budget when deciding whether another wait or poll still fits.
const RESERVE: Duration = Duration::from_secs(3);
const FIRST_POLL: Duration = Duration::from_millis(500);
const LONGEST_POLL: Duration = Duration::from_secs(5);
/// The longest a create holds its answer for the prediction to end: a fast model answers in it.
const MAX_WAIT_SECONDS: u64 = 3;
/// How long an attempt polls a prediction after its create before leaving it to run.
const POLL_WINDOW: Duration = Duration::from_secs(3);
/// When a prediction left running is looked at again.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// How long a cancel may take: it is best effort, and runs after the job's final write.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer the client waits for a create than it asks Replicate to hold its answer.
const CREATE_MARGIN: Duration = Duration::from_secs(5);

const ASPECT_RATIOS: [(u32, u32); 11] = [
    (1, 1),
    (16, 9),
    (21, 9),
    (3, 2),
    (2, 3),
    (4, 5),
    (5, 4),
    (3, 4),
    (4, 3),
    (9, 16),
    (9, 21),
];

fn nearest_aspect_ratio(width: u32, height: u32) -> String {
    let wanted = (width as f64 / height as f64).ln();
    let (w, h) = ASPECT_RATIOS
        .iter()
        .min_by(|a, b| {
            let distance = |(w, h): &&(u32, u32)| (wanted - (*w as f64 / *h as f64).ln()).abs();
            distance(a).total_cmp(&distance(b))
        })
        .copied()
        .unwrap_or((1, 1));
    format!("{w}:{h}")
}

/// The model's input for one prediction making `count` images from `seed`.
fn model_input(model: &Supported, request: &GenerateRequest, count: u32, seed: u32) -> Value {
    let mut input = Map::new();
    input.insert("prompt".into(), json!(request.prompt));
    input.insert("seed".into(), json!(seed));
    if model.max_outputs > 1 {
        input.insert("num_outputs".into(), json!(count));
    }
    match model.size {
        SizeInput::AspectRatio => {
            input.insert(
                "aspect_ratio".into(),
                json!(nearest_aspect_ratio(request.width, request.height)),
            );
        }
        SizeInput::CustomAspectRatio => {
            input.insert("aspect_ratio".into(), json!("custom"));
            input.insert("width".into(), json!(request.width));
            input.insert("height".into(), json!(request.height));
        }
        SizeInput::WidthHeight => {
            input.insert("width".into(), json!(request.width));
            input.insert("height".into(), json!(request.height));
        }
    }
    if model.takes_output_format {
        input.insert("output_format".into(), json!(request.output_format.extension()));
    }
    if let (true, Some(negative)) = (model.takes_negative_prompt, &request.negative_prompt) {
        input.insert("negative_prompt".into(), json!(negative));
    }
    Value::Object(input)
}

#[derive(Debug, Clone, Deserialize)]
struct Prediction {
    id: String,
    status: PredictionStatus,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    urls: PredictionUrls,
    /// Set once Replicate has deleted the prediction's files (an hour after it ended).
    #[serde(default)]
    data_removed: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PredictionUrls {
    get: Option<String>,
    cancel: Option<String>,
}

impl Prediction {
    /// Whether a noted prediction can still give its outputs.
    fn resumable(&self) -> bool {
        !matches!(self.status, PredictionStatus::Canceled | PredictionStatus::Aborted) && !self.data_removed
    }

    fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// The output URLs of a succeeded prediction: one string, or a list of them.
    fn output_urls(&self) -> Result<Vec<Url>, ModelError> {
        let raw: Vec<&str> = match &self.output {
            Value::String(url) => vec![url.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if raw.is_empty() {
            return Err(ModelError::Permanent {
                code: "model_no_output".into(),
                message: format!("prediction {} succeeded without output URLs", self.id),
            });
        }
        raw.into_iter()
            .map(|url| {
                Url::parse(url).map_err(|e| ModelError::Permanent {
                    code: "model_bad_output".into(),
                    message: format!("prediction {} gave an unusable output URL: {e}", self.id),
                })
            })
            .collect()
    }

    /// The failure of a prediction that ended without success.
    fn failure(&self) -> ModelError {
        let reason = match &self.error {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::Null => format!("the prediction ended {}", json!(self.status)),
            other => other.to_string(),
        };
        let code = match self.status {
            PredictionStatus::Failed => "model_failed",
            _ => "model_canceled",
        };
        ModelError::Permanent {
            code: code.into(),
            message: reason,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplicateSettings {
    pub api_base_url: Url,
    pub token: Secret,
    pub allow_local_urls: bool,
    pub max_output_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ReplicateModel {
    api: reqwest::Client,
    base: Url,
    authorization: HeaderValue,
    outputs: Fetcher,
}

impl ReplicateModel {
    /// At cold start, from the providers' settings; its token is read once, here.
    pub async fn start(settings: &ProviderSettings, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let access = &settings.replicate;
        Self::new(ReplicateSettings {
            api_base_url: access.api_base_url.clone(),
            token: access.token(sdk).await?,
            allow_local_urls: settings.allow_local_urls,
            max_output_bytes: settings.max_output_bytes,
        })
        .map_err(ConfigError::Startup)
    }

    pub fn new(settings: ReplicateSettings) -> Result<Self, String> {
        if settings.api_base_url.scheme() != "https" && !settings.allow_local_urls {
            return Err("REPLICATE_API_BASE_URL must be https: the token travels with every call".to_owned());
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", settings.token.expose()))
            .map_err(|_| "REPLICATE_API_TOKEN holds characters a header cannot carry".to_owned())?;
        // Kept out of debug output and logs.
        authorization.set_sensitive(true);
        let api = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("mediagen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        let outputs = Fetcher::new(settings.allow_local_urls, settings.max_output_bytes)
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        let mut base = settings.api_base_url;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            api,
            base,
            authorization,
            outputs,
        })
    }

    fn endpoint(&self, path: &str) -> Result<Url, ModelError> {
        self.base.join(path).map_err(|e| ModelError::Configuration {
            message: format!("bad Replicate API URL: {e}"),
        })
    }

    /// The URL a prediction names for `what` (`urls.get`, `urls.cancel`) if it is on the API's
    /// own origin, else ours for it: the token must not follow an answer to another host.
    fn prediction_url(&self, named: Option<&str>, id: &str, what: &str) -> Result<Url, ModelError> {
        if let Some(named) = named {
            match Url::parse(named) {
                Ok(url) if url.origin() == self.base.origin() => return Ok(url),
                _ => tracing::warn!(prediction = %id, "a prediction URL off the API's origin is not followed"),
            }
        }
        let id = checked_id(id)?;
        self.endpoint(&format!("predictions/{id}{what}"))
    }

    /// Sends one API request; any answer but a 2xx becomes the matching [`ModelError`].
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        extra: HeaderMap,
        timeout: Duration,
    ) -> Result<Prediction, ModelError> {
        let mut request = self
            .api
            .request(method, url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .headers(extra)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ModelError::Transient {
            message: format!("Replicate did not answer: {}", crate::adapters::describe_error(&e)),
            retry_after: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| ModelError::Transient {
            message: format!("Replicate's answer broke off: {e}"),
            retry_after: None,
        })?;
        if !status.is_success() {
            return Err(api_error(status, &headers, &text));
        }
        serde_json::from_str(&text).map_err(|e| ModelError::Transient {
            message: format!("Replicate answered {status} with an unreadable prediction: {e}"),
            retry_after: None,
        })
    }

    async fn create(&self, model: &ModelRef<'_>, input: Value, budget: &Budget) -> Result<Prediction, ModelError> {
        let usable = budget.remaining().saturating_sub(RESERVE);
        if usable < CREATE_MARGIN + Duration::from_secs(1) {
            return Err(ModelError::Transient {
                message: "no time left in this invocation to start a prediction".into(),
                retry_after: None,
            });
        }
        // Replicate answers when the wait is over at the latest; the client waits the margin
        // longer, so that answer is never lost to the client's own timeout.
        let wait = (usable - CREATE_MARGIN).as_secs().clamp(1, MAX_WAIT_SECONDS);
        let (url, body) = match model.version {
            None => (
                self.endpoint(&format!("models/{}/predictions", model.supported.name))?,
                json!({ "input": input }),
            ),
            Some(version) => (
                self.endpoint("predictions")?,
                json!({ "version": version, "input": input }),
            ),
        };
        let mut headers = HeaderMap::new();
        if let Ok(prefer) = HeaderValue::from_str(&format!("wait={wait}")) {
            headers.insert("prefer", prefer);
        }
        let created = self
            .call(
                Method::POST,
                url,
                Some(&body),
                headers,
                Duration::from_secs(wait) + CREATE_MARGIN,
            )
            .await?;
        checked_id(&created.id)?;
        Ok(created)
    }

    /// A noted prediction as it is now, if it can still give its outputs; `None` if it must be
    /// started again (canceled, its files deleted, unknown to Replicate).
    async fn resume(&self, id: &str, budget: &Budget) -> Result<Option<Prediction>, ModelError> {
        let Ok(url) = self.prediction_url(None, id, "") else {
            return Ok(None);
        };
        let timeout = budget.remaining().saturating_sub(RESERVE).min(Duration::from_secs(10));
        match self.call(Method::GET, url, None, HeaderMap::new(), timeout).await {
            Ok(prediction) if prediction.resumable() => {
                tracing::info!(prediction = %id, status = ?prediction.status, "noted prediction resumed");
                Ok(Some(prediction))
            }
            Ok(prediction) => {
                tracing::info!(prediction = %id, status = ?prediction.status, "noted prediction cannot be resumed");
                Ok(None)
            }
            Err(ModelError::Permanent { message, .. }) => {
                tracing::warn!(prediction = %id, %message, "noted prediction not found");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Polls until the prediction is final. If it is not within [`POLL_WINDOW`] (or the budget),
    /// the prediction is left running: it is noted on the job, and a later attempt collects it.
    async fn settle(&self, mut prediction: Prediction, budget: &Budget) -> Result<Prediction, ModelError> {
        let mut delay = FIRST_POLL;
        let polling = std::time::Instant::now();
        while !prediction.is_final() {
            if budget.remaining() < delay + RESERVE || polling.elapsed() + delay > POLL_WINDOW {
                return Err(ModelError::Pending {
                    message: format!("prediction {} is still {}", prediction.id, json!(prediction.status)),
                    check_after: CHECK_AFTER,
                });
            }
            tokio::time::sleep(delay).await;
            delay = delay.mul_f32(1.5).min(LONGEST_POLL);
            let get = self.prediction_url(prediction.urls.get.as_deref(), &prediction.id, "")?;
            let timeout = budget.remaining().saturating_sub(RESERVE).min(Duration::from_secs(10));
            match self.call(Method::GET, get, None, HeaderMap::new(), timeout).await {
                Ok(latest) => prediction = latest,
                // A failed poll changes nothing about the prediction: poll again.
                Err(err @ ModelError::Transient { .. }) => tracing::warn!(error = %err, "polling failed"),
                Err(err) => {
                    self.cancel(&prediction).await;
                    return Err(err);
                }
            }
        }
        Ok(prediction)
    }

    async fn cancel(&self, prediction: &Prediction) {
        if let Err(err) = self
            .post_cancel(prediction.urls.cancel.as_deref(), &prediction.id)
            .await
        {
            tracing::warn!(prediction = %prediction.id, error = %err, "could not cancel the prediction");
        }
    }

    /// `POST urls.cancel`: Replicate stops a prediction still starting or processing, and answers
    /// one already over as it is.
    async fn post_cancel(&self, named: Option<&str>, id: &str) -> Result<(), ModelError> {
        let url = self.prediction_url(named, id, "/cancel")?;
        let answer = self
            .call(Method::POST, url, None, HeaderMap::new(), CANCEL_TIMEOUT)
            .await?;
        tracing::info!(prediction = %id, status = ?answer.status, "prediction cancel sent");
        Ok(())
    }
}

/// A prediction id as Replicate makes them (letters, digits, `-`, `_`): it goes into a path.
fn checked_id(id: &str) -> Result<&str, ModelError> {
    let plain =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(id)
    } else {
        Err(ModelError::Transient {
            message: "Replicate answered a prediction id that is not one".into(),
            retry_after: None,
        })
    }
}

/// Maps an API error answer: 429 and 5xx are transient (with the delay Replicate asks for), a
/// refused token is our configuration, anything else the model's verdict on this input.
fn api_error(status: StatusCode, headers: &HeaderMap, body: &str) -> ModelError {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect());
    match status {
        StatusCode::TOO_MANY_REQUESTS => ModelError::Transient {
            message: format!("Replicate throttled the request: {detail}"),
            retry_after: retry_after(headers).or_else(|| resets_in(&detail)),
        },
        status if status.is_server_error() => ModelError::Transient {
            message: format!("Replicate answered {status}: {detail}"),
            retry_after: retry_after(headers),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ModelError::Configuration {
            message: format!("Replicate refused the API token ({status}): {detail}"),
        },
        status => ModelError::Permanent {
            code: "model_rejected".into(),
            message: format!("Replicate rejected the request ({status}): {detail}"),
        },
    }
}

/// The delay in a throttling message such as "Your rate limit resets in ~30s."
fn resets_in(detail: &str) -> Option<Duration> {
    let after = &detail[detail.find("resets in ~")? + "resets in ~".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let rest = &after[digits.len()..];
    if !rest.starts_with('s') {
        return None;
    }
    digits.parse().ok().map(Duration::from_secs)
}

impl ImageModel for ReplicateModel {
    type Output = Url;

    /// Enough to create a prediction and wait a few seconds for it (see [`ReplicateModel::create`]).
    fn min_budget(&self) -> Duration {
        RESERVE + CREATE_MARGIN + Duration::from_secs(2)
    }

    async fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> Result<Vec<Url>, ModelError> {
        let model = ModelRef::parse(&request.model).map_err(|message| ModelError::Permanent {
            code: "model_unsupported".into(),
            message,
        })?;
        // One prediction per batch of outputs, in order; those an earlier attempt started are
        // taken up where they are.
        let mut runs = log.noted();
        let mut outputs = Vec::with_capacity(request.num_outputs as usize);
        let mut seed = request.seed;
        for batch in 0.. {
            if outputs.len() as u32 >= request.num_outputs {
                break;
            }
            let count = (request.num_outputs - outputs.len() as u32).min(model.supported.max_outputs);
            let resumed = match runs.get(batch) {
                Some(id) => self.resume(id, budget).await?,
                None => None,
            };
            let started = match resumed {
                Some(prediction) => prediction,
                None => {
                    let input = model_input(&model.supported, request, count, seed);
                    let created = self.create(&model, input, budget).await?;
                    tracing::info!(prediction = %created.id, status = ?created.status, "prediction created");
                    runs.truncate(batch);
                    runs.push(created.id.clone());
                    log.note(runs.clone()).await;
                    created
                }
            };
            let prediction = self.settle(started, budget).await?;
            if prediction.status != PredictionStatus::Succeeded {
                return Err(prediction.failure());
            }
            outputs.extend(prediction.output_urls()?);
            seed = seed.wrapping_add(count);
        }
        outputs.truncate(request.num_outputs as usize);
        Ok(outputs)
    }

    async fn fetch(
        &self,
        _request: &GenerateRequest,
        url: &Url,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        let timeout = budget.remaining().saturating_sub(RESERVE).min(Duration::from_secs(60));
        let fetched = self.outputs.get(url, timeout).await.map_err(|err| match err {
            FetchError::Unavailable { retry_after, .. } => ModelError::Transient {
                message: err.to_string(),
                retry_after,
            },
            // The output may have expired; the next attempt makes a new prediction.
            FetchError::Rejected { .. } => ModelError::Transient {
                message: err.to_string(),
                retry_after: None,
            },
            FetchError::TooLarge { .. } => ModelError::Permanent {
                code: "output_too_large".into(),
                message: err.to_string(),
            },
            FetchError::Refused { .. } => ModelError::Permanent {
                code: "output_refused".into(),
                message: err.to_string(),
            },
        })?;
        inspect(fetched)
    }

    async fn cancel_run(&self, id: &str) -> Result<(), ModelError> {
        self.post_cancel(None, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generation::tests::sample_request;

    #[test]
    fn sizes_map_to_the_nearest_aspect_ratio() {
        assert_eq!(nearest_aspect_ratio(1024, 1024), "1:1");
        assert_eq!(nearest_aspect_ratio(1440, 800), "16:9");
        assert_eq!(nearest_aspect_ratio(768, 512), "3:2");
        assert_eq!(nearest_aspect_ratio(256, 1440), "9:21");
        assert_eq!(nearest_aspect_ratio(1024, 768), "4:3");
    }

    #[test]
    fn each_model_gets_the_input_it_takes() {
        let request = GenerateRequest {
            prompt: "a fox".into(),
            negative_prompt: Some("blurry".into()),
            width: 768,
            height: 512,
            seed: 9,
            ..sample_request()
        };
        let schnell = ModelRef::parse("black-forest-labs/flux-schnell").unwrap();
        assert_eq!(
            model_input(&schnell.supported, &request, 2, 9),
            json!({"prompt": "a fox", "seed": 9, "num_outputs": 2, "aspect_ratio": "3:2", "output_format": "png"})
        );
        let pro = ModelRef::parse("black-forest-labs/flux-1.1-pro").unwrap();
        assert_eq!(
            model_input(&pro.supported, &request, 1, 9),
            json!({"prompt": "a fox", "seed": 9, "aspect_ratio": "custom", "width": 768, "height": 512, "output_format": "png"})
        );
        let sdxl = ModelRef::parse("stability-ai/sdxl:7762fd07").unwrap();
        assert_eq!(sdxl.version, Some("7762fd07"));
        assert_eq!(
            model_input(&sdxl.supported, &request, 3, 9),
            json!({"prompt": "a fox", "seed": 9, "num_outputs": 3, "width": 768, "height": 512, "negative_prompt": "blurry"})
        );
    }

    #[test]
    fn throttling_hints_are_read_from_the_message() {
        assert_eq!(
            resets_in("Request was throttled. Your rate limit resets in ~30s."),
            Some(Duration::from_secs(30))
        );
        assert_eq!(resets_in("Request was throttled."), None);
        assert_eq!(resets_in("resets in ~soon"), None);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let model = ReplicateModel::new(ReplicateSettings {
            api_base_url: Url::parse(DEFAULT_API_BASE_URL).unwrap(),
            token: Secret::new("r8_topsecret"),
            allow_local_urls: false,
            max_output_bytes: 1,
        })
        .unwrap();
        assert!(!format!("{model:?}").contains("topsecret"));
    }
}
