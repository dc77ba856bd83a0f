//! Settings read from the environment once per cold start (docs/design.md, "Configuration").

use std::collections::HashMap;
use std::time::Duration;

use crate::adapters::image_model::ProviderSettings;
pub use crate::adapters::settings::ConfigError;
use crate::adapters::settings::{parse_or, parse_within};
use crate::domain::catalogue::{Catalogue, Provider};
use crate::domain::generation::RequestPolicy;
use crate::domain::quota::QuotaDefaults;
use crate::services::stream::StreamTiming;

#[derive(Debug, Clone)]
pub struct Config {
    pub jobs_table: String,
    pub jobs_queue_url: String,
    pub media_bucket: String,
    /// The models offered, from the catalogue file (`MODEL_CATALOGUE`, else models.toml): those
    /// of the providers `MODEL_PROVIDER` enables, narrowed by `ALLOWED_MODELS`, with
    /// `DEFAULT_MODEL` as the default if set.
    pub catalogue: Catalogue,
    pub presign_ttl: Duration,
    pub retention: Duration,
    pub max_receive_count: u32,
    /// The function's memory, which Lambda sets (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`): the Lambda
    /// share of a job's cost.
    pub memory_mb: u32,
    /// The longest a job may wait for its slot at its model's provider: past it, submit refuses
    /// (docs/design.md, "Provider limits").
    pub longest_provider_wait: Duration,
    /// The quota of an owner who has none set (docs/design.md, "Quotas").
    pub quota_defaults: QuotaDefaults,
    /// The SSM parameter (a SecureString) holding the key that signs the Replicate-compatible
    /// API's file links, so that any HTTP client can fetch them until they expire; without it
    /// those links need the API key.
    pub file_url_secret_parameter: Option<String>,
    /// Whether webhooks and providers may be reached on local and private addresses.
    pub allow_local_urls: bool,
    /// Each image model provider's own settings (image_model/mod.rs).
    pub providers: ProviderSettings,
    /// Endpoint used only to sign presigned URLs, when clients reach storage by another address
    /// than the functions do (inside LocalStack, say).
    pub presign_endpoint_url: Option<String>,
    /// The webhook deliveries queue; without it no webhook is queued.
    pub webhooks_queue_url: Option<String>,
    /// The jobs queue's dead-letter queue, which `sweeper` takes messages from.
    pub jobs_dead_letter_queue_url: Option<String>,
    /// The SSM parameter (a SecureString) holding the master key webhooks are signed with
    /// (owners' keys derive from it), `whsec_<base64>`; `deliver` needs it. Checked when read.
    pub webhook_secret_parameter: Option<String>,
    /// How a progress stream paces itself: its heartbeat (`STREAM_HEARTBEAT_SECONDS`, 1–15) and
    /// the longest one connection stays open (`STREAM_LONGEST_SECONDS`, 10–870: inside the
    /// `stream` function's 900 s timeout in template.yaml).
    pub stream_timing: StreamTiming,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));

        let catalogue = catalogue(&get)?;

        let presign_ttl_seconds: u64 = parse_within(
            &get,
            "PRESIGN_TTL_SECONDS",
            900,
            60..=604_800,
            "must be between 60 and 604800 (7 days, the SigV4 limit)",
        )?;
        // Bounded as template.yaml bounds it: days in seconds must not overflow, nor expiry times.
        let retention_days: u64 = parse_within(
            &get,
            "RETENTION_DAYS",
            30,
            1..=3650,
            "must be between 1 and 3650 (ten years)",
        )?;
        let max_receive_count: u32 = parse_within(&get, "MAX_RECEIVE_COUNT", 5, 1..=u32::MAX, "must be at least 1")?;
        let max_active_jobs: u32 = parse_within(
            &get,
            "MAX_ACTIVE_JOBS_PER_OWNER",
            QuotaDefaults::MAX_ACTIVE,
            1..=u32::MAX,
            "must be at least 1",
        )?;
        let heartbeat: u64 = parse_within(&get, "STREAM_HEARTBEAT_SECONDS", 10, 1..=15, "must be between 1 and 15")?;
        let longest: u64 = parse_within(
            &get,
            "STREAM_LONGEST_SECONDS",
            840,
            10..=870,
            "must be between 10 and 870",
        )?;
        let allow_local_urls = match get("ALLOW_LOCAL_URLS").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => return Err(invalid("ALLOW_LOCAL_URLS", other, "expected true or false")),
        };

        Ok(Config {
            jobs_table: required("JOBS_TABLE")?,
            jobs_queue_url: required("JOBS_QUEUE_URL")?,
            media_bucket: required("MEDIA_BUCKET")?,
            catalogue,
            presign_ttl: Duration::from_secs(presign_ttl_seconds),
            retention: Duration::from_secs(retention_days * 86_400),
            max_receive_count,
            memory_mb: parse_or(&get, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 1024)?,
            // Fifteen minutes, as SQS delays a message at most.
            longest_provider_wait: Duration::from_secs(parse_or(&get, "MAX_PROVIDER_WAIT_SECONDS", 900)?),
            stream_timing: StreamTiming {
                heartbeat: Duration::from_secs(heartbeat),
                longest: Duration::from_secs(longest),
            },
            quota_defaults: QuotaDefaults {
                max_active: max_active_jobs,
            },
            file_url_secret_parameter: get("FILE_URL_SECRET_PARAMETER"),
            allow_local_urls,
            providers: ProviderSettings::parse(&get, allow_local_urls)?,
            presign_endpoint_url: get("PRESIGN_ENDPOINT_URL"),
            webhooks_queue_url: get("WEBHOOKS_QUEUE_URL"),
            jobs_dead_letter_queue_url: get("JOBS_DEAD_LETTER_QUEUE_URL"),
            webhook_secret_parameter: get("WEBHOOK_SECRET_PARAMETER"),
        })
    }
}

