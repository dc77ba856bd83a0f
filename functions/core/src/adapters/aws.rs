//! AWS clients, built once per cold start from the standard environment.

use std::sync::OnceLock;
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{HttpClient, SharedHttpClient, http_client_fn};

/// Loads region, credentials and `AWS_ENDPOINT_URL` the way every AWS SDK does.
pub async fn sdk_config() -> SdkConfig {
    loader().load().await
}

/// The defaults every client starts from: our HTTPS client and [`timeouts`]. Where the
/// environment holds the credentials and the region, as Lambda's does, they are taken from it
/// directly, as the default chains would take them first: building those chains constructs their
/// other sources too (web identity, SSO, IMDS), an STS client and its endpoint rules among them:
/// 0.17 ms of status's 2.0 ms start, measured (scripts/bench/method.md).
pub fn loader() -> ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    if let Ok(region) = std::env::var("AWS_REGION") {
        loader = loader.region(Region::new(region));
    }
    loader
}

/// How long a DynamoDB or SQS call may take, its retries included: well inside the shortest
/// function timeout (10 s), so that a call that hangs fails in time for the code after it to
/// run (docs/design.md, "Failure rules"). Without these the SDK waits as long as the socket does.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// How long one AWS call may take in all, its retries included (see [`timeouts`]).
pub const OPERATION_TIMEOUT: Duration = crate::ports::STORE_CALL_TIMEOUT;

/// S3 calls carry images of up to `MAX_OUTPUT_BYTES`: longer tries, still inside generate's 30 s.
fn s3_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(8))
        .operation_timeout(Duration::from_secs(15))
        .build()
}

/// How long one Bedrock image call may take in all: a picture takes seconds to make, more for the
/// larger models. Each call is held to less when its budget has less left
/// (`image_model::bedrock`). The SDK does not retry: the generate service's own retries, which
/// know the budget, do.
#[cfg(feature = "bedrock")]
pub const IMAGE_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The Bedrock runtime's client: [`IMAGE_CALL_TIMEOUT`] for each call, no retries of its own.
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` and `AWS_ENDPOINT_URL` apply as for every client.
#[cfg(feature = "bedrock")]
pub fn bedrock_runtime(sdk: &SdkConfig) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
        .timeout_config(image_timeouts(IMAGE_CALL_TIMEOUT))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// The timeouts of one image call that may take up to `total`.
#[cfg(feature = "bedrock")]
pub fn image_timeouts(total: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2).min(total))
        .operation_attempt_timeout(total)
        .operation_timeout(total)
        .build()
}

/// The HTTPS client every SDK client of the process shares. It is built, and the system's trusted
/// roots loaded (about 3 ms on a Debian-sized certificate store), when the first request needs
/// it rather than at cold start: the SDK's own client would load them while the clients are
/// constructed, before the function has any work.
pub fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    http_client_fn(|settings, components| {
        CLIENT
            .get_or_init(fresh_http_client)
            .http_connector(settings, components)
    })
}

/// An HTTPS client of its own. A process with one tokio runtime (every function) shares
/// [`http_client`]; one that starts and ends runtimes (each `#[tokio::test]`) needs a client per
/// runtime, as a pooled connection dies with the runtime that opened it.
pub fn fresh_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

pub fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

pub fn sqs(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// An S3 client, optionally for another endpoint than the SDK's. Emulators serve buckets only
/// by path (`host/bucket/key`), so any endpoint override switches to path-style addressing.
pub fn s3(sdk: &SdkConfig, endpoint_override: Option<&str>) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk).timeout_config(s3_timeouts());
    if let Some(endpoint) = endpoint_override {
        builder = builder.endpoint_url(endpoint);
    }
    if endpoint_override.is_some() || sdk.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
