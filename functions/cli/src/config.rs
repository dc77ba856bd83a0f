//! Where the API's URL and key come from: flags, then environment (both through clap), then the
//! config file `<user config dir>/mediagen/config.toml`:
//!
//! ```toml
//! url = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
//! api_key = "mg_..."
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub api_key: Option<String>,
}

/// Where a value came from, to say so when the API refuses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    Flag,
    Env,
    File,
}

/// The settings every command needs.
#[derive(Debug)]
pub struct Settings {
    pub url: String,
    pub key: Option<(String, Source)>,
    pub config_path: Option<PathBuf>,
}

/// `<user config dir>/mediagen/config.toml` (`~/.config/mediagen/config.toml` on Linux).
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("mediagen").join("config.toml"))
}

/// Reads the config file. A missing file is an empty config unless it was named explicitly.
pub fn load(path: &Path, explicit: bool) -> Result<FileConfig, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(FileConfig::default());
        }
        Err(error) => {
            return Err(Error::Usage(format!(
                "cannot read the config file {}: {error}",
                path.display()
            )));
        }
    };
    toml::from_str(&text).map_err(|error| {
        Error::Usage(format!(
            "the config file {} is not valid: {} (expected keys: url, api_key)",
            path.display(),
            error.message()
        ))
    })
}

/// Combines what clap found (flag or environment) with the config file.
pub fn resolve(
    url: Option<(String, Source)>,
    key: Option<(String, Source)>,
    config_path: Option<PathBuf>,
    explicit_config: bool,
) -> Result<Settings, Error> {
    let file = match &config_path {
        Some(path) => load(path, explicit_config)?,
        None => FileConfig::default(),
    };
    let where_file = config_path
        .as_ref()
        .map(|p| format!(", or put url = \"...\" in {}", p.display()))
        .unwrap_or_default();
    let url = url
        .map(|(url, _)| url)
        .or(file.url)
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "no API URL: pass --url or set MEDIAGEN_API_URL (e.g. http://127.0.0.1:9000){where_file}"
            ))
        })?;
    let key = key.filter(|(key, _)| !key.is_empty()).or_else(|| {
        file.api_key
            .filter(|key| !key.is_empty())
            .map(|key| (key, Source::File))
    });
    Ok(Settings {
        url: check_url(&url)?,
        key,
        config_path,
    })
}

/// The base URL without a trailing slash; a stage prefix (`/prod`) is kept.
pub fn check_url(url: &str) -> Result<String, Error> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|error| {
        Error::Usage(format!(
            "the API URL {url:?} is not a URL ({error}); e.g. http://127.0.0.1:9000"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Usage(format!(
            "the API URL {url:?} must start with http:// or https://"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::Usage(format!(
            "the API URL {url:?} must not have a query or fragment"
        )));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = \"http://file:1\"\napi_key = \"file-key\"\n").unwrap();
        let settings = resolve(
            Some(("http://flag:2/prod/".into(), Source::Flag)),
            None,
            Some(path.clone()),
            false,
        )
        .unwrap();
        assert_eq!(settings.url, "http://flag:2/prod");
        assert_eq!(settings.key, Some(("file-key".into(), Source::File)));

        let settings = resolve(None, Some(("env-key".into(), Source::Env)), Some(path), false).unwrap();
        assert_eq!(settings.url, "http://file:1");
        assert_eq!(settings.key, Some(("env-key".into(), Source::Env)));
    }

    #[test]
    fn a_missing_default_file_is_empty_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        assert_eq!(load(&path, false).unwrap(), FileConfig::default());
        assert!(matches!(load(&path, true), Err(Error::Usage(_))));
        let error = resolve(None, None, Some(path), false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("no API URL: pass --url or set MEDIAGEN_API_URL"),
            "{error}"
        );
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = \"http://x\"\napi_token = \"k\"\n").unwrap();
        let error = load(&path, false).unwrap_err();
        assert!(error.to_string().contains("config.toml is not valid"), "{error}");
        assert!(error.to_string().contains("api_token"), "{error}");
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(check_url("https://h.example/prod").unwrap(), "https://h.example/prod");
        assert_eq!(check_url("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        for bad in ["127.0.0.1:9000", "ftp://h/", "http://h/?a=1", "not a url"] {
            assert!(matches!(check_url(bad), Err(Error::Usage(_))), "{bad}");
        }
    }
}
