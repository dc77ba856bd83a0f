//! `mediagen-dev`: set up the local resources, run the SQS event-source stand-in, manage API keys,
//! show webhook secrets, run a demo job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mediagen::adapters::aws;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::domain::keys::{ApiKey, Owner};
use mediagen::domain::quota::{QuotaChanges, QuotaDefaults, dollars, parse_dollars};
use mediagen::domain::secret::Secret;
use mediagen::domain::timestamp;
use mediagen::domain::webhook::MasterKey;
use mediagen::runtime::provision::{Resources, provision, queue_arn};
use mediagen::services::keys::{KeyAdmin, LimitChanges};
use mediagen::services::webhooks::{SigningKeys, WebhookSecrets};
use mediagen_devtools::Error;
use mediagen_devtools::client::ApiClient;
use mediagen_devtools::pump::{Pump, Target};
use mediagen_devtools::runtime_api::HostedFunction;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "Local tools for mediagen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the table, queues and bucket; prints the settings the functions need.
    Setup {
        #[arg(long, env = "MEDIAGEN_TABLE")]
        table: String,
        #[arg(long, env = "MEDIAGEN_QUEUE")]
        queue: String,
        #[arg(long, env = "MEDIAGEN_DEAD_LETTER_QUEUE")]
        dead_letter_queue: String,
        #[arg(long, env = "MEDIAGEN_BUCKET")]
        bucket: String,
        #[arg(long, env = "MAX_RECEIVE_COUNT")]
        max_receive_count: u32,
        #[arg(long, env = "QUEUE_VISIBILITY_TIMEOUT")]
        visibility_timeout: u32,
        #[arg(long, env = "MEDIAGEN_WEBHOOKS_QUEUE")]
        webhooks_queue: String,
        #[arg(long, env = "MEDIAGEN_WEBHOOKS_DEAD_LETTER_QUEUE")]
        webhooks_dead_letter_queue: String,
        #[arg(long, env = "WEBHOOKS_MAX_RECEIVE_COUNT")]
        webhooks_max_receive_count: u32,
        #[arg(long, env = "WEBHOOKS_VISIBILITY_TIMEOUT")]
        webhooks_visibility_timeout: u32,
        /// The webhook master key, kept in SSM Parameter Store for the functions.
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// The key that signs file links, kept in SSM Parameter Store for the functions.
        #[arg(long, env = "FILE_URL_SECRET", hide_env_values = true)]
        file_url_secret: Option<String>,
    },
    /// Feeds a queue to a function (the jobs queue to `generate` by default, the webhooks queue
    /// to `deliver`), as Lambda's event-source mapping does.
    Pump {
        #[arg(long, env = "JOBS_QUEUE_URL")]
        queue_url: String,
        #[arg(long, default_value = "generate")]
        function: String,
        /// The function's timeout, in seconds: its deadline, and how long an invocation may run.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Run the function here, as Lambda does, with this command (its binary and arguments):
        /// started on the first invocation and again after it dies, killed at its timeout.
        #[arg(long, num_args = 1.., allow_hyphen_values = true, required_unless_present = "invoke_api")]
        run: Vec<String>,
        /// Or invoke the function through the Lambda Invoke API at this base URL, as
        /// `cargo lambda invoke` calls `cargo lambda watch` (`http://127.0.0.1:9000`).
        #[arg(long, conflicts_with = "run")]
        invoke_api: Option<String>,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
        batch_size: i32,
        /// Also send the function EventBridge's scheduled event every this many seconds.
        #[arg(long)]
        schedule_seconds: Option<u64>,
        /// Batches in flight at once, each polled for and run by an instance of its own: the
        /// event-source mapping's maximum concurrency (template.yaml's `ScalingConfig`).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
        concurrency: u16,
    },
    /// Serves a stand-in for the Replicate API on 127.0.0.1, for end-to-end runs.
    MockReplicate {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The bearer token it accepts.
        #[arg(long, env = "REPLICATE_API_TOKEN")]
        token: String,
        /// Creates a minute it allows, as Replicate's API does; past them it answers 429.
        #[arg(long, requires = "burst")]
        rate_per_minute: Option<u32>,
        /// Creates it allows at once within that rate.
        #[arg(long, requires = "rate_per_minute")]
        burst: Option<u32>,
    },
    /// Serves a stand-in for OpenAI's Images API on 127.0.0.1, for end-to-end runs.
    MockOpenai {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The API key it accepts.
        #[arg(long, env = "OPENAI_API_KEY")]
        token: String,
    },
    /// Serves a stand-in for the Amazon Bedrock runtime (Stability's models) on 127.0.0.1, for
    /// end-to-end runs with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` pointed at it.
    MockBedrock {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serves the local stand-in for API Gateway's REST API, running the HTTP functions behind
    /// it as Lambda does.
    Gateway {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// The folder of the functions' binaries (`target/debug`, `target/release`).
        #[arg(long)]
        functions: PathBuf,
        /// How many instances of each function may run at once, each serving one request at a time
        /// (an open progress stream holds one: the stream bench opens 100 at once).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=200))]
        instances: u16,
        /// Throttles the API as a stage does (template.yaml's MethodSettings: 20 a second, 50 at
        /// once): requests a second. Off unless given.
        #[arg(long, requires = "throttle_burst")]
        throttle_rate: Option<f64>,
        /// Requests at once, with --throttle-rate.
        #[arg(long, requires = "throttle_rate")]
        throttle_burst: Option<f64>,
    },
    /// Prints the OpenAPI description of the local stack's API (docs/openapi.json).
    Openapi,
    /// Makes, lists and revokes API keys in the jobs table of any stack (local or deployed).
    Keys {
        /// The jobs table (on AWS: the stack's TableName).
        #[arg(long, env = "JOBS_TABLE")]
        table: String,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Webhook signing: what an owner's receivers verify deliveries with.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Submits a job, shows its progress, and writes its images to a folder.
    Demo {
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        api: String,
        /// The API key to call with.
        #[arg(long, env = "MEDIAGEN_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        #[arg(long, default_value = "a lighthouse on a cliff at dusk, oil painting")]
        prompt: String,
        #[arg(long, default_value_t = 768)]
        width: u32,
        #[arg(long, default_value_t = 512)]
        height: u32,
        #[arg(long, default_value = "png")]
        format: String,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Makes a key for an owner and prints it: it is shown this once.
    Create {
        #[arg(long)]
        owner: String,
        /// Keep the key in this file: a key already there is registered again (a fresh local
        /// emulator forgets it), else a new key is made and written there.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Lists the keys: prefix, owner, created, revoked, rate limits. Never the keys themselves.
    List,
    /// Sets the limits of the key that starts with PREFIX: requests a minute that make jobs and
    /// that do anything else, and requests held open at once by `Prefer: wait` (each one not
    /// given stays as the key has it; a key's first are 600, 3000 and 10).
    Limits {
        prefix: String,
        #[arg(long)]
        creates_per_minute: Option<u32>,
        #[arg(long)]
        others_per_minute: Option<u32>,
        #[arg(long)]
        concurrent_waits: Option<u32>,
    },
    /// Shows the owner's quota and this month's use of it, after setting what is given: jobs
    /// queued or running at once, and a monthly budget in images or dollars (docs/api.md,
    /// "Quotas").
    Quota {
        owner: String,
        /// Jobs queued or running at once (the deployment's MAX_ACTIVE_JOBS_PER_OWNER if never set).
        #[arg(long)]
        max_active: Option<u32>,
        /// Images a month, counted from submit; failed and canceled jobs are given back.
        #[arg(long, conflicts_with = "no_monthly_images")]
        monthly_images: Option<u64>,
        /// US dollars a month at the models' list prices, such as 25 or 0.50.
        #[arg(long, conflicts_with = "no_monthly_dollars")]
        monthly_dollars: Option<String>,
        /// Back to the deployment's default of jobs at once.
        #[arg(long, conflicts_with = "max_active")]
        default_max_active: bool,
        /// No monthly image budget.
        #[arg(long)]
        no_monthly_images: bool,
        /// No monthly dollar budget.
        #[arg(long)]
        no_monthly_dollars: bool,
        /// What an owner without a limit of their own may have at once, as the functions have it.
        #[arg(long, env = "MAX_ACTIVE_JOBS_PER_OWNER", default_value_t = QuotaDefaults::MAX_ACTIVE)]
        deployment_max_active: u32,
    },
    /// Revokes the key that starts with PREFIX (as `list` shows it); the owner's last live key
    /// revokes the owner's webhook secret with it.
    Revoke { prefix: String },
    /// Gives an owner a new webhook signing secret; the current one still verifies for the grace
    /// hours (0: it stops at once). The owner reads the new one at
    /// `GET /v1/webhooks/default/secret`, or the operator with `webhooks secret`.
    RotateWebhookSecret {
        #[arg(long)]
        owner: String,
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(0..=168))]
        grace_hours: u64,
    },
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Prints the owner's current signing secret (`whsec_...`), derived from the deployment's
    /// `WEBHOOK_SECRET` at the generation the jobs table holds for the owner: give it to the
    /// owner's receivers, and to no one else.
    Secret {
        #[arg(long)]
        owner: String,
        /// The jobs table (on AWS: the stack's TableName).
        #[arg(long, env = "JOBS_TABLE")]
        table: String,
        /// The deployment's master secret.
        #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup {
            table,
            queue,
            dead_letter_queue,
            bucket,
            max_receive_count,
            visibility_timeout,
            webhooks_queue,
            webhooks_dead_letter_queue,
            webhooks_max_receive_count,
            webhooks_visibility_timeout,
            webhook_secret,
            file_url_secret,
        } => {
            let secrets = [
                ("WEBHOOK_SECRET_PARAMETER", "webhook-secret", webhook_secret),
                ("FILE_URL_SECRET_PARAMETER", "file-url-secret", file_url_secret),
            ];
            let resources = Resources {
                table,
                queue,
                dead_letter_queue,
                bucket,
                max_receive_count,
                visibility_timeout_seconds: visibility_timeout,
                webhooks_queue,
                webhooks_dead_letter_queue,
                webhooks_max_receive_count,
                webhooks_visibility_timeout_seconds: webhooks_visibility_timeout,
            };
            setup(&resources, secrets).await
        }
        Command::Pump {
            queue_url,
            function,
            timeout,
            run,
            invoke_api,
            batch_size,
            schedule_seconds,
            concurrency,
        } => {
            let timeout = Duration::from_secs(timeout);
            let targets: Result<Vec<Target>, Error> = (0..concurrency)
                .map(|_| match &invoke_api {
                    Some(api) => invoke_target(api, &function, timeout),
                    None => HostedFunction::new(&function, run.clone(), timeout).map(Target::Hosted),
                })
                .collect();
            match targets {
                Ok(targets) => {
                    pump(
                        queue_url,
                        targets,
                        &function,
                        batch_size,
                        schedule_seconds.map(Duration::from_secs),
                    )
                    .await
                }
                Err(err) => Err(err),
            }
        }
        Command::MockReplicate {
            port,
            token,
            rate_per_minute,
            burst,
        } => mock_replicate(port, token, rate_per_minute.zip(burst)).await,
        Command::MockOpenai { port, token } => mock_openai(port, token).await,
        Command::MockBedrock { port } => mock_bedrock(port).await,
        Command::Keys { table, action } => keys(&table, action).await,
        Command::Gateway {
            listen,
            functions,
            instances,
            throttle_rate,
            throttle_burst,
        } => gateway(listen, &functions, instances.into(), throttle_rate.zip(throttle_burst)).await,
        Command::Openapi => serde_json::to_string_pretty(&mediagen::entrypoints::http::openapi::local_document())
            .map(|text| println!("{text}"))
            .map_err(Into::into),
        Command::Webhooks {
            action:
                WebhooksAction::Secret {
                    owner,
                    table,
                    webhook_secret,
                },
        } => webhook_secret_of(&owner, &table, Secret::new(webhook_secret)).await,
        Command::Demo {
            api,
            api_key,
            prompt,
            width,
            height,
            format,
            out,
            timeout_seconds,
        } => {
            let request = json!({"prompt": prompt, "width": width, "height": height, "output_format": format});
            demo(
                &api,
                api_key.as_deref(),
                &request,
                &out,
                Duration::from_secs(timeout_seconds),
            )
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", mediagen::adapters::describe_error(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Creates the resources and keeps each given secret in SSM Parameter Store as a SecureString
/// (`/<table>/<name>`), as scripts/deploy.sh does for a deployed stack: the functions read only
/// the parameter's name from their environment (docs/design.md, "Configuration").
async fn setup(resources: &Resources, secrets: [(&str, &str, Option<String>); 2]) -> Result<(), Error> {
    let sdk = aws::sdk_config().await;
    let provisioned = provision(&sdk, resources).await?;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    for (setting, name, value) in secrets {
        let Some(value) = value else { continue };
        let parameter = format!("/{}/{name}", resources.table);
        ssm.put_parameter()
            .name(&parameter)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not keep {parameter} in SSM: {}",
                    mediagen::adapters::describe_error(&e)
                )
            })?;
        println!("export {setting}={parameter}");
    }
    // Shell assignments, for `eval` in the scripts.
    println!("export JOBS_TABLE={}", resources.table);
    println!("export JOBS_QUEUE_URL={}", provisioned.queue_url);
    println!(
        "export JOBS_DEAD_LETTER_QUEUE_URL={}",
        provisioned.dead_letter_queue_url
    );
    println!("export MEDIA_BUCKET={}", resources.bucket);
    println!("export WEBHOOKS_QUEUE_URL={}", provisioned.webhooks_queue_url);
    println!(
        "export WEBHOOKS_DEAD_LETTER_QUEUE_URL={}",
        provisioned.webhooks_dead_letter_queue_url
    );
    Ok(())
}

