//! The command line: `mediagen [OPTIONS] <COMMAND>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "The command-line client of the mediagen image-generation API";

const LONG_ABOUT: &str = "\
The command-line client of the mediagen image-generation API.

The API's URL and key come from --url and --api-key, else MEDIAGEN_API_URL and MEDIAGEN_API_KEY,
else the config file (--config, MEDIAGEN_CONFIG, or <user config dir>/mediagen/config.toml,
~/.config/mediagen/config.toml on Linux):

    url = \"https://abc123.execute-api.eu-west-1.amazonaws.com/prod\"
    api_key = \"...\"

A deployment's URL ends with its stage (/prod); it is kept for every request.";

const AFTER_HELP: &str = "\
Examples:
  mediagen generate \"a lighthouse at dusk\" --width 768 --height 512 --out out/
  mediagen generate \"a red fox\" --no-wait        # prints the job id
  mediagen models                                # the models, their prices and sizes
  mediagen status 01a20ce3-6f99-74ab-8cae-1183e9fa1396
  mediagen jobs --status failed --limit 5
  mediagen open 01a20ce3-6f99-74ab-8cae-1183e9fa1396 --print-urls";

#[derive(Debug, Parser)]
#[command(name = "mediagen", version, about = ABOUT, long_about = LONG_ABOUT,
          after_help = format!("{AFTER_HELP}\n\n{}", crate::error::EXIT_CODES_HELP))]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Connection and output (any command)")]
pub struct Global {
    /// The API's base URL, with its stage if it has one (http://127.0.0.1:9000, https://…/prod)
    #[arg(long, env = "MEDIAGEN_API_URL", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The API key, sent as `Authorization: Bearer <key>`
    #[arg(
        long,
        env = "MEDIAGEN_API_KEY",
        global = true,
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// The config file [default: <user config dir>/mediagen/config.toml]
    #[arg(long, env = "MEDIAGEN_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the API's answers as JSON on stdout, for scripts
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate images from a prompt: submit, wait with a progress line, download, print the paths
    #[command(after_help = format!("Examples:\n  mediagen generate \"a lighthouse at dusk\" --out out/\n  \
        mediagen generate \"a red fox in the snow\" -W 512 -H 512 -n 2 --seed 42 --format webp\n  \
        mediagen generate \"a cat\" --no-wait\n  \
        mediagen generate \"a harbour at dawn\" --model gpt-image-1 -W 1024 -H 1024   # `mediagen models` lists them\n\n{}",
        crate::error::EXIT_CODES_HELP))]
    Generate(Generate),
    /// Show a job: its state, attempts, request and error
    #[command(after_help = crate::error::EXIT_CODES_HELP)]
    Status {
        /// The job's id (as `generate --no-wait` prints it)
        job_id: String,
    },
    /// List your recent jobs, newest first
    #[command(after_help = crate::error::EXIT_CODES_HELP)]
    Jobs {
        /// Only jobs in this state
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// How many jobs (1–100) [default: the API's]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
        /// Continue a listing where the previous page ended
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Cancel a job that is queued (at once) or processing (at its next step)
    #[command(after_help = crate::error::EXIT_CODES_HELP)]
    Cancel {
        /// The job's id
        job_id: String,
    },
    /// List the models the API offers: provider, price per image, sizes; the default is marked
    #[command(after_help = format!("Examples:\n  mediagen models\n  mediagen models --json\n\n{}",
        crate::error::EXIT_CODES_HELP))]
    Models,
    /// Download a job's images (waiting until it is done), or print their download URLs
    #[command(after_help = crate::error::EXIT_CODES_HELP)]
    Open {
        /// The job's id
        job_id: String,
        /// Where to write the images
        #[arg(long, short, default_value = ".", value_name = "DIR")]
        out: PathBuf,
        /// Print each image's presigned URL (valid for a while) instead of downloading
        #[arg(long)]
        print_urls: bool,
        /// Give up waiting after this many seconds
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        timeout: u64,
    },
}

#[derive(Debug, Args)]
pub struct Generate {
    /// What to draw
    pub prompt: String,
    /// What to keep out of the picture
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// The model, an id from `mediagen models` [default: the API's]
    #[arg(long)]
    pub model: Option<String>,
    /// Width in pixels: 256–1440, a multiple of 32 [default: the API's, 1024]
    #[arg(long, short = 'W')]
    pub width: Option<u32>,
    /// Height in pixels: 256–1440, a multiple of 32 [default: the API's, 1024]
    #[arg(long, short = 'H')]
    pub height: Option<u32>,
    /// How many images: 1–4 [default: 1]
    #[arg(long, short = 'n')]
    pub num_outputs: Option<u32>,
    /// Seed, for a repeatable picture [default: drawn at random]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Image format [default: png]
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Where to write the images (created if missing)
    #[arg(long, short, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// Submit only: print the job id and exit
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the job goes on)
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// Sent as `Idempotency-Key`: the same key again answers the same job instead of a new one
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Png,
    Webp,
    Jpg,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Jpg => "jpg",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Status {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["mediagen", "jobs", "--json", "--url", "http://x", "--limit", "5"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.url.as_deref(), Some("http://x"));
        assert!(matches!(cli.command, Command::Jobs { limit: Some(5), .. }));
        assert!(Cli::try_parse_from(["mediagen", "jobs", "--limit", "101"]).is_err());
        assert!(Cli::try_parse_from(["mediagen", "generate", "p", "--format", "gif"]).is_err());
    }
}