impl Config {
    /// The request rules this deployment imposes.
    pub fn request_policy(&self) -> RequestPolicy {
        RequestPolicy {
            catalogue: self.catalogue.clone(),
            allow_local_urls: self.allow_local_urls,
        }
    }
}

/// The catalogue as configured: its file, the providers enabled, the allow-list, the default.
fn catalogue(get: &impl Fn(&'static str) -> Option<String>) -> Result<Catalogue, ConfigError> {
    let enabled = get("MODEL_PROVIDER").unwrap_or_else(|| "local".to_owned());
    let providers = enabled
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            Provider::parse(p).ok_or_else(|| {
                let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
                invalid(
                    "MODEL_PROVIDER",
                    &enabled,
                    &format!(
                        "{p:?} is not a provider: expected a comma-separated list of {}",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut catalogue = match get("MODEL_CATALOGUE") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| invalid("MODEL_CATALOGUE", &path, &e.to_string()))?;
            Catalogue::parse(&text, &providers).map_err(|reason| invalid("MODEL_CATALOGUE", &path, &reason))?
        }
        None => Catalogue::built_in(&providers)
            .map_err(|reason| invalid("MODEL_CATALOGUE", "the built-in models.toml", &reason))?,
    };
    if let Some(default) = get("DEFAULT_MODEL") {
        catalogue = catalogue
            .with_default(&default)
            .map_err(|reason| invalid("DEFAULT_MODEL", &default, &reason))?;
    }
    if let Some(list) = get("ALLOWED_MODELS") {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        catalogue = catalogue
            .only(&names)
            .map_err(|reason| invalid("ALLOWED_MODELS", &list, &reason))?;
    }
    Ok(catalogue)
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::invalid(name, value, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("JOBS_TABLE", "jobs"),
            ("JOBS_QUEUE_URL", "http://queue"),
            ("MEDIA_BUCKET", "media"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn defaults_fill_everything_optional() {
        let config = Config::from_map(&base()).unwrap();
        assert_eq!(config.catalogue.default_model(), "local");
        assert_eq!(config.catalogue.names(), ["local", "local-slow"]);
        assert_eq!(config.presign_ttl, Duration::from_secs(900));
        assert_eq!(config.max_receive_count, 5);
        assert!(!config.allow_local_urls);
    }

    #[test]
    fn each_required_setting_is_named_when_missing() {
        for name in ["JOBS_TABLE", "JOBS_QUEUE_URL", "MEDIA_BUCKET"] {
            let mut vars = base();
            vars.remove(name);
            let err = Config::from_map(&vars).unwrap_err();
            assert_eq!(err, ConfigError::Missing(name));
            assert!(err.to_string().contains(name));
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn invalid_values_name_the_setting() {
        for (name, value) in [
            ("PRESIGN_TTL_SECONDS", "soon"),
            ("PRESIGN_TTL_SECONDS", "10"),
            ("MODEL_PROVIDER", "dalle"),
            ("ALLOW_LOCAL_URLS", "maybe"),
            ("MAX_RECEIVE_COUNT", "0"),
            ("MAX_ACTIVE_JOBS_PER_OWNER", "0"),
            ("MAX_ACTIVE_JOBS_PER_OWNER", "many"),
            ("RETENTION_DAYS", "0"),
            ("RETENTION_DAYS", "3651"),
            ("RETENTION_DAYS", "213503982334601"),
        ] {
            let mut vars = base();
            vars.insert(name.to_owned(), value.to_owned());
            let err = Config::from_map(&vars).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn allowed_models_always_include_the_default() {
        let mut vars = base();
        vars.insert("MODEL_PROVIDER".into(), "replicate".into());
        vars.insert("ALLOWED_MODELS".into(), "black-forest-labs/flux-dev".into());
        let config = Config::from_map(&vars).unwrap();
        assert_eq!(
            config.catalogue.names(),
            ["black-forest-labs/flux-schnell", "black-forest-labs/flux-dev"]
        );
    }

    #[test]
    fn models_the_providers_cannot_run_are_refused_at_start() {
        let mut vars = base();
        vars.insert("ALLOWED_MODELS".into(), "black-forest-labs/flux-dev".into());
        let err = Config::from_map(&vars).unwrap_err().to_string();
        assert!(err.contains("ALLOWED_MODELS"), "{err}");
        vars.insert("MODEL_PROVIDER".into(), "replicate".into());
        vars.insert("ALLOWED_MODELS".into(), "openai/dall-e-3".into());
        let err = Config::from_map(&vars).unwrap_err().to_string();
        assert!(err.contains("ALLOWED_MODELS") && err.contains("dall-e-3"), "{err}");
    }

    #[test]
    fn providers_are_a_list_and_a_catalogue_file_replaces_the_built_in_one() {
        let mut vars = base();
        vars.insert("MODEL_PROVIDER".into(), "local, openai,bedrock".into());
        let config = Config::from_map(&vars).unwrap();
        assert!(config.catalogue.entry("gpt-image-1").is_some());
        assert!(config.catalogue.entry("stable-image-core").is_some());
        assert!(config.catalogue.entry("black-forest-labs/flux-schnell").is_none());

        let file = std::env::temp_dir().join(format!("mediagen-catalogue-{}.toml", std::process::id()));
        std::fs::write(&file, "[[models]]\nname = \"only\"\nprovider = \"local\"\nmodel = \"local\"\nprice_usd = 0.5\nprice_source = \"test\"\n").unwrap();
        vars.insert("MODEL_CATALOGUE".into(), file.display().to_string());
        let config = Config::from_map(&vars).unwrap();
        assert_eq!(config.catalogue.names(), ["only"]);
        assert_eq!(config.catalogue.entry("only").unwrap().price_per_image, 500_000);
        std::fs::remove_file(&file).unwrap();
        let err = Config::from_map(&vars).unwrap_err().to_string();
        assert!(err.contains("MODEL_CATALOGUE"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let mut vars = base();
        vars.insert("REPLICATE_API_TOKEN".into(), "r8_supersecret".into());
        let config = Config::from_map(&vars).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
    }

    #[test]
    fn webhooks_are_optional_and_their_secret_is_a_parameter_in_the_secret_store() {
        let config = Config::from_map(&base()).unwrap();
        assert_eq!(
            (config.webhooks_queue_url, config.webhook_secret_parameter),
            (None, None)
        );

        let mut vars = base();
        vars.insert("WEBHOOKS_QUEUE_URL".into(), "http://webhooks".into());
        vars.insert("WEBHOOK_SECRET_PARAMETER".into(), "/mediagen/webhook-secret".into());
        vars.insert("FILE_URL_SECRET_PARAMETER".into(), "/mediagen/file-url-secret".into());
        let config = Config::from_map(&vars).unwrap();
        assert_eq!(config.webhooks_queue_url.as_deref(), Some("http://webhooks"));
        assert_eq!(
            config.webhook_secret_parameter.as_deref(),
            Some("/mediagen/webhook-secret")
        );
        assert_eq!(
            config.file_url_secret_parameter.as_deref(),
            Some("/mediagen/file-url-secret")
        );
    }
}
