//! The body of `POST /media/generate`, parsed into values that are valid by construction
//! (docs/design.md, "HTTP contract"). Every rule lives here; a failure names its field.

use serde::Serialize;
use serde_json::{Map, Value};
use std::net::IpAddr;
use url::{Host, Url};

use super::catalogue::{Catalogue, fit_size};
use super::format::OutputFormat;
use super::network::is_public;

pub const MAX_PROMPT_CHARS: usize = 2000;
pub const MIN_SIDE: u32 = 256;
pub const MAX_SIDE: u32 = 1440;
pub const SIDE_STEP: u32 = 32;
pub const DEFAULT_SIDE: u32 = 1024;
pub use super::catalogue::MAX_OUTPUTS;

const FIELDS: [&str; 9] = [
    "prompt",
    "negative_prompt",
    "model",
    "width",
    "height",
    "num_outputs",
    "seed",
    "output_format",
    "webhook_url",
];

/// One rule a field broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub num_outputs: u32,
    pub seed: u32,
    pub output_format: OutputFormat,
    pub webhook_url: Option<Url>,
}

/// What the deployment allows, which the rules depend on.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// The models offered, with the sizes and formats each makes.
    pub catalogue: Catalogue,
    pub allow_local_urls: bool,
}

impl GenerateRequest {
    /// Checks every field and reports every broken rule at once.
    pub fn parse(body: &Value, policy: &RequestPolicy) -> Result<Self, Vec<FieldError>> {
        let Some(object) = body.as_object() else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|key| !FIELDS.contains(&key.as_str()))
            .map(|key| FieldError::new(key.as_str(), "unknown field"))
            .collect();
        let mut field = Fields {
            object,
            errors: &mut errors,
        };

        let prompt = field.text("prompt", true).unwrap_or_default();
        let negative_prompt = field.text("negative_prompt", false).filter(|p| !p.is_empty());
        let model = field.model(policy);
        let width = field.side("width");
        let height = field.side("height");
        let num_outputs = field
            .integer("num_outputs", 1, MAX_OUTPUTS as u64)
            .map_or(1, |n| n as u32);
        let seed = field
            .integer("seed", 0, u32::MAX as u64)
            .map_or_else(|| fastrand::u32(..), |s| s as u32);
        let output_format = field.output_format();
        let webhook_url = field.webhook_url(policy.allow_local_urls);
        if let Some(entry) = policy.catalogue.entry(&model) {
            if let Err(reason) = fit_size(&entry.sizes, width, height) {
                field.reject("width", reason);
            }
            if !entry.formats.contains(&output_format) {
                let makes: Vec<&str> = entry.formats.iter().map(|f| f.extension()).collect();
                field.reject(
                    "output_format",
                    format!("the model {model} makes only {}", makes.join(", ")),
                );
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(GenerateRequest {
            prompt,
            negative_prompt,
            model,
            width,
            height,
            num_outputs,
            seed,
            output_format,
            webhook_url,
        })
    }
}

struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl Fields<'_> {
    /// The field's value, treating `null` as absent.
    fn get(&self, name: &str) -> Option<&Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    fn reject(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    fn text(&mut self, name: &str, required: bool) -> Option<String> {
        match self.get(name) {
            None if required => {
                self.reject(name, "is required");
                None
            }
            None => None,
            Some(Value::String(raw)) => {
                let trimmed = raw.trim();
                let chars = trimmed.chars().count();
                if required && chars == 0 {
                    self.reject(name, "must not be empty");
                    None
                } else if chars > MAX_PROMPT_CHARS {
                    self.reject(
                        name,
                        format!("must be at most {MAX_PROMPT_CHARS} characters, got {chars}"),
                    );
                    None
                } else {
                    Some(trimmed.to_owned())
                }
            }
            Some(_) => {
                self.reject(name, "must be a string");
                None
            }
        }
    }

    fn integer(&mut self, name: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.get(name)?;
        // JSON has one number type: 512.0 is the integer 512 (JSON Schema agrees).
        let whole = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        });
        match whole {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ if value.is_number() => {
                self.reject(name, format!("must be a whole number from {min} to {max}"));
                None
            }
            _ => {
                self.reject(name, "must be an integer");
                None
            }
        }
    }

    fn side(&mut self, name: &str) -> u32 {
        let Some(side) = self.integer(name, MIN_SIDE as u64, MAX_SIDE as u64) else {
            return DEFAULT_SIDE;
        };
        if side % SIDE_STEP as u64 != 0 {
            self.reject(name, format!("must be a multiple of {SIDE_STEP}"));
            return DEFAULT_SIDE;
        }
        side as u32
    }

    fn model(&mut self, policy: &RequestPolicy) -> String {
        let default = policy.catalogue.default_model();
        match self.get("model") {
            None => default.to_owned(),
            Some(Value::String(model)) if policy.catalogue.entry(model).is_some() => model.clone(),
            Some(_) => {
                let allowed = policy.catalogue.names().join(", ");
                self.reject("model", format!("must be one of: {allowed}"));
                default.to_owned()
            }
        }
    }

    fn output_format(&mut self) -> OutputFormat {
        match self.get("output_format") {
            None => OutputFormat::Png,
            Some(value) => match value.as_str().and_then(OutputFormat::parse) {
                Some(format) => format,
                None => {
                    self.reject("output_format", "must be one of: png, webp, jpg");
                    OutputFormat::Png
                }
            },
        }
    }

    fn webhook_url(&mut self, allow_local: bool) -> Option<Url> {
        let raw = match self.get("webhook_url")? {
            Value::String(raw) => raw,
            _ => {
                self.reject("webhook_url", "must be a string");
                return None;
            }
        };
        match check_webhook_url(raw, allow_local) {
            Ok(url) => Some(url),
            Err(message) => {
                self.reject("webhook_url", message);
                None
            }
        }
    }
}

