//! The CLI's errors: each one prints as one line and maps to a documented exit code.

use std::path::PathBuf;

/// Exit codes, documented in `mediagen --help` and docs/clients.md ("Command-line client").
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Anything else: the API failed (5xx, 429), an unexpected answer, a file that could not be
    /// written, a wait that timed out.
    pub const OTHER: u8 = 1;
    /// Usage: bad arguments (clap's own code), no URL configured, an unreadable config file.
    pub const USAGE: u8 = 2;
    /// The API refused the key (401/403).
    pub const AUTH: u8 = 3;
    /// The API refused the request's input (400, 413, 415, 422).
    pub const INVALID: u8 = 4;
    /// The job failed or was canceled.
    pub const JOB_FAILED: u8 = 5;
    /// No such job or image (404 not-found).
    pub const NOT_FOUND: u8 = 6;
    /// The API could not be reached, or the URL is not a mediagen API.
    pub const UNREACHABLE: u8 = 7;
    /// The job cannot be canceled: it is already final (409).
    pub const CONFLICT: u8 = 8;
    /// Interrupted (Ctrl-C); a submitted job goes on.
    pub const INTERRUPTED: u8 = 130;
}

/// Text for `--help`: the exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other error: the API failed (5xx, 429), an unexpected answer, a file not written, a timeout
  2  usage: bad arguments, no API URL configured, an unreadable config file
  3  the API refused the key (401, 403)
  4  the API refused the input (400, 413, 415, 422); the message names each field
  5  the job failed (its error code and message are printed) or was canceled
  6  no such job or image (404)
  7  the API is unreachable, or the URL is not a mediagen API
  8  the job is already final and cannot be canceled (409)
  130  interrupted (Ctrl-C); a submitted job goes on";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the API at {url} ({reason}); check --url or MEDIAGEN_API_URL")]
    Unreachable { url: String, reason: String },
    #[error("{url} does not look like the mediagen API: {reason}; check --url or MEDIAGEN_API_URL")]
    NotOurApi { url: String, reason: String },
    #[error(
        "{url} has no route for {what} (404 no-route): check --url or MEDIAGEN_API_URL (a deployment's URL ends \
         with its stage, e.g. /prod), or the API is older than this client"
    )]
    NoRoute { url: String, what: String },
    #[error("{0}")]
    Auth(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("job {job_id} failed: {code}: {message}")]
    JobFailed {
        job_id: String,
        code: String,
        message: String,
    },
    #[error("job {job_id} was canceled")]
    JobCanceled { job_id: String },
    #[error("{0}")]
    Server(String),
    #[error("unexpected answer from the API: {0}")]
    Protocol(String),
    #[error("{0}")]
    Other(String),
    #[error("job {job_id} is still {state} after {seconds}s; `mediagen status {job_id}` follows it")]
    Timeout {
        job_id: String,
        state: String,
        seconds: u64,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("interrupted; job {0} goes on: `mediagen status {0}` follows it, `mediagen cancel {0}` stops it")]
    InterruptedJob(String),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Unreachable { .. } | Error::NotOurApi { .. } | Error::NoRoute { .. } => exit::UNREACHABLE,
            Error::Auth(_) => exit::AUTH,
            Error::Invalid(_) => exit::INVALID,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Conflict(_) => exit::CONFLICT,
            Error::JobFailed { .. } | Error::JobCanceled { .. } => exit::JOB_FAILED,
            Error::Server(_) | Error::Protocol(_) | Error::Other(_) | Error::Timeout { .. } | Error::Io { .. } => {
                exit::OTHER
            }
            Error::InterruptedJob(_) | Error::Interrupted => exit::INTERRUPTED,
        }
    }

    /// The message on one line: whatever a server put in a detail, newlines never reach the
    /// terminal as such.
    pub fn one_line(&self) -> String {
        self.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_documented_code() {
        let cases: Vec<(Error, u8)> = vec![
            (Error::Usage("x".into()), 2),
            (Error::Auth("x".into()), 3),
            (Error::Invalid("x".into()), 4),
            (
                Error::JobFailed {
                    job_id: "j".into(),
                    code: "c".into(),
                    message: "m".into(),
                },
                5,
            ),
            (Error::JobCanceled { job_id: "j".into() }, 5),
            (Error::NotFound("x".into()), 6),
            (
                Error::Unreachable {
                    url: "u".into(),
                    reason: "r".into(),
                },
                7,
            ),
            (
                Error::NotOurApi {
                    url: "u".into(),
                    reason: "r".into(),
                },
                7,
            ),
            (Error::Conflict("x".into()), 8),
            (Error::Server("x".into()), 1),
            (
                Error::Timeout {
                    job_id: "j".into(),
                    state: "queued".into(),
                    seconds: 1,
                },
                1,
            ),
            (Error::Interrupted, 130),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code}  ")),
                "{code} is documented"
            );
        }
    }

    #[test]
    fn messages_are_one_line() {
        let error = Error::JobFailed {
            job_id: "j".into(),
            code: "model_failed".into(),
            message: "line one\nline two".into(),
        };
        assert_eq!(error.one_line(), "job j failed: model_failed: line one line two");
    }
}
