//! What every function does at cold start: logs, settings, the AWS configuration, and the
//! adapters the settings choose.

use aws_config::SdkConfig;

use super::config::{Config, ConfigError};
use crate::adapters::image_model::{Model, local::LocalModel, replicate};
use crate::domain::catalogue::ModelProvider;
use crate::domain::file_urls::FileLinkSigner;
use crate::entrypoints::http::replicate::FileLinks;

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

/// How the Replicate-compatible API's file links are made: signed for as long as the presigned URLs
/// lifetime when `FILE_URL_SECRET` is set.
pub fn file_links(config: &Config) -> FileLinks {
    FileLinks {
        signer: config.file_url_secret.clone().map(FileLinkSigner::new),
        ttl: config.presign_ttl,
    }
}

/// The configured image model; the Replicate model needs its token.
pub fn image_model(config: &Config) -> Result<Model, ConfigError> {
    Ok(match config.model_provider {
        ModelProvider::Local => Model::Local(LocalModel),
        ModelProvider::Replicate => {
            let token = config
                .replicate_api_token
                .clone()
                .ok_or(ConfigError::Missing("REPLICATE_API_TOKEN"))?;
            let settings = replicate::ReplicateSettings {
                api_base_url: config.replicate_api_base_url.clone(),
                token,
                allow_local_urls: config.allow_local_urls,
                max_output_bytes: config.max_output_bytes,
            };
            Model::Replicate(replicate::ReplicateModel::new(settings).map_err(ConfigError::Startup)?)
        }
    })
}
