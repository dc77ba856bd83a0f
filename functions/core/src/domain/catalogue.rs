//! The models a deployment can offer (docs/design.md, "Image models"): its catalogue
//! (models.toml), each model's provider, sizes, formats, price and fallbacks, and how each
//! Replicate model the adapter knows takes its input.

use crate::domain::format::OutputFormat;

/// The most images one request asks for, and one provider call makes.
pub const MAX_OUTPUTS: u32 = 4;

/// The catalogue a deployment runs when `MODEL_CATALOGUE` names none (models.toml).
pub const BUILT_IN: &str = include_str!("../../../../models.toml");
/// The same as JSON, which a cold start parses faster (build.rs).
const BUILT_IN_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/models.json"));

/// The deterministic offline model.
pub const LOCAL_MODEL: &str = "local";
/// The same model, made slow on purpose (a few seconds per image), to try waits and cancels.
pub const LOCAL_SLOW_MODEL: &str = "local-slow";
/// The owner our own models are shown under where a model name must be `owner/name` (the
/// Replicate-compatible API).
pub const OUR_MODEL_OWNER: &str = "mediagen";
/// The Replicate model a `replicate` deployment offers when none is configured.
pub const DEFAULT_REPLICATE_MODEL: &str = "black-forest-labs/flux-schnell";

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
    pub const ALL: [Provider; 4] = [
        Provider::Local,
        Provider::Replicate,
        Provider::OpenAi,
        Provider::Bedrock,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

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
    pub formats: Vec<OutputFormat>,
    /// Images one call to the provider makes at most; more take further calls.
    pub max_outputs: u32,
    /// What one image costs at the provider, in micro-dollars.
    pub price_per_image: u64,
    /// Where that price was read, for whoever checks it.
    pub price_source: String,
    /// The models tried in turn when this one is unavailable (docs/design.md, "Fallback").
    pub fallback: Vec<String>,
    /// The creates a minute this model allows on its own, beside its provider's.
    pub rate_per_minute: Option<u32>,
}

/// The models a deployment offers, in the order its catalogue lists them, and the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    entries: Vec<ModelEntry>,
    default: String,
    limits: Vec<(Provider, ProviderLimit)>,
}

/// What a provider allows this deployment's account (docs/design.md, "Provider limits"): new runs
/// (creates) a minute, kept to across every instance of `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderLimit {
    pub rate_per_minute: u32,
}

/// The catalogue file as written (models.toml).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    default: Option<String>,
    #[serde(default)]
    providers: std::collections::BTreeMap<String, ProviderLimit>,
    #[serde(default)]
    models: Vec<EntryFile>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    name: String,
    provider: Provider,
    model: Option<String>,
    #[serde(default)]
    sizes: Vec<String>,
    #[serde(default)]
    formats: Vec<String>,
    max_outputs: Option<u32>,
    price_usd: f64,
    price_source: String,
    #[serde(default)]
    fallback: Vec<String>,
    rate_per_minute: Option<u32>,
}

/// The most a model may cost per image: a price above it is a typo in the file.
const MAX_PRICE_USD: f64 = 100.0;

