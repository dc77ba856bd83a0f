//! The request bodies as the OpenAPI description (`openapi.rs`) shows them: what
//! `domain/generation.rs` and `domain/prediction.rs` accept, as schemas. The bodies themselves are
//! parsed field by field, so that every broken rule is named at once; a test in `openapi.rs`
//! holds these limits to the rules.

use serde::Serialize;
use utoipa::ToSchema;

/// The body of `POST /media/generate`: what `domain/generation.rs` accepts. Unknown fields are
/// refused; every rule broken is named at once in a `422`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// 1 to 2000 characters once trimmed.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub prompt: String,
    #[schema(max_length = 2000)]
    pub negative_prompt: Option<String>,
    /// One of the models this deployment offers (the enum is this deployment's list).
    pub model: Option<String>,
    /// 256 to 1440, a multiple of 32; 1024 when absent.
    #[schema(minimum = 256, maximum = 1440, multiple_of = 32)]
    pub width: Option<u32>,
    #[schema(minimum = 256, maximum = 1440, multiple_of = 32)]
    pub height: Option<u32>,
    #[schema(minimum = 1, maximum = 4)]
    pub num_outputs: Option<u32>,
    /// Drawn at random when absent, and stored.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295i64)]
    pub seed: Option<u32>,
    pub output_format: Option<OutputFormatName>,
    /// `https://` to a public host (with local URLs allowed, also `http://` to loopback);
    /// posted, signed, when the job is final. The pattern names hosts by name, as receivers are.
    #[schema(pattern = r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(:[0-9]{1,5})?(/[^\s]*)?$")]
    pub webhook_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormatName {
    Png,
    Webp,
    Jpg,
}

/// A prediction's `input`: ours, and Replicate's image models' inputs that have no counterpart
/// here (taken and ignored, so that code written for those models runs unchanged).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionInputBody {
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub prompt: String,
    #[schema(max_length = 2000)]
    pub negative_prompt: Option<String>,
    #[schema(minimum = 256, maximum = 1440, multiple_of = 32)]
    pub width: Option<u32>,
    #[schema(minimum = 256, maximum = 1440, multiple_of = 32)]
    pub height: Option<u32>,
    #[schema(minimum = 1, maximum = 4)]
    pub num_outputs: Option<u32>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295i64)]
    pub seed: Option<u32>,
    pub output_format: Option<OutputFormatName>,
    /// When no width and height are given.
    pub aspect_ratio: Option<AspectRatio>,
    pub go_fast: Option<bool>,
    pub megapixels: Option<String>,
    pub output_quality: Option<u32>,
    pub num_inference_steps: Option<u32>,
    pub disable_safety_checker: Option<bool>,
    pub guidance: Option<f64>,
    pub guidance_scale: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub enum AspectRatio {
    #[serde(rename = "1:1")]
    Square,
    #[serde(rename = "16:9")]
    Wide,
    #[serde(rename = "9:16")]
    Tall,
    #[serde(rename = "21:9")]
    UltraWide,
    #[serde(rename = "9:21")]
    UltraTall,
    #[serde(rename = "3:2")]
    Landscape,
    #[serde(rename = "2:3")]
    Portrait,
    #[serde(rename = "4:3")]
    Classic,
    #[serde(rename = "3:4")]
    ClassicPortrait,
    #[serde(rename = "5:4")]
    Print,
    #[serde(rename = "4:5")]
    PrintPortrait,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEventName {
    Start,
    Output,
    Logs,
    Completed,
}

/// The body of a prediction's create, as Replicate's clients send it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionRequest {
    pub input: PredictionInputBody,
    /// On `POST /v1/predictions`: the model as `owner/name`, optionally `:version`.
    #[schema(pattern = "^[^/:]+/[^/:]+(:.+)?$")]
    pub version: Option<String>,
    /// Posted, signed, when the prediction is final.
    #[schema(pattern = r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(:[0-9]{1,5})?(/[^\s]*)?$")]
    pub webhook: Option<String>,
    #[schema(pattern = r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(:[0-9]{1,5})?(/[^\s]*)?$")]
    pub webhook_completed: Option<String>,
    /// Only `completed` is delivered; a filter without it asks for no webhook.
    pub webhook_events_filter: Option<Vec<WebhookEventName>>,
    pub stream: Option<bool>,
}

/// The body of `POST /v1/images/generations`, as OpenAI's SDKs send it: what
/// `domain/images.rs` accepts. Fields it does not name are ignored, as OpenAI's server does.
#[derive(Serialize, ToSchema)]
pub struct ImagesBody {
    /// 1 to 2000 characters once trimmed.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub prompt: String,
    /// One of the models this deployment offers (the enum is this deployment's list).
    pub model: Option<String>,
    /// How many images: 1 to 4, the most one request makes here.
    #[schema(minimum = 1, maximum = 4)]
    pub n: Option<u32>,
    /// Made at the nearest size the model makes, its sides at most 1440.
    pub size: Option<ImageSize>,
    /// Accepted; it changes nothing here.
    pub quality: Option<ImageQuality>,
    /// `url` (default): our file links; `b64_json`: the bytes. A stream always answers the
    /// bytes, as OpenAI's does.
    pub response_format: Option<ImageResponseFormat>,
    pub output_format: Option<ImageFormat>,
    /// No model here makes a transparent background.
    pub background: Option<ImageBackground>,
    /// Accepted; it changes nothing here.
    pub user: Option<String>,
    /// `true`: the answer is `text/event-stream`, one `image_generation.completed` event per
    /// image, all sent once the job is final.
    pub stream: Option<bool>,
    /// Accepted; no partial image is sent, stream or not: no model here makes one.
    #[schema(minimum = 0, maximum = 3)]
    pub partial_images: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub enum ImageSize {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "256x256")]
    S256,
    #[serde(rename = "512x512")]
    S512,
    #[serde(rename = "1024x1024")]
    S1024,
    #[serde(rename = "1536x1024")]
    Landscape,
    #[serde(rename = "1024x1536")]
    Portrait,
    #[serde(rename = "1792x1024")]
    Wide,
    #[serde(rename = "1024x1792")]
    Tall,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageQuality {
    Auto,
    Low,
    Medium,
    High,
    Standard,
    Hd,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageResponseFormat {
    Url,
    B64Json,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageBackground {
    Auto,
    Opaque,
}
