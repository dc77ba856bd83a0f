//! `mediagen`: the command-line client of the mediagen API. See `mediagen --help` and
//! docs/clients.md ("Command-line client").

mod api;
mod cli;
mod commands;
mod config;
mod error;
mod events;
mod progress;
mod wait;

use std::io::Write;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::config::Source;
use crate::error::{Error, exit};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = run(cli, &matches) => result,
            _ = tokio::signal::ctrl_c() => Err(match commands::SUBMITTED.get() {
                Some(job_id) => Error::InterruptedJob(job_id.clone()),
                None => Error::Interrupted,
            }),
        }
    });
    match result {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
                // A reader that stopped early (`| head`) is not a failure.
                Ok(()) => ExitCode::from(exit::OK),
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(exit::OK),
                Err(error) => {
                    eprintln!("error: cannot write the output: {error}");
                    ExitCode::from(exit::OTHER)
                }
            }
        }
        Err(error) => {
            eprintln!("error: {}", error.one_line());
            ExitCode::from(error.exit_code())
        }
    }
}

/// Where clap found an option: on the command line or in the environment.
fn source(matches: &ArgMatches, id: &str) -> Source {
    let sub = matches.subcommand().map(|(_, m)| m);
    // Global options are propagated to the subcommand's matches.
    let found = sub
        .and_then(|m| m.value_source(id))
        .or_else(|| matches.value_source(id));
    match found {
        Some(ValueSource::EnvVariable) => Source::Env,
        _ => Source::Flag,
    }
}

async fn run(cli: Cli, matches: &ArgMatches) -> Result<String, Error> {
    let global = cli.global;
    let explicit_config = global.config.is_some();
    let config_path = global.config.or_else(config::default_path);
    let settings = config::resolve(
        global.url.map(|u| (u, source(matches, "url"))),
        global.api_key.map(|k| (k, source(matches, "api_key"))),
        config_path,
        explicit_config,
    )?;
    let api = api::Api::new(
        &settings.url,
        settings.key,
        settings.config_path.map(|p| p.display().to_string()),
    )?;
    let json = global.json;
    match cli.command {
        Command::Generate(args) => commands::generate(&api, args, json).await,
        Command::Status { job_id } => commands::status(&api, &job_id, json).await,
        Command::Jobs { status, limit, cursor } => commands::jobs(&api, status, limit, cursor.as_deref(), json).await,
        Command::Cancel { job_id } => commands::cancel(&api, &job_id, json).await,
        Command::Models => commands::models(&api, json).await,
        Command::Open {
            job_id,
            out,
            print_urls,
            timeout,
        } => commands::open(&api, &job_id, &out, print_urls, timeout, json).await,
    }
}
