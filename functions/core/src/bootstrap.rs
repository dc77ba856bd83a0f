//! What every function does at cold start: logs, settings, the AWS configuration.

use aws_config::SdkConfig;

use crate::config::Config;

/// Starts logging and reads the settings; a bad setting ends the process with one line naming it.
pub async fn cold_start() -> (Config, SdkConfig) {
    crate::telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "cold start failed");
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    (config, crate::aws::sdk_config().await)
}