impl Catalogue {
    /// Reads a catalogue file and keeps the models of the enabled providers; every mistake is
    /// named with its model.
    pub fn parse(text: &str, enabled: &[Provider]) -> Result<Self, String> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        Self::from_file(file, enabled)
    }

    /// The built-in catalogue ([`BUILT_IN`]) with the models of the enabled providers.
    pub fn built_in(enabled: &[Provider]) -> Result<Self, String> {
        let file: CatalogueFile = serde_json::from_str(BUILT_IN_JSON).map_err(|e| e.to_string())?;
        Self::from_file(file, enabled)
    }

    fn from_file(file: CatalogueFile, enabled: &[Provider]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(file.models.len());
        for raw in file.models {
            let entry = raw.check()?;
            if entries.iter().any(|e: &ModelEntry| e.name == entry.name) {
                return Err(format!("model {} is listed twice", entry.name));
            }
            entries.push(entry);
        }
        let known: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        for entry in &entries {
            if let Some(missing) = entry.fallback.iter().find(|f| !known.contains(f)) {
                return Err(format!(
                    "model {}: its fallback {missing} is not in the catalogue",
                    entry.name
                ));
            }
        }
        entries.retain(|e| enabled.contains(&e.provider));
        // A fallback to a model of a provider this deployment does not run is left out.
        let offered: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        for entry in &mut entries {
            entry.fallback.retain(|f| offered.contains(f) && *f != entry.name);
        }
        let first = entries.first().map(|e| e.name.clone()).ok_or_else(|| {
            let names: Vec<&str> = enabled.iter().map(|p| p.name()).collect();
            format!(
                "no model of the enabled providers ({}) is in the catalogue",
                names.join(", ")
            )
        })?;
        let default = file.default.filter(|d| offered.contains(d)).unwrap_or(first);
        let mut limits = Vec::new();
        for (name, limit) in file.providers {
            let provider = Provider::parse(&name)
                .ok_or_else(|| format!("[providers.{name}]: not a provider (local, replicate, openai, bedrock)"))?;
            if limit.rate_per_minute == 0 {
                return Err(format!("[providers.{name}]: rate_per_minute must be at least 1"));
            }
            limits.push((provider, limit));
        }
        Ok(Self {
            entries,
            default,
            limits,
        })
    }

    /// The catalogue with `default` as its default, if it offers that model.
    pub fn with_default(mut self, default: &str) -> Result<Self, String> {
        if self.entry(default).is_none() {
            return Err(format!(
                "{default} is not offered (offered: {})",
                self.names().join(", ")
            ));
        }
        self.default = default.to_owned();
        Ok(self)
    }

    /// Only the named models, in the catalogue's order (an operator's allow-list).
    pub fn only(mut self, names: &[String]) -> Result<Self, String> {
        if let Some(missing) = names.iter().find(|n| self.entry(n).is_none()) {
            return Err(format!(
                "{missing} is not offered (offered: {})",
                self.names().join(", ")
            ));
        }
        self.entries
            .retain(|e| names.contains(&e.name) || e.name == self.default);
        let offered: Vec<String> = self.names().into_iter().map(str::to_owned).collect();
        for entry in &mut self.entries {
            entry.fallback.retain(|f| offered.contains(f));
        }
        Ok(self)
    }

    pub fn default_model(&self) -> &str {
        &self.default
    }

    pub fn entry(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The rate `provider` allows, if the catalogue gives one.
    pub fn limit(&self, provider: Provider) -> Option<ProviderLimit> {
        self.limits
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, limit)| *limit)
    }

    /// The rate a run of `model` keeps to, and the name its creates are counted under: the
    /// model's own rate if it has one, else its provider's; `None` if neither is limited.
    pub fn limit_of(&self, model: &str) -> Option<(String, ProviderLimit)> {
        let entry = self.entry(model)?;
        match entry.rate_per_minute {
            Some(rate_per_minute) => Some((format!("model:{}", entry.name), ProviderLimit { rate_per_minute })),
            None => Some((entry.provider.name().to_owned(), self.limit(entry.provider)?)),
        }
    }

    /// Whether any offered model runs on `provider`.
    pub fn uses(&self, provider: Provider) -> bool {
        self.entries.iter().any(|e| e.provider == provider)
    }

    /// The names of the models tried for `name`, in turn: itself, then its fallbacks. A model
    /// the catalogue does not list (a job submitted before it changed) is tried alone.
    pub fn fallback_chain(&self, name: &str) -> Vec<String> {
        match self.entry(name) {
            Some(entry) => std::iter::once(name.to_owned())
                .chain(entry.fallback.iter().cloned())
                .collect(),
            None => vec![name.to_owned()],
        }
    }
}

