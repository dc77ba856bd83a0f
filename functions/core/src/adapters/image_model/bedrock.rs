//! Stability's image models on Amazon Bedrock, through the runtime's `InvokeModel`
//! (docs/design.md, "Image models").
//!
//! One call makes one picture, answered in the call's own body: a JSON object whose `images` are
//! base64, with a `finish_reasons` entry per image that is `null` unless the picture was
//! withheld. A request for `n` images is `n` calls, the seed counting up from the request's.
//! Nothing is left running at Bedrock between calls, so there is nothing to note or resume: a
//! later attempt makes every image again. The client is built once, without retries of its own
//! (the generate service retries transient errors within its budget), and each call is held to
//! what is left of the budget ([`crate::adapters::aws::IMAGE_CALL_TIMEOUT`] at most).

use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::inspect::inspect;
use crate::adapters::aws;
use crate::domain::catalogue::{ModelEntry, Provider, fit_size};
use crate::domain::format::OutputFormat;
use crate::domain::generation::GenerateRequest;
use crate::domain::retry::Budget;
use crate::ports::{GeneratedImage, ModelError};

/// Kept back from the budget for what follows a call: storing its picture.
const RESERVE: Duration = Duration::from_secs(3);
/// The least time worth giving one call: less, and the call is not made.
const LEAST_CALL: Duration = Duration::from_secs(1);

/// The aspect ratios Stability's models make, as their `aspect_ratio` names them.
pub const ASPECT_RATIOS: [(u32, u32); 9] = [
    (16, 9),
    (1, 1),
    (21, 9),
    (2, 3),
    (3, 2),
    (4, 5),
    (5, 4),
    (9, 16),
    (9, 21),
];

/// The one of [`ASPECT_RATIOS`] nearest to `width`×`height`, as `"W:H"`.
pub fn nearest_aspect_ratio(width: u32, height: u32) -> String {
    let ratio = |w: u32, h: u32| (f64::from(w.max(1)) / f64::from(h.max(1))).ln();
    let wanted = ratio(width, height);
    let (w, h) = ASPECT_RATIOS
        .iter()
        .min_by(|a, b| {
            (ratio(a.0, a.1) - wanted)
                .abs()
                .total_cmp(&(ratio(b.0, b.1) - wanted).abs())
        })
        .copied()
        .unwrap_or((1, 1));
    format!("{w}:{h}")
}

/// The Stability models Bedrock runs, by how they take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Stable Image Core and Ultra: no `mode`; PNG, JPEG or WebP.
    StableImage,
    /// Stable Diffusion 3.5: `mode: "text-to-image"`; PNG or JPEG.
    Sd35,
}

impl Family {
    /// The family of a Bedrock model id, also as part of an inference profile's id or ARN
    /// (`us.stability.sd3-5-large-v1:0`).
    fn of(model_id: &str) -> Option<Family> {
        if model_id.contains("stability.stable-image-") {
            Some(Family::StableImage)
        } else if model_id.contains("stability.sd3") {
            Some(Family::Sd35)
        } else {
            None
        }
    }

    /// The model's `output_format` for ours, if it makes it.
    fn output_format(self, format: OutputFormat) -> Option<&'static str> {
        match (self, format) {
            (_, OutputFormat::Png) => Some("png"),
            (_, OutputFormat::Jpg) => Some("jpeg"),
            (Family::StableImage, OutputFormat::Webp) => Some("webp"),
            (Family::Sd35, OutputFormat::Webp) => None,
        }
    }
}

