//! What every function does at cold start: logs, settings, the AWS configuration, and the
//! adapters the settings choose.

use std::time::Duration;

use aws_config::SdkConfig;

use super::config::{Config, ConfigError};
use crate::adapters::aws;
use crate::adapters::image_model::Models;
use crate::adapters::settings::stored_secret;
use crate::adapters::sqs::{SqsJobQueue, SqsWebhookQueue};
use crate::domain::file_urls::FileLinkSigner;
use crate::domain::secret::Secret;
use crate::domain::webhook::MasterKey;
use crate::entrypoints::http::OnFirstUse;
use crate::entrypoints::views::FileLinks;
use crate::services::webhooks::{Notifier, SigningKeys, WebhookSecrets};

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

/// The secret the SSM parameter `setting` names holds, read once (docs/design.md,
/// "Configuration"): `None` when no parameter is named.
async fn named_secret(
    sdk: &SdkConfig,
    setting: &'static str,
    parameter: Option<&String>,
) -> Result<Option<Secret>, ConfigError> {
    match parameter {
        Some(parameter) => stored_secret(sdk, setting, parameter).await.map(Some),
        None => Ok(None),
    }
}

/// How the Replicate-compatible API's file links are made: signed for as long as the presigned
/// URLs live when `FILE_URL_SECRET_PARAMETER` names the key.
pub async fn file_links(config: &Config, sdk: &SdkConfig) -> Result<FileLinks, ConfigError> {
    links_signed_by(sdk, config.file_url_secret_parameter.as_ref(), config.presign_ttl).await
}

async fn links_signed_by(sdk: &SdkConfig, parameter: Option<&String>, ttl: Duration) -> Result<FileLinks, ConfigError> {
    let secret = named_secret(sdk, "FILE_URL_SECRET_PARAMETER", parameter).await?;
    Ok(FileLinks {
        signer: secret.map(FileLinkSigner::new),
        ttl,
    })
}

/// The file links, made at the first request that hands out or checks one: their key, when
/// there is one, is read from the secret store then (docs/design.md, "Configuration").
pub fn file_links_on_first_use(config: &Config, sdk: &SdkConfig) -> OnFirstUse<FileLinks> {
    let ttl = config.presign_ttl;
    let Some(parameter) = config.file_url_secret_parameter.clone() else {
        return OnFirstUse::ready(FileLinks { signer: None, ttl });
    };
    let sdk = sdk.clone();
    OnFirstUse::new(move || {
        let (sdk, parameter) = (sdk.clone(), parameter.clone());
        async move {
            links_signed_by(&sdk, Some(&parameter), ttl)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

/// The owners' webhook secrets, made at the first request for one: their master key is read
/// from the secret store then; `None` when this deployment signs no webhooks.
pub fn webhook_secrets_on_first_use<S>(
    config: &Config,
    sdk: &SdkConfig,
    store: S,
) -> OnFirstUse<Option<WebhookSecrets<S>>>
where
    S: Clone + Send + Sync + 'static,
{
    let Some(parameter) = config.webhook_secret_parameter.clone() else {
        return OnFirstUse::ready(None);
    };
    let sdk = sdk.clone();
    OnFirstUse::new(move || {
        let (sdk, parameter, store) = (sdk.clone(), parameter.clone(), store.clone());
        async move {
            let keys = keys_from(&sdk, Some(&parameter)).await.map_err(|e| e.to_string())?;
            Ok(keys.map(|keys| WebhookSecrets::new(store, keys)))
        }
    })
}

/// The models the catalogue offers, on the providers they use, each built once at cold start
/// with its own settings and token (adapters/image_model/mod.rs).
pub async fn image_model(config: &Config, sdk: &SdkConfig) -> Result<Models, ConfigError> {
    Models::start(&config.catalogue, &config.providers, sdk).await
}

/// What queues the webhooks of final jobs: off when `WEBHOOKS_QUEUE_URL` is unset. It sends
/// through the function's one SQS client, which its jobs queue shares.
pub fn webhook_notifier(config: &Config, sqs: &aws_sdk_sqs::Client) -> Notifier {
    match &config.webhooks_queue_url {
        Some(url) => Notifier::new(SqsWebhookQueue::new(sqs.clone(), url)),
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
pub fn dead_letter_queue(config: &Config, sqs: &aws_sdk_sqs::Client) -> Result<SqsJobQueue, ConfigError> {
    let url = config
        .jobs_dead_letter_queue_url
        .as_ref()
        .ok_or(ConfigError::Missing("JOBS_DEAD_LETTER_QUEUE_URL"))?;
    Ok(SqsJobQueue::new(sqs.clone(), url))
}

/// The owners' webhook signing keys, from the master key `WEBHOOK_SECRET_PARAMETER` names;
/// `None` when this deployment signs no webhooks (`deliver` needs them).
pub async fn signing_keys(config: &Config, sdk: &SdkConfig) -> Result<Option<SigningKeys>, ConfigError> {
    keys_from(sdk, config.webhook_secret_parameter.as_ref()).await
}

async fn keys_from(sdk: &SdkConfig, parameter: Option<&String>) -> Result<Option<SigningKeys>, ConfigError> {
    let setting = "WEBHOOK_SECRET_PARAMETER";
    let Some(secret) = named_secret(sdk, setting, parameter).await? else {
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
