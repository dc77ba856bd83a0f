//! The models a deployment can offer (docs/design.md, "Image models"): the one local model, and
//! every Replicate model the adapter knows how to call, with how each takes its input.

/// The deterministic offline model.
pub const LOCAL_MODEL: &str = "local";
/// The same model, made slow on purpose (a few seconds per image), to try waits and cancels.
pub const LOCAL_SLOW_MODEL: &str = "local-slow";
/// The owner our own models are shown under where a model name must be `owner/name` (the
/// Replicate-compatible API).
pub const OUR_MODEL_OWNER: &str = "mediagen";
/// The Replicate model a `replicate` deployment offers when none is configured.
pub const DEFAULT_REPLICATE_MODEL: &str = "black-forest-labs/flux-schnell";

/// Which image model backs `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelProvider {
    Local,
    Replicate,
}

impl ModelProvider {
    pub fn default_model(self) -> &'static str {
        match self {
            ModelProvider::Local => LOCAL_MODEL,
            ModelProvider::Replicate => DEFAULT_REPLICATE_MODEL,
        }
    }

    /// The models a deployment of this provider offers when it names none: for the local
    /// provider both local models, so that waits and cancels can be tried on any local stack;
    /// for Replicate none but the default model, which is always offered.
    pub fn offered_by_default(self) -> &'static [&'static str] {
        match self {
            ModelProvider::Local => &[LOCAL_MODEL, LOCAL_SLOW_MODEL],
            ModelProvider::Replicate => &[],
        }
    }

    /// Whether this provider can run the named model; the error says what it can run.
    pub fn check_model(self, model: &str) -> Result<(), String> {
        match self {
            ModelProvider::Local if model == LOCAL_MODEL || model == LOCAL_SLOW_MODEL => Ok(()),
            ModelProvider::Local => Err(format!(
                "the local provider has the models `{LOCAL_MODEL}` and `{LOCAL_SLOW_MODEL}`"
            )),
            ModelProvider::Replicate => check_replicate_model(model),
        }
    }
}

/// Who runs a catalogue model (docs/design.md, "Image models").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The deterministic offline model.
    Local,
    /// The Replicate predictions API.
    Replicate,
    /// OpenAI's Images API.
    #[serde(rename = "openai")]
    OpenAi,
    /// Stability's models on Amazon Bedrock, through `InvokeModel`.
    Bedrock,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Replicate => "replicate",
            Provider::OpenAi => "openai",
            Provider::Bedrock => "bedrock",
        }
    }
}

/// A picture's size in pixels, written `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (width, height) = raw
            .split_once('x')
            .ok_or_else(|| format!("{raw:?} is not a size: write WIDTHxHEIGHT, as 1024x1024"))?;
        let side = |text: &str| {
            text.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{raw:?} is not a size: its sides must be positive whole numbers"))
        };
        Ok(Size {
            width: side(width)?,
            height: side(height)?,
        })
    }
}

/// How far a request's aspect ratio may be from the allowed size it is given (a ratio of
/// ratios): 3:2 gets 1536x1024, but 16:9 gets nothing from a model whose widest is 3:2.
const MAX_RATIO_STRETCH: f64 = 1.25;

/// The allowed size a request of `width`×`height` is made at: the one nearest in aspect ratio
/// (then in area). `Ok(None)` when the model takes any size; the error names the allowed sizes.
pub fn fit_size(allowed: &[Size], width: u32, height: u32) -> Result<Option<Size>, String> {
    if allowed.is_empty() {
        return Ok(None);
    }
    let ratio = |w: u32, h: u32| (f64::from(w) / f64::from(h)).ln();
    let wanted = ratio(width, height);
    let area = (f64::from(width) * f64::from(height)).ln();
    let distance = |size: &Size| {
        let shape = (ratio(size.width, size.height) - wanted).abs();
        let scale = ((f64::from(size.width) * f64::from(size.height)).ln() - area).abs();
        (shape, scale)
    };
    let nearest = allowed
        .iter()
        .min_by(|a, b| {
            let (a, b) = (distance(a), distance(b));
            a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1))
        })
        .copied();
    match nearest {
        Some(size) if distance(&size).0 <= MAX_RATIO_STRETCH.ln() + 1e-9 => Ok(Some(size)),
        _ => {
            let names: Vec<String> = allowed.iter().map(Size::to_string).collect();
            Err(format!(
                "no size this model makes has the shape of {width}x{height}; it makes {}",
                names.join(", ")
            ))
        }
    }
}

/// One model of the catalogue (docs/models.md): the name clients use and what runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The name a request gives as `model`.
    pub name: String,
    pub provider: Provider,
    /// The model's id at its provider: `owner/name[:version]` on Replicate, `gpt-image-1` on
    /// OpenAI, `stability.stable-image-core-v1:1` on Bedrock.
    pub provider_model: String,
    /// The sizes the model makes; empty when it makes any size our rules allow.
    pub sizes: Vec<Size>,
    /// The formats the model can answer; a request for another is refused at submit.
    pub formats: Vec<crate::domain::format::OutputFormat>,
    /// Images one call to the provider makes at most; more take further calls.
    pub max_outputs: u32,
    /// What one image costs at the provider, in micro-dollars.
    pub price_per_image: u64,
    /// Where that price was read, for whoever checks it.
    pub price_source: String,
    /// The models tried in turn when this one is unavailable (docs/design.md, "Fallback").
    pub fallback: Vec<String>,
}