async fn webhook_secret_of(owner: &str, table: &str, master: Secret) -> Result<(), Error> {
    let owner = Owner::parse(owner)?;
    let master = MasterKey::parse(&master).map_err(|e| format!("WEBHOOK_SECRET: {e}"))?;
    let sdk = aws::sdk_config().await;
    let secrets = WebhookSecrets::new(
        DynamoJobStore::new(aws::dynamodb(&sdk), table),
        SigningKeys::new(master),
    );
    println!("{}", secrets.current(&owner).await?.expose());
    Ok(())
}

/// `function` behind the Invoke API at `api`, given its timeout and a little more for the hop.
fn invoke_target(api: &str, function: &str, timeout: Duration) -> Result<Target, Error> {
    let http = reqwest::Client::builder()
        .timeout(timeout + Duration::from_secs(5))
        .build()?;
    let url = format!(
        "{}/2015-03-31/functions/{function}/invocations",
        api.trim_end_matches('/')
    );
    Ok(Target::Invoke { http, url })
}

async fn pump(
    queue_url: String,
    targets: Vec<Target>,
    function: &str,
    batch_size: i32,
    schedule: Option<Duration>,
) -> Result<(), Error> {
    let sdk = aws::sdk_config().await;
    let sqs = aws::sqs(&sdk);
    let queue_arn = queue_arn(&sqs, &queue_url, "the queue").await?;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    eprintln!("pump: feeding {queue_url} to {function}, {} at once", targets.len());
    let pumps: Vec<Pump> = targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| Pump {
            sqs: sqs.clone(),
            target,
            queue_url: queue_url.clone(),
            queue_arn: queue_arn.clone(),
            region: region.clone(),
            batch_size,
            // Short polls, so that a stop request is honoured within a second.
            wait_seconds: 1,
            // One schedule, however many pollers.
            schedule: schedule.filter(|_| i == 0),
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut terminate = signal(SignalKind::terminate())?;
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    // SIGUSR1 disables the event source and SIGUSR2 enables it again, as `aws lambda
    // update-event-source-mapping --no-enabled` and `--enabled` do; the bench uses it.
    let enabled = Arc::new(AtomicBool::new(true));
    let (mut disable, mut enable) = (
        signal(SignalKind::user_defined1())?,
        signal(SignalKind::user_defined2())?,
    );
    let switch = enabled.clone();
    tokio::spawn(async move {
        loop {
            let on = tokio::select! {
                _ = disable.recv() => false,
                _ = enable.recv() => true,
            };
            switch.store(on, Ordering::Relaxed);
            eprintln!("pump: {}", if on { "enabled" } else { "disabled" });
        }
    });
    futures::future::try_join_all(pumps.iter().map(|pump| pump.run(&stop, &enabled)))
        .await
        .map(|_| ())
}

async fn mock_replicate(port: u16, token: String, limit: Option<(u32, u32)>) -> Result<(), Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let server = mediagen_devtools::mock_replicate::serve(listener, token, limit).await;
    eprintln!("mock Replicate API at {}/v1", server.uri());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn mock_openai(port: u16, token: String) -> Result<(), Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let server = mediagen_devtools::mock_openai::serve(listener, token).await;
    eprintln!("mock OpenAI API at {}/v1", server.uri());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn mock_bedrock(port: u16) -> Result<(), Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let server = mediagen_devtools::mock_bedrock::serve(listener).await;
    eprintln!("mock Bedrock runtime at {}", server.uri());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn gateway(
    listen: std::net::SocketAddr,
    functions: &std::path::Path,
    instances: usize,
    throttle: Option<(f64, f64)>,
) -> Result<(), Error> {
    let mut gateway = mediagen_devtools::gateway::Gateway::new(functions, instances)?;
    if let Some((rate, burst)) = throttle {
        gateway = gateway.throttled(rate, burst);
    }
    let gateway = Arc::new(gateway);
    let (listener, bound) = mediagen_devtools::gateway::bind(listen).await?;
    eprintln!(
        "gateway: http://{bound}, the functions of {} (up to {instances} of each)",
        functions.display()
    );
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        served = mediagen_devtools::gateway::serve(listener, gateway) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}

async fn keys(table: &str, action: KeysAction) -> Result<(), Error> {
    let sdk = aws::sdk_config().await;
    let admin = KeyAdmin::new(DynamoJobStore::new(aws::dynamodb(&sdk), table));
    match action {
        KeysAction::Create { owner, key_file } => {
            let owner = Owner::parse(&owner)?;
            let existing = match &key_file {
                Some(path) if path.exists() => Some(
                    ApiKey::parse(std::fs::read_to_string(path)?.trim())
                        .map_err(|e| format!("{} does not hold a mediagen key: {e}", path.display()))?,
                ),
                _ => None,
            };
            let made = existing.is_none();
            let (key, record) = admin.create(owner, existing).await?;
            if let (Some(path), true) = (&key_file, made) {
                if let Some(folder) = path.parent() {
                    std::fs::create_dir_all(folder)?;
                }
                write_private(path, key.expose())?;
            }
            eprintln!("key {} for owner {}", record.prefix, record.owner);
            println!("{}", key.expose());
        }
        KeysAction::List => {
            println!(
                "{:<14} {:<24} {:<26} {:<26} creates/min others/min",
                "prefix", "owner", "created", "revoked"
            );
            for record in admin.list().await? {
                let revoked = record.revoked_at.map(timestamp::render).unwrap_or_else(|| "-".into());
                let limits = record.limits.unwrap_or_default();
                println!(
                    "{:<14} {:<24} {:<26} {revoked:<26} {:<11} {}",
                    record.prefix,
                    record.owner.as_str(),
                    timestamp::render(record.created_at),
                    limits.creates_per_minute,
                    limits.others_per_minute
                );
            }
        }
        KeysAction::Limits {
            prefix,
            creates_per_minute,
            others_per_minute,
            concurrent_waits,
        } => {
            let changes = LimitChanges {
                creates_per_minute,
                others_per_minute,
                concurrent_waits,
            };
            let record = admin.set_limits(&prefix, changes).await?;
            let limits = record.limits.unwrap_or_default();
            println!(
                "{} of owner {}: {} creates and {} other requests a minute, {} waits at once",
                record.prefix,
                record.owner,
                limits.creates_per_minute,
                limits.others_per_minute,
                limits.concurrent_waits
            );
        }
        KeysAction::Quota {
            owner,
            max_active,
            monthly_images,
            monthly_dollars,
            default_max_active,
            no_monthly_images,
            no_monthly_dollars,
            deployment_max_active,
        } => {
            let owner = Owner::parse(&owner)?;
            let monthly_dollars = monthly_dollars.as_deref().map(parse_dollars).transpose()?;
            let changes = QuotaChanges {
                max_active: if default_max_active {
                    Some(None)
                } else {
                    max_active.map(Some)
                },
                monthly_images: if no_monthly_images {
                    Some(None)
                } else {
                    monthly_images.map(Some)
                },
                monthly_microdollars: if no_monthly_dollars {
                    Some(None)
                } else {
                    monthly_dollars.map(Some)
                },
            };
            let usage = admin.set_quota(&owner, changes).await?;
            let budget = |limit: Option<String>| limit.map_or_else(|| "no budget".to_owned(), |l| format!("of {l}"));
            println!(
                "owner {owner}, {}: {} of {} jobs queued or running; {} images {}; ${} {}",
                usage.month.label(),
                usage.active,
                usage.max_active(QuotaDefaults {
                    max_active: deployment_max_active
                }),
                usage.images,
                budget(usage.quota.monthly_images.map(|l| l.to_string())),
                dollars(usage.microdollars),
                budget(usage.quota.monthly_microdollars.map(|l| format!("${}", dollars(l)))),
            );
        }
        KeysAction::Revoke { prefix } => {
            let revoked = admin.revoke(&prefix).await?;
            let record = &revoked.record;
            println!("revoked {} of owner {}", record.prefix, record.owner);
            if revoked.secret_revoked.is_some() {
                println!(
                    "revoked the webhook secret of owner {} too: it was their last live key",
                    record.owner
                );
            }
        }
        KeysAction::RotateWebhookSecret { owner, grace_hours } => {
            let owner = Owner::parse(&owner)?;
            let state = admin
                .rotate_webhook_secret(&owner, Duration::from_secs(grace_hours * 3600))
                .await?;
            match state.previous {
                Some(previous) => println!(
                    "rotated the webhook secret of owner {owner}; the old one verifies until {}",
                    timestamp::render(previous.until)
                ),
                None => println!("rotated the webhook secret of owner {owner}; the old one verifies nothing more"),
            }
        }
    }
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")?;
    Ok(())
}

async fn demo(
    api: &str,
    api_key: Option<&str>,
    request: &serde_json::Value,
    out: &std::path::Path,
    timeout: Duration,
) -> Result<(), Error> {
    let client = ApiClient::new(api, api_key)?;
    let started = Instant::now();
    let accepted = client.submit(request).await?;
    let job_id = accepted["job_id"].as_str().ok_or("no job_id in the answer")?.to_owned();
    println!("submitted job {job_id}: {}", request["prompt"]);
    let status = client
        .wait(&job_id, timeout, |status| {
            println!(
                "  {:>6.1}s  {} (attempt {})",
                started.elapsed().as_secs_f64(),
                status["status"].as_str().unwrap_or("?"),
                status["attempts"]
            );
        })
        .await?;
    if status["status"] != "succeeded" {
        return Err(format!("job ended {}: {}", status["status"], status["error"]).into());
    }
    let job = client.job(&job_id).await?;
    std::fs::create_dir_all(out)?;
    for media in job["media"].as_array().ok_or("job without media")? {
        let downloaded = client.download(media).await?;
        let decoded = image::load_from_memory(&downloaded.bytes)?;
        let extension = job["output_format"].as_str().unwrap_or("img");
        let path = out.join(format!("{job_id}-{}.{extension}", media["index"]));
        std::fs::write(&path, &downloaded.bytes)?;
        println!(
            "wrote {} ({}×{}, {} bytes) in {:.1}s",
            path.display(),
            decoded.width(),
            decoded.height(),
            downloaded.bytes.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
