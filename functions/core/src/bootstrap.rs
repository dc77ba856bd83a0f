//! What every function does at cold start: logs, settings, the AWS configuration.

use aws_config::SdkConfig;

use crate::config::{Config, ConfigError};

/// Starts logging and reads the settings; a bad setting ends the process with one line naming it.
pub async fn cold_start() -> (Config, SdkConfig) {
    crate::telemetry::init();
    let config = or_exit(Config::from_env());
    (config, crate::aws::sdk_config().await)
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