/// How a model takes the picture's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeInput {
    /// `aspect_ratio`, the nearest of the ratios the model knows.
    AspectRatio,
    /// `aspect_ratio: "custom"` with `width` and `height`.
    CustomAspectRatio,
    /// `width` and `height`.
    WidthHeight,
}

/// A model's name as `owner/name`: ours get the `mediagen/` owner, Replicate's keep theirs.
pub fn public_name(model: &str) -> String {
    if model.contains('/') {
        model.to_owned()
    } else {
        format!("{OUR_MODEL_OWNER}/{model}")
    }
}

/// The model an `owner/name` stands for: the inverse of [`public_name`].
pub fn from_public_name(name: &str) -> &str {
    name.strip_prefix(OUR_MODEL_OWNER)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(name)
}

/// A Replicate model we know how to call, and how our request maps onto its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    pub name: &'static str,
    pub size: SizeInput,
    /// Images one prediction can make; more are asked of further predictions.
    pub max_outputs: u32,
    pub takes_output_format: bool,
    pub takes_negative_prompt: bool,
    /// Replicate's list price per image, in micro-dollars (docs/operations.md, "The Replicate
    /// model"): what an image counts against an owner's monthly budget.
    pub price_per_image: u64,
}

/// Every supported model, in one place. Official models run by name; others need a pinned
/// version (`owner/name:version`).
pub const REPLICATE_MODELS: [Supported; 4] = [
    Supported {
        name: "black-forest-labs/flux-schnell",
        size: SizeInput::AspectRatio,
        max_outputs: 4,
        takes_output_format: true,
        takes_negative_prompt: false,
        price_per_image: 3_000,
    },
    Supported {
        name: "black-forest-labs/flux-dev",
        size: SizeInput::AspectRatio,
        max_outputs: 4,
        takes_output_format: true,
        takes_negative_prompt: false,
        price_per_image: 25_000,
    },
    Supported {
        name: "black-forest-labs/flux-1.1-pro",
        size: SizeInput::CustomAspectRatio,
        max_outputs: 1,
        takes_output_format: true,
        takes_negative_prompt: false,
        price_per_image: 40_000,
    },
    Supported {
        name: "stability-ai/sdxl",
        size: SizeInput::WidthHeight,
        max_outputs: 4,
        takes_output_format: false,
        takes_negative_prompt: true,
        price_per_image: 6_000,
    },
];

/// What one image of the model costs, in micro-dollars: nothing for our own models; for SDXL,
/// billed by GPU time, the estimate of a run.
pub fn price_per_image(model: &str) -> u64 {
    let name = model.split_once(':').map_or(model, |(name, _)| name);
    REPLICATE_MODELS
        .iter()
        .find(|s| s.name == name)
        .map_or(0, |s| s.price_per_image)
}

/// A model as configured: `owner/name`, or `owner/name:version` for a pinned version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef<'a> {
    pub supported: Supported,
    pub version: Option<&'a str>,
}

impl<'a> ModelRef<'a> {
    pub fn parse(reference: &'a str) -> Result<Self, String> {
        let (name, version) = match reference.split_once(':') {
            Some((name, version)) if !version.is_empty() => (name, Some(version)),
            Some(_) => return Err(format!("{reference}: the version after ':' is empty")),
            None => (reference, None),
        };
        let supported = REPLICATE_MODELS
            .iter()
            .find(|s| s.name == name)
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = REPLICATE_MODELS.iter().map(|s| s.name).collect();
                format!(
                    "{name} is not a supported Replicate model (supported: {})",
                    known.join(", ")
                )
            })?;
        Ok(Self { supported, version })
    }
}

/// Whether a configured model name is one the Replicate adapter can call.
pub fn check_replicate_model(reference: &str) -> Result<(), String> {
    ModelRef::parse(reference).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_models_and_empty_versions_are_refused() {
        assert!(check_replicate_model("black-forest-labs/flux-schnell").is_ok());
        assert!(
            check_replicate_model("openai/dall-e-3")
                .unwrap_err()
                .contains("not a supported")
        );
        assert!(check_replicate_model("stability-ai/sdxl:").is_err());
        assert_eq!(
            ModelRef::parse("stability-ai/sdxl:7762fd07").unwrap().version,
            Some("7762fd07")
        );
    }

    #[test]
    fn public_names_are_owner_slash_name_and_round_trip() {
        assert_eq!(public_name(LOCAL_MODEL), "mediagen/local");
        assert_eq!(public_name(DEFAULT_REPLICATE_MODEL), DEFAULT_REPLICATE_MODEL);
        for model in [LOCAL_MODEL, LOCAL_SLOW_MODEL, DEFAULT_REPLICATE_MODEL] {
            assert_eq!(from_public_name(&public_name(model)), model);
        }
    }

    #[test]
    fn prices_follow_the_model_and_not_its_version() {
        assert_eq!(price_per_image(DEFAULT_REPLICATE_MODEL), 3_000);
        assert_eq!(price_per_image("stability-ai/sdxl:7762fd07"), 6_000);
        assert_eq!(price_per_image(LOCAL_MODEL), 0);
    }

    #[test]
    fn each_provider_runs_only_its_own_models() {
        assert!(ModelProvider::Local.check_model(LOCAL_MODEL).is_ok());
        assert!(ModelProvider::Local.check_model(DEFAULT_REPLICATE_MODEL).is_err());
        assert!(ModelProvider::Replicate.check_model(DEFAULT_REPLICATE_MODEL).is_ok());
        assert!(ModelProvider::Replicate.check_model(LOCAL_MODEL).is_err());
    }
}
