//! The `mediagen` binary, run as a user runs it: against a wiremock stand-in of the API's
//! contract (`mock`, fast, part of `cargo test`), and against a running stack (`stack`, ignored
//! by default: `scripts/test-clients.sh` runs it).

mod mock;
mod stack;

use std::path::Path;
use std::process::Stdio;

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one `error: ...` line.
    pub fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0]
    }
}

/// Runs the binary with `args` and exactly the `env` given for the API (no MEDIAGEN_* variable
/// of the caller leaks in), with a fresh config directory holding `config` if any.
pub async fn mediagen(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> Run {
    let home = tempfile::tempdir().unwrap();
    if let Some(config) = config {
        let dir = home.path().join("config").join("mediagen");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
    }
    mediagen_in(home.path(), args, env).await
}

pub async fn mediagen_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mediagen"))
        .args(args)
        .env_remove("MEDIAGEN_API_URL")
        .env_remove("MEDIAGEN_API_KEY")
        .env_remove("MEDIAGEN_CONFIG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
