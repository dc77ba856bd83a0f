//! What is wrong with a setting, for every part that reads its own at cold start: the function's
//! configuration (runtime/config.rs) and each image model provider's (image_model/mod.rs).

/// A setting that is missing or unusable; its message names the variable, on one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing setting {0}: set this environment variable")]
    Missing(&'static str),
    #[error("invalid setting {name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot start: {0}")]
    Startup(String),
}

impl ConfigError {
    pub fn invalid(name: &'static str, value: &str, reason: &str) -> Self {
        ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        }
    }
}
