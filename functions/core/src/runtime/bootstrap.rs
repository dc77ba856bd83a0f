//! What every function does at cold start: logs, settings, the AWS configuration, and the
//! adapters the settings choose.

use aws_config::SdkConfig;

use super::config::{Config, ConfigError};
use crate::adapters::image_model::Models;
use crate::adapters::sqs::{SqsJobQueue, SqsWebhookQueue};
use crate::adapters::{aws, ssm};
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

/// The models the catalogue offers, on the providers they use, each built once at cold start
/// with its own settings and token (adapters/image_model/mod.rs).
pub async fn image_model(config: &Config, sdk: &SdkConfig) -> Result<Models, ConfigError> {
    Models::start(&config.catalogue, &config.providers, sdk).await
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
