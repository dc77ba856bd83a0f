//! What every function does at cold start: logs, settings, the AWS configuration, and the
//! adapters the settings choose.

use aws_config::SdkConfig;

use super::config::{Config, ConfigError};
use crate::adapters::image_model::{Models, local::LocalModel, openai, replicate};
use crate::adapters::sqs::{SqsJobQueue, SqsWebhookQueue};
use crate::adapters::{aws, ssm};
use crate::domain::catalogue::Provider;
use crate::domain::file_urls::FileLinkSigner;
use crate::domain::secret::Secret;
use crate::domain::webhook::MasterKey;
use crate::entrypoints::views::FileLinks;
use crate::services::webhooks::{Notifier, SigningKeys};

/// Starts logging and reads the settings; a bad setting ends the process with one line naming it.
pub async fn cold_start() -> (Config, SdkConfig) {
    super::telemetry::init();
    let config = or_exit(Config::from_env());
    (config, crate::adapters::aws::sdk_config().await)
}

/// The value, or the end of the process with the error on one line.
pub fn or_exit<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            tracing::error!(error = %err, "cold start failed");
            eprintln!("{err}");
            std::process::exit(1);
        }
    }
}

/// A secret the SSM parameter `setting` names holds, read once, at cold start (docs/design.md,
/// "Configuration"): `None` when no parameter is named.
async fn stored_secret(
    sdk: &SdkConfig,
    setting: &'static str,
    parameter: Option<&String>,
) -> Result<Option<Secret>, ConfigError> {
    let Some(parameter) = parameter else {
        return Ok(None);
    };
    ssm::parameter(sdk, parameter)
        .await
        .map(Some)
        .map_err(|reason| ConfigError::Invalid {
            name: setting,
            value: parameter.clone(),
            reason,
        })
}

/// How the Replicate-compatible API's file links are made: signed for as long as the presigned
/// URLs live when `FILE_URL_SECRET_PARAMETER` names the key.
pub async fn file_links(config: &Config, sdk: &SdkConfig) -> Result<FileLinks, ConfigError> {
    let secret = stored_secret(
        sdk,
        "FILE_URL_SECRET_PARAMETER",
        config.file_url_secret_parameter.as_ref(),
    )
    .await?;
    Ok(FileLinks {
        signer: secret.map(FileLinkSigner::new),
        ttl: config.presign_ttl,
    })
}

/// The configured image model; the Replicate model needs its token: `REPLICATE_API_TOKEN` (a local
/// run), else the SSM parameter `REPLICATE_API_TOKEN_PARAMETER` names (a deployed stack), read
/// once at cold start.
pub async fn image_model(config: &Config, sdk: &SdkConfig) -> Result<Models, ConfigError> {
    let catalogue = &config.catalogue;
    let replicate = if catalogue.uses(Provider::Replicate) {
        let token = provider_token(
            sdk,
            ("REPLICATE_API_TOKEN", config.replicate_api_token.as_ref()),
            (
                "REPLICATE_API_TOKEN_PARAMETER",
                config.replicate_api_token_parameter.as_ref(),
            ),
        )
        .await?;
        let settings = replicate::ReplicateSettings {
            api_base_url: config.replicate_api_base_url.clone(),
            token,
            allow_local_urls: config.allow_local_urls,
            max_output_bytes: config.max_output_bytes,
        };
        Some(replicate::ReplicateModel::new(settings).map_err(ConfigError::Startup)?)
    } else {
        None
    };
    let openai = if catalogue.uses(Provider::OpenAi) {
        let token = provider_token(
            sdk,
            ("OPENAI_API_KEY", config.openai_api_key.as_ref()),
            ("OPENAI_API_KEY_PARAMETER", config.openai_api_key_parameter.as_ref()),
        )
        .await?;
        let settings = openai::OpenAiSettings {
            api_base_url: config.openai_api_base_url.clone(),
            token,
            allow_local_urls: config.allow_local_urls,
        };
        Some(openai::OpenAiModel::new(settings).map_err(ConfigError::Startup)?)
    } else {
        None
    };
    Ok(Models {
        catalogue: catalogue.clone(),
        local: LocalModel,
        replicate,
        openai,
        // Bedrock is called with the function's own role: no token to read.
        #[cfg(feature = "bedrock")]
        bedrock: catalogue
            .uses(Provider::Bedrock)
            .then(|| crate::adapters::image_model::bedrock::BedrockModel::new(sdk)),
    })
}

/// A provider's token: from its variable if set, else from the SSM parameter named.
async fn provider_token(
    sdk: &SdkConfig,
    (variable, value): (&'static str, Option<&Secret>),
    (parameter_setting, parameter): (&'static str, Option<&String>),
) -> Result<Secret, ConfigError> {
    match (value, parameter) {
        (Some(token), _) => Ok(token.clone()),
        (None, Some(parameter)) => ssm::parameter(sdk, parameter)
            .await
            .map_err(|reason| ConfigError::Invalid {
                name: parameter_setting,
                value: parameter.clone(),
                reason,
            }),
        (None, None) => Err(ConfigError::Missing(variable)),
    }
}

/// What queues the webhooks of final jobs: off when `WEBHOOKS_QUEUE_URL` is unset.
pub fn webhook_notifier(config: &Config, sdk: &SdkConfig) -> Notifier {
    match &config.webhooks_queue_url {
        Some(url) => Notifier::new(SqsWebhookQueue::new(aws::sqs(sdk), url)),
        None => Notifier::off(),
    }
}

/// The queue `deliver` takes webhooks from; it needs one.
pub fn webhook_queue(config: &Config, sdk: &SdkConfig) -> Result<SqsWebhookQueue, ConfigError> {
    let url = config
        .webhooks_queue_url
        .as_ref()
        .ok_or(ConfigError::Missing("WEBHOOKS_QUEUE_URL"))?;
    Ok(SqsWebhookQueue::new(aws::sqs(sdk), url))
}

/// The jobs dead-letter queue `sweeper` takes messages from; it needs one.
pub fn dead_letter_queue(config: &Config, sdk: &SdkConfig) -> Result<SqsJobQueue, ConfigError> {
    let url = config
        .jobs_dead_letter_queue_url
        .as_ref()
        .ok_or(ConfigError::Missing("JOBS_DEAD_LETTER_QUEUE_URL"))?;
    Ok(SqsJobQueue::new(aws::sqs(sdk), url))
}

/// The owners' webhook signing keys, from the master key `WEBHOOK_SECRET_PARAMETER` names;
/// `None` when this deployment signs no webhooks (`deliver` needs them).
pub async fn signing_keys(config: &Config, sdk: &SdkConfig) -> Result<Option<SigningKeys>, ConfigError> {
    let setting = "WEBHOOK_SECRET_PARAMETER";
    let Some(secret) = stored_secret(sdk, setting, config.webhook_secret_parameter.as_ref()).await? else {
        return Ok(None);
    };
    // The value is a secret: the error names the setting only.
    let master = MasterKey::parse(&secret).map_err(|e| ConfigError::Invalid {
        name: setting,
        value: "(not shown)".into(),
        reason: e.to_string(),
    })?;
    Ok(Some(SigningKeys::new(master)))
}
