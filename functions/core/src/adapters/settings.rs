//! What is wrong with a setting, for every part that reads its own at cold start: the function's
//! configuration (runtime/config.rs) and each image model provider's (image_model/mod.rs); and
//! the one way a secret is read, from the SSM parameter a setting names.

use aws_config::SdkConfig;

use super::ssm;
use crate::domain::secret::Secret;

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

/// A setting's value parsed, or `default` when it is unset.
pub fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e: T::Err| ConfigError::invalid(name, &raw, &e.to_string())),
    }
}

/// A setting's value parsed, or `default` when it is unset, which must lie within `bounds`;
/// `reason` says which, in the error.
pub fn parse_within<T>(
    get: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: T,
    bounds: std::ops::RangeInclusive<T>,
    reason: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value = parse_or(get, name, default)?;
    if bounds.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(name, &value.to_string(), reason))
    }
}

/// The secret the SSM parameter `parameter` holds, which the setting `setting` names; a failed
/// read is that setting's error (docs/design.md, "Configuration").
pub async fn stored_secret(sdk: &SdkConfig, setting: &'static str, parameter: &str) -> Result<Secret, ConfigError> {
    ssm::parameter(sdk, parameter)
        .await
        .map_err(|reason| ConfigError::invalid(setting, parameter, &reason))
}