/// The body of the `InvokeModel` call that makes image `index` of the request.
fn request_body(entry: &ModelEntry, request: &GenerateRequest, index: u32) -> Result<Value, ModelError> {
    let family = Family::of(&entry.provider_model).ok_or_else(|| ModelError::Configuration {
        message: format!(
            "the catalogue's Bedrock model `{}` is {}, not a Stability model this adapter can call",
            entry.name, entry.provider_model
        ),
    })?;
    let output_format = family
        .output_format(request.output_format)
        .ok_or_else(|| ModelError::Permanent {
            code: "invalid_output_format".into(),
            message: format!(
                "{} cannot make {} images",
                entry.name,
                request.output_format.extension()
            ),
        })?;
    // A model with listed sizes makes the one nearest in shape; the ratio is that size's.
    let (width, height) = match fit_size(&entry.sizes, request.width, request.height) {
        Ok(Some(size)) => (size.width, size.height),
        Ok(None) => (request.width, request.height),
        Err(message) => {
            return Err(ModelError::Permanent {
                code: "invalid_size".into(),
                message,
            });
        }
    };
    let mut body = Map::new();
    body.insert("prompt".into(), json!(request.prompt));
    if let Some(negative) = request.negative_prompt.as_deref().filter(|n| !n.is_empty()) {
        body.insert("negative_prompt".into(), json!(negative));
    }
    body.insert("seed".into(), json!(request.seed.wrapping_add(index)));
    body.insert("aspect_ratio".into(), json!(nearest_aspect_ratio(width, height)));
    body.insert("output_format".into(), json!(output_format));
    if family == Family::Sd35 {
        body.insert("mode".into(), json!("text-to-image"));
    }
    Ok(Value::Object(body))
}

/// A Stability model's answer; `seeds` is not read.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    finish_reasons: Vec<Option<String>>,
    #[serde(default)]
    images: Vec<Option<String>>,
}

/// The picture in an answer's body, decoded; a withheld picture is the model's verdict.
fn parse_answer(body: &[u8]) -> Result<Vec<u8>, ModelError> {
    let malformed = |detail: String| ModelError::Transient {
        message: format!("Bedrock sent a malformed answer: {detail}"),
        retry_after: None,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|e| malformed(format!("not the JSON expected: {e}")))?;
    if let Some(reason) = answer.finish_reasons.iter().flatten().next() {
        return Err(if reason == "Inference error" {
            ModelError::Transient {
                message: format!("the model failed to make the image ({reason})"),
                retry_after: None,
            }
        } else {
            ModelError::Permanent {
                code: "content_filtered".into(),
                message: format!("the model withheld the image ({reason})"),
            }
        });
    }
    let encoded = answer
        .images
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| malformed("no image in it".into()))?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|e| malformed(format!("the image is not base64: {e}")))
}

/// Maps a failed `InvokeModel` call: throttling, capacity, server errors and calls that did not
/// complete are transient; invalid input is the model's verdict; refused access or an unknown
/// model is our configuration.
fn call_error(err: SdkError<InvokeModelError, HttpResponse>) -> ModelError {
    let transient = |message: String| ModelError::Transient {
        message,
        retry_after: None,
    };
    match err {
        SdkError::ServiceError(context) => {
            let refused = matches!(context.raw().status().as_u16(), 401 | 403);
            let err = context.into_err();
            let detail = format!(
                "{}: {}",
                err.code().unwrap_or("unknown error"),
                err.message().unwrap_or("no message")
            );
            match err {
                InvokeModelError::ValidationException(_) => ModelError::Permanent {
                    code: "model_rejected_input".into(),
                    message: format!("Bedrock rejected the request ({detail})"),
                },
                InvokeModelError::AccessDeniedException(_) | InvokeModelError::ResourceNotFoundException(_) => {
                    ModelError::Configuration {
                        message: format!("Bedrock refused the model ({detail})"),
                    }
                }
                InvokeModelError::ThrottlingException(_)
                | InvokeModelError::ServiceQuotaExceededException(_)
                | InvokeModelError::ServiceUnavailableException(_)
                | InvokeModelError::ModelNotReadyException(_)
                | InvokeModelError::ModelTimeoutException(_)
                | InvokeModelError::ModelErrorException(_)
                | InvokeModelError::InternalServerException(_) => transient(format!("Bedrock answered {detail}")),
                // An error the SDK does not model: refused credentials (a bad signature, an
                // expired token) are ours to fix; anything else may pass.
                _ if refused => ModelError::Configuration {
                    message: format!("Bedrock refused our credentials ({detail})"),
                },
                _ => transient(format!("Bedrock answered {detail}")),
            }
        }
        SdkError::TimeoutError(_) => transient("Bedrock did not answer in time".into()),
        SdkError::ConstructionFailure(_) => ModelError::Configuration {
            message: format!(
                "the Bedrock call could not be made: {}",
                crate::adapters::describe_error(&err)
            ),
        },
        // Dispatch failures (no connection), answers that could not be read, and anything newer.
        other => transient(format!(
            "Bedrock did not answer: {}",
            crate::adapters::describe_error(&other)
        )),
    }
}