impl EntryFile {
    fn check(self) -> Result<ModelEntry, String> {
        let name = self.name.trim().to_owned();
        let fail = |reason: String| format!("model {name}: {reason}");
        if name.is_empty() {
            return Err("a model has an empty name".to_owned());
        }
        let provider_model = self.model.unwrap_or_else(|| name.clone());
        match self.provider {
            Provider::Local if provider_model != LOCAL_MODEL && provider_model != LOCAL_SLOW_MODEL => {
                return Err(fail(format!(
                    "the local provider has the models `{LOCAL_MODEL}` and `{LOCAL_SLOW_MODEL}`"
                )));
            }
            Provider::Replicate => check_replicate_model(&provider_model).map_err(&fail)?,
            _ => {}
        }
        let sizes = self
            .sizes
            .iter()
            .map(|s| s.parse::<Size>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(&fail)?;
        let formats = if self.formats.is_empty() {
            OutputFormat::ALL.to_vec()
        } else {
            self.formats
                .iter()
                .map(|f| {
                    OutputFormat::parse(f).ok_or_else(|| fail(format!("format {f:?} is not one of png, webp, jpg")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let max_outputs = self.max_outputs.unwrap_or(MAX_OUTPUTS);
        if !(1..=MAX_OUTPUTS).contains(&max_outputs) {
            return Err(fail(format!("max_outputs must be between 1 and {MAX_OUTPUTS}")));
        }
        if !(0.0..=MAX_PRICE_USD).contains(&self.price_usd) {
            return Err(fail(format!("price_usd must be between 0 and {MAX_PRICE_USD}")));
        }
        if self.rate_per_minute == Some(0) {
            return Err(fail("rate_per_minute must be at least 1".to_owned()));
        }
        if self.price_source.trim().is_empty() {
            return Err(fail("price_source is empty: say where the price was read".to_owned()));
        }
        Ok(ModelEntry {
            name,
            provider: self.provider,
            provider_model,
            sizes,
            formats,
            max_outputs,
            price_per_image: (self.price_usd * 1_000_000.0).round() as u64,
            price_source: self.price_source,
            fallback: self.fallback,
            rate_per_minute: self.rate_per_minute,
        })
    }
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
    },
    Supported {
        name: "black-forest-labs/flux-dev",
        size: SizeInput::AspectRatio,
        max_outputs: 4,
        takes_output_format: true,
        takes_negative_prompt: false,
    },
    Supported {
        name: "black-forest-labs/flux-1.1-pro",
        size: SizeInput::CustomAspectRatio,
        max_outputs: 1,
        takes_output_format: true,
        takes_negative_prompt: false,
    },
    Supported {
        name: "stability-ai/sdxl",
        size: SizeInput::WidthHeight,
        max_outputs: 4,
        takes_output_format: false,
        takes_negative_prompt: true,
    },
];

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

    fn catalogue(enabled: &[Provider]) -> Catalogue {
        Catalogue::parse(BUILT_IN, enabled).unwrap()
    }

    /// What a cold start reads, the JSON build.rs makes, is models.toml itself.
    #[test]
    fn the_built_in_catalogue_reads_the_same_as_json_and_as_toml() {
        for enabled in [&[Provider::Local][..], &Provider::ALL[..]] {
            assert_eq!(Catalogue::built_in(enabled).unwrap(), catalogue(enabled));
        }
    }

    #[test]
    fn the_built_in_catalogue_offers_the_models_of_the_enabled_providers() {
        let local = catalogue(&[Provider::Local]);
        assert_eq!(local.names(), [LOCAL_MODEL, LOCAL_SLOW_MODEL]);
        assert_eq!(local.default_model(), LOCAL_MODEL);
        let replicate = catalogue(&[Provider::Replicate]);
        assert_eq!(replicate.default_model(), DEFAULT_REPLICATE_MODEL);
        let all = catalogue(&[
            Provider::Local,
            Provider::Replicate,
            Provider::OpenAi,
            Provider::Bedrock,
        ]);
        assert!(all.uses(Provider::Bedrock) && all.uses(Provider::OpenAi));
        let gpt = all.entry("gpt-image-1").unwrap();
        assert_eq!(gpt.price_per_image, 42_000);
        assert_eq!(gpt.sizes.len(), 3);
        let chain = all.fallback_chain("gpt-image-1");
        assert_eq!(chain, ["gpt-image-1", "stable-image-core"]);
        assert_eq!(
            all.entry("stable-image-core").unwrap().provider_model,
            "stability.stable-image-core-v1:1"
        );
    }

    #[test]
    fn fallbacks_to_providers_not_enabled_are_left_out() {
        let openai = catalogue(&[Provider::OpenAi]);
        assert!(openai.entry("gpt-image-1").unwrap().fallback.is_empty());
    }

    #[test]
    fn mistakes_in_the_file_are_named_with_their_model() {
        let entry = |extra: &str| {
            format!(
                "[[models]]\nname = \"m\"\nprovider = \"replicate\"\nmodel = \"black-forest-labs/flux-schnell\"\nprice_usd = 0.01\nprice_source = \"x\"\n{extra}"
            )
        };
        for (extra, wanted) in [
            ("sizes = [\"big\"]", "not a size"),
            ("formats = [\"gif\"]", "gif"),
            ("max_outputs = 9", "max_outputs"),
            ("fallback = [\"nowhere\"]", "nowhere"),
            ("colour = \"red\"", "colour"),
        ] {
            let err = Catalogue::parse(&entry(extra), &[Provider::Replicate]).unwrap_err();
            assert!(err.contains(wanted), "{extra}: {err}");
        }
        let twice = format!("{}\n{}", entry(""), entry(""));
        assert!(
            Catalogue::parse(&twice, &[Provider::Replicate])
                .unwrap_err()
                .contains("twice")
        );
        let err = Catalogue::parse(&entry(""), &[Provider::Local]).unwrap_err();
        assert!(err.contains("no model of the enabled providers (local)"), "{err}");
        let unknown = entry("").replace("black-forest-labs/flux-schnell", "acme/painter");
        assert!(
            Catalogue::parse(&unknown, &[Provider::Replicate])
                .unwrap_err()
                .contains("model m")
        );
    }

    #[test]
    fn an_allow_list_keeps_the_default_and_refuses_what_is_not_offered() {
        let all = catalogue(&[Provider::Local, Provider::Replicate]);
        let only = all.clone().only(&["black-forest-labs/flux-dev".into()]).unwrap();
        assert_eq!(only.names(), [LOCAL_MODEL, "black-forest-labs/flux-dev"]);
        assert!(only.entry("black-forest-labs/flux-dev").unwrap().fallback.is_empty());
        assert!(all.clone().only(&["gpt-image-1".into()]).is_err());
        assert_eq!(all.with_default("local-slow").unwrap().default_model(), "local-slow");
    }

    #[test]
    fn limits_are_a_providers_or_a_models_own() {
        let all = catalogue(&[Provider::Replicate]);
        assert_eq!(
            all.limit(Provider::Replicate),
            Some(ProviderLimit { rate_per_minute: 600 })
        );
        assert_eq!(all.limit(Provider::Local), None);
        assert_eq!(
            all.limit_of("black-forest-labs/flux-dev"),
            Some(("replicate".to_owned(), ProviderLimit { rate_per_minute: 600 }))
        );
        let own = format!(
            "{BUILT_IN}\n[[models]]\nname = \"slow-lane\"\nprovider = \"local\"\nmodel = \"local\"\nrate_per_minute = 6\nprice_usd = 0\nprice_source = \"t\"\n"
        );
        let own = Catalogue::parse(&own, &[Provider::Local]).unwrap();
        assert_eq!(
            own.limit_of("slow-lane"),
            Some(("model:slow-lane".to_owned(), ProviderLimit { rate_per_minute: 6 }))
        );
        assert_eq!(own.limit_of("local"), None);
        let bad = format!("{BUILT_IN}\n[providers.dalle]\nrate_per_minute = 5\n");
        assert!(
            Catalogue::parse(&bad, &[Provider::Local])
                .unwrap_err()
                .contains("not a provider")
        );
    }

    #[test]
    fn sizes_fit_by_shape_or_are_refused_with_the_allowed_ones() {
        let sizes: Vec<Size> = ["1024x1024", "1536x1024", "1024x1536"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let fit = |w, h| fit_size(&sizes, w, h).map(|s| s.map(|s| s.to_string()));
        assert_eq!(fit(1024, 1024), Ok(Some("1024x1024".into())));
        assert_eq!(fit(512, 512), Ok(Some("1024x1024".into())));
        assert_eq!(fit(1440, 960), Ok(Some("1536x1024".into())));
        assert_eq!(fit(960, 1440), Ok(Some("1024x1536".into())));
        let err = fit(1440, 256).unwrap_err();
        assert!(err.contains("1024x1024, 1536x1024, 1024x1536"), "{err}");
        assert_eq!(fit_size(&[], 1440, 256), Ok(None));
    }
}