/// `https://` to a public host; with local URLs allowed, also `http://` to loopback.
/// Hostnames are checked again, resolved, when the webhook is delivered.
fn check_webhook_url(raw: &str, allow_local: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let loopback = match url.host() {
        None => return Err("must name a host".into()),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => {
            let ip = IpAddr::V4(ip);
            if !ip.is_loopback() && !is_public(ip) {
                return Err("must not point to a private or reserved address".into());
            }
            ip.is_loopback()
        }
        Some(Host::Ipv6(ip)) => {
            let ip = IpAddr::V6(ip);
            if !ip.is_loopback() && !is_public(ip) {
                return Err("must not point to a private or reserved address".into());
            }
            ip.is_loopback()
        }
    };
    match (url.scheme(), loopback, allow_local) {
        (_, true, false) => Err("must not point to a loopback address".into()),
        ("https", _, _) => Ok(url),
        ("http", true, true) => Ok(url),
        ("http", false, true) => Err("must use https:// (http:// is allowed only to loopback)".into()),
        _ => Err("must use https://".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::catalogue::Provider;
    use serde_json::json;

    pub(crate) fn policy() -> RequestPolicy {
        let catalogue = format!(
            "{}\n[[models]]\nname = \"other\"\nprovider = \"local\"\nmodel = \"local\"\nprice_usd = 0.04\nprice_source = \"test\"\n",
            crate::domain::catalogue::BUILT_IN
        );
        RequestPolicy {
            catalogue: Catalogue::parse(&catalogue, &[Provider::Local, Provider::OpenAi]).unwrap(),
            allow_local_urls: false,
        }
    }

    pub(crate) fn sample_request() -> GenerateRequest {
        GenerateRequest::parse(&json!({"prompt": "a lighthouse at dusk", "seed": 7}), &policy()).unwrap()
    }

    fn errors(body: Value) -> Vec<FieldError> {
        GenerateRequest::parse(&body, &policy()).unwrap_err()
    }

    fn fields(body: Value) -> Vec<String> {
        errors(body).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_bare_prompt_gets_the_defaults() {
        let request = GenerateRequest::parse(&json!({"prompt": "  a cat  "}), &policy()).unwrap();
        assert_eq!(request.prompt, "a cat");
        assert_eq!((request.width, request.height), (1024, 1024));
        assert_eq!(request.num_outputs, 1);
        assert_eq!(request.model, "local");
        assert_eq!(request.output_format, OutputFormat::Png);
        assert_eq!(request.negative_prompt, None);
    }

    #[test]
    fn every_field_at_its_limits_is_accepted() {
        let request = GenerateRequest::parse(
            &json!({
                "prompt": "x".repeat(2000),
                "negative_prompt": "y".repeat(2000),
                "model": "other",
                "width": 256,
                "height": 1440,
                "num_outputs": 4,
                "seed": 4294967295u64,
                "output_format": "webp",
                "webhook_url": "https://example.com/hook",
            }),
            &policy(),
        )
        .unwrap();
        assert_eq!((request.width, request.height, request.num_outputs), (256, 1440, 4));
        assert_eq!(request.seed, u32::MAX);
        assert_eq!(request.output_format, OutputFormat::Webp);
    }

    #[test]
    fn a_model_with_fixed_sizes_or_formats_refuses_others_naming_what_it_makes() {
        let sizes = errors(json!({"prompt": "p", "model": "gpt-image-1", "width": 1440, "height": 256}));
        assert_eq!(sizes.len(), 1);
        assert_eq!(sizes[0].field, "width");
        assert!(
            sizes[0].message.contains("1024x1024, 1536x1024, 1024x1536"),
            "{sizes:?}"
        );
        let formats = errors(json!({"prompt": "p", "model": "dall-e-3", "output_format": "webp"}));
        assert_eq!(formats[0].field, "output_format");
        assert!(formats[0].message.contains("makes only png"), "{formats:?}");
        let fits = json!({"prompt": "p", "model": "gpt-image-1", "width": 1440, "height": 960});
        assert!(GenerateRequest::parse(&fits, &policy()).is_ok());
    }

    #[test]
    fn prompt_rules() {
        assert_eq!(fields(json!({})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": "   "})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": "x".repeat(2001)})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": 5})), ["prompt"]);
        // Characters, not bytes: 2000 multi-byte characters are fine.
        assert!(GenerateRequest::parse(&json!({"prompt": "é".repeat(2000)}), &policy()).is_ok());
    }

    #[test]
    fn negative_prompt_rules() {
        assert_eq!(
            fields(json!({"prompt": "a", "negative_prompt": "n".repeat(2001)})),
            ["negative_prompt"]
        );
        assert_eq!(
            fields(json!({"prompt": "a", "negative_prompt": []})),
            ["negative_prompt"]
        );
    }

    #[test]
    fn size_rules() {
        for bad in [
            json!(224),
            json!(1472),
            json!(300),
            json!(512.5),
            json!(-512),
            json!("512"),
        ] {
            assert_eq!(fields(json!({"prompt": "a", "width": bad.clone()})), ["width"], "{bad}");
            assert_eq!(
                fields(json!({"prompt": "a", "height": bad.clone()})),
                ["height"],
                "{bad}"
            );
        }
    }

    #[test]
    fn count_seed_and_format_rules() {
        assert_eq!(fields(json!({"prompt": "a", "num_outputs": 0})), ["num_outputs"]);
        assert_eq!(fields(json!({"prompt": "a", "num_outputs": 5})), ["num_outputs"]);
        assert_eq!(fields(json!({"prompt": "a", "seed": -1})), ["seed"]);
        assert_eq!(fields(json!({"prompt": "a", "seed": 4294967296u64})), ["seed"]);
        assert_eq!(
            fields(json!({"prompt": "a", "output_format": "gif"})),
            ["output_format"]
        );
        assert_eq!(fields(json!({"prompt": "a", "model": "dall-e"})), ["model"]);
    }

    #[test]
    fn absent_seed_is_drawn_at_random() {
        let a = GenerateRequest::parse(&json!({"prompt": "a"}), &policy()).unwrap().seed;
        let b = GenerateRequest::parse(&json!({"prompt": "a"}), &policy()).unwrap().seed;
        let c = GenerateRequest::parse(&json!({"prompt": "a"}), &policy()).unwrap().seed;
        assert!(a != b || b != c);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        assert_eq!(fields(json!({"prompt": "a", "steps": 30})), ["steps"]);
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        assert_eq!(
            fields(json!({"width": 1, "num_outputs": 9, "extra": true})),
            ["extra", "prompt", "width", "num_outputs"]
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_rejected() {
        assert_eq!(fields(json!(["prompt"])), ["body"]);
    }

    #[test]
    fn webhook_rules() {
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/hook",
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.0.0.8/hook",
            "https://169.254.169.254/latest",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://user:pw@example.com/hook",
            "not a url",
        ] {
            assert_eq!(
                fields(json!({"prompt": "a", "webhook_url": bad})),
                ["webhook_url"],
                "{bad}"
            );
        }
    }

    #[test]
    fn local_webhooks_only_when_allowed() {
        let mut local = policy();
        local.allow_local_urls = true;
        for ok in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "https://example.com/hook",
        ] {
            assert!(
                GenerateRequest::parse(&json!({"prompt": "a", "webhook_url": ok}), &local).is_ok(),
                "{ok}"
            );
        }
        let err = GenerateRequest::parse(&json!({"prompt": "a", "webhook_url": "http://example.com"}), &local);
        assert!(err.is_err());
        // Instance metadata stays shut, in any form of its address.
        for bad in [
            "http://169.254.169.254/",
            "https://169.254.169.254/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "https://[::ffff:0:a9fe:a9fe]/",
        ] {
            assert!(
                GenerateRequest::parse(&json!({"prompt": "a", "webhook_url": bad}), &local).is_err(),
                "{bad}"
            );
        }
    }
}