/// Stability's models on Bedrock, for the catalogue entries whose provider is
/// [`Provider::Bedrock`].
#[derive(Debug, Clone)]
pub struct BedrockModel {
    client: aws_sdk_bedrockruntime::Client,
}

impl BedrockModel {
    /// Builds the client once, with our HTTPS client and the SDK's endpoint rules (so
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` applies).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws::bedrock_runtime(sdk),
        }
    }

    /// The least time an attempt needs: one call and the time kept back after it.
    pub fn min_budget(&self) -> Duration {
        RESERVE + Duration::from_secs(10)
    }

    /// Runs `entry.provider_model` for the whole request: one InvokeModel call per image.
    pub async fn generate(
        &self,
        entry: &ModelEntry,
        request: &GenerateRequest,
        budget: &Budget,
    ) -> Result<Vec<GeneratedImage>, ModelError> {
        if entry.provider != Provider::Bedrock {
            return Err(ModelError::Configuration {
                message: format!(
                    "the model `{}` is {}'s, not Bedrock's",
                    entry.name,
                    entry.provider.name()
                ),
            });
        }
        let mut images = Vec::with_capacity(request.num_outputs as usize);
        for index in 0..request.num_outputs {
            let body = request_body(entry, request, index)?;
            images.push(self.invoke(&entry.provider_model, &body, budget).await?);
            tracing::info!(model = %entry.provider_model, index, "Bedrock made an image");
        }
        Ok(images)
    }

    async fn invoke(&self, model_id: &str, body: &Value, budget: &Budget) -> Result<GeneratedImage, ModelError> {
        let time = budget.remaining().saturating_sub(RESERVE).min(aws::IMAGE_CALL_TIMEOUT);
        if time < LEAST_CALL {
            return Err(ModelError::Transient {
                message: "no time left in this invocation for another Bedrock call".into(),
                retry_after: None,
            });
        }
        let bytes = serde_json::to_vec(body).map_err(|e| ModelError::Permanent {
            code: "internal".into(),
            message: format!("the request could not be written: {e}"),
        })?;
        let answer = self
            .client
            .invoke_model()
            .model_id(model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(bytes))
            .customize()
            .config_override(
                aws_sdk_bedrockruntime::config::Builder::default().timeout_config(aws::image_timeouts(time)),
            )
            .send()
            .await
            .map_err(call_error)?;
        inspect(parse_answer(answer.body.as_ref())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::Size;
    use crate::domain::generation::tests::sample_request;

    fn entry(provider_model: &str) -> ModelEntry {
        ModelEntry {
            name: "stable-image-core".into(),
            provider: Provider::Bedrock,
            provider_model: provider_model.into(),
            sizes: Vec::new(),
            formats: OutputFormat::ALL.to_vec(),
            max_outputs: 1,
            price_per_image: 40_000,
            price_source: "test".into(),
            fallback: Vec::new(),
            rate_per_minute: None,
        }
    }

    fn request(width: u32, height: u32, format: OutputFormat) -> GenerateRequest {
        GenerateRequest {
            prompt: "a fox".into(),
            negative_prompt: Some("blurry".into()),
            width,
            height,
            seed: 9,
            output_format: format,
            ..sample_request()
        }
    }

    #[test]
    fn sizes_map_to_the_nearest_stability_ratio() {
        assert_eq!(nearest_aspect_ratio(1024, 1024), "1:1");
        assert_eq!(nearest_aspect_ratio(1920, 1080), "16:9");
        assert_eq!(nearest_aspect_ratio(768, 512), "3:2");
        assert_eq!(nearest_aspect_ratio(256, 1440), "9:21");
        assert_eq!(nearest_aspect_ratio(2560, 1080), "21:9");
        // 4:3 is not one of them: 5:4 is nearer than 3:2.
        assert_eq!(nearest_aspect_ratio(1024, 768), "5:4");
        assert_eq!(nearest_aspect_ratio(800, 1000), "4:5");
        assert_eq!(nearest_aspect_ratio(0, 0), "1:1");
    }

    #[test]
    fn stable_image_bodies_have_no_mode_and_take_webp() {
        let body = request_body(
            &entry("stability.stable-image-core-v1:1"),
            &request(768, 512, OutputFormat::Webp),
            2,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"prompt": "a fox", "negative_prompt": "blurry", "seed": 11, "aspect_ratio": "3:2", "output_format": "webp"})
        );
        let ultra = request_body(
            &entry("stability.stable-image-ultra-v1:1"),
            &request(512, 512, OutputFormat::Jpg),
            0,
        )
        .unwrap();
        assert_eq!(ultra["output_format"], "jpeg");
        assert!(ultra.get("mode").is_none());
    }

    #[test]
    fn sd35_bodies_are_text_to_image_and_refuse_webp() {
        let mut plain = request(1920, 1080, OutputFormat::Png);
        plain.negative_prompt = None;
        let body = request_body(&entry("stability.sd3-5-large-v1:0"), &plain, 0).unwrap();
        assert_eq!(
            body,
            json!({"prompt": "a fox", "seed": 9, "aspect_ratio": "16:9", "output_format": "png", "mode": "text-to-image"})
        );
        let profile = request_body(&entry("us.stability.sd3-5-large-v1:0"), &plain, 0).unwrap();
        assert_eq!(profile["mode"], "text-to-image");
        let err = request_body(
            &entry("stability.sd3-5-large-v1:0"),
            &request(512, 512, OutputFormat::Webp),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "invalid_output_format"));
    }

    #[test]
    fn seeds_count_up_from_the_request_and_wrap() {
        let mut late = request(512, 512, OutputFormat::Png);
        late.seed = u32::MAX;
        let body = request_body(&entry("stability.stable-image-core-v1:1"), &late, 1).unwrap();
        assert_eq!(body["seed"], 0);
    }

    #[test]
    fn listed_sizes_choose_the_ratio() {
        let mut sized = entry("stability.stable-image-core-v1:1");
        sized.sizes = vec![
            Size {
                width: 1024,
                height: 1024,
            },
            Size {
                width: 1344,
                height: 768,
            },
        ];
        let body = request_body(&sized, &request(1600, 1000, OutputFormat::Png), 0).unwrap();
        assert_eq!(body["aspect_ratio"], "16:9");
        let err = request_body(&sized, &request(400, 1600, OutputFormat::Png), 0).unwrap_err();
        assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "invalid_size"));
    }

    #[test]
    fn other_models_are_a_configuration_error() {
        let err = request_body(
            &entry("amazon.titan-image-generator-v2:0"),
            &request(512, 512, OutputFormat::Png),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, ModelError::Configuration { .. }));
    }

    #[test]
    fn answers_give_their_image() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"picture");
        let body = json!({"seeds": [9], "finish_reasons": [null], "images": [encoded]}).to_string();
        assert_eq!(parse_answer(body.as_bytes()).unwrap(), b"picture");
        // Seeds as strings, or none at all, do not matter.
        let body = json!({"seeds": ["9"], "images": [encoded]}).to_string();
        assert_eq!(parse_answer(body.as_bytes()).unwrap(), b"picture");
    }

    #[test]
    fn withheld_images_are_permanent() {
        for reason in ["Filter reason: prompt", "Filter reason: output image"] {
            let body = json!({"seeds": [9], "finish_reasons": [reason], "images": [null]}).to_string();
            let err = parse_answer(body.as_bytes()).unwrap_err();
            assert!(matches!(err, ModelError::Permanent { ref code, .. } if code == "content_filtered"));
            // As the documentation shows it too: the reason alone.
            let body = json!({"finish_reasons": [reason]}).to_string();
            assert!(matches!(
                parse_answer(body.as_bytes()),
                Err(ModelError::Permanent { .. })
            ));
        }
    }

    #[test]
    fn an_inference_error_is_transient() {
        let body = json!({"finish_reasons": ["Inference error"], "images": [null]}).to_string();
        assert!(matches!(
            parse_answer(body.as_bytes()),
            Err(ModelError::Transient { .. })
        ));
    }

    #[test]
    fn malformed_answers_are_transient() {
        for body in [
            "not json".to_owned(),
            json!({"images": []}).to_string(),
            json!({"finish_reasons": [null], "images": [null]}).to_string(),
            json!({"images": ["***not base64***"]}).to_string(),
            json!({"images": "one"}).to_string(),
        ] {
            let err = parse_answer(body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ModelError::Transient { ref message, .. } if message.contains("malformed")),
                "{body}: {err:?}"
            );
        }
    }
}
