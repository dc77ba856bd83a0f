//! AWS clients, built once per cold start from the standard environment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

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

/// The HTTPS client every SDK client of the process shares. It is built, and its TLS roots
/// parsed, when the first request needs it rather than at cold start.
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
    SharedHttpClient::new(SdkHttpClient::default())
}

/// The SDK's HTTP client on reqwest, which the functions link anyway for the providers and the
/// webhooks: the SDK's own client always links HTTP/2 (h2 and hyper's HTTP/2 side, the largest
/// part of every zip left, scripts/bench/method.md), though AWS is called over HTTP/1.1. One
/// reqwest client per pair of timeouts the SDK asks for, each with its own connection pool.
#[derive(Debug, Default)]
struct SdkHttpClient {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

/// The connect and read timeouts the SDK asks of a connector.
type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for SdkHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(timeouts)
            .or_insert_with(|| SharedHttpConnector::new(SdkConnector::new(timeouts)))
            .clone()
    }
}

/// Sends the SDK's requests through one reqwest client.
#[derive(Debug, Clone)]
struct SdkConnector {
    client: Result<reqwest::Client, Arc<reqwest::Error>>,
}

impl SdkConnector {
    fn new((connect, read): Timeouts) -> Self {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            // The SDK follows no redirect: S3 answers a wrong region with one, which must fail.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(connect) = connect {
            builder = builder.connect_timeout(connect);
        }
        if let Some(read) = read {
            builder = builder.read_timeout(read);
        }
        Self {
            client: builder.build().map_err(Arc::new),
        }
    }
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let client = client.map_err(|e| ConnectorError::other(e.to_string().into(), None))?;
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(Box::new(e)))?;
            let (parts, body) = request.into_parts();
            // The body whole: an in-memory one as it is, a streamed one gathered.
            let body = ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::user(Box::new(e)))?
                .into_bytes();
            let url = parts.uri.to_string();
            let response = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(connector_error)?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let bytes = response.bytes().await.map_err(connector_error)?;
            let answer = answer
                .body(SdkBody::from(bytes))
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(Box::new(e), None))
        })
    }
}

/// A failed exchange as the SDK's retry rules read it: a timeout or an I/O failure is worth
/// another try; anything else is not.
fn connector_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(Box::new(error))
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ConnectorError::io(Box::new(error))
    } else {
        ConnectorError::other(Box::new(error), None)
    }
}

pub fn dynamodb(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

pub fn sqs(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// An S3 client, for the local tools (making the bucket) and the tests; the functions sign their
/// own S3 requests (adapters/s3.rs). Emulators serve buckets only by path (`host/bucket/key`),
/// so an endpoint override switches to path-style addressing.
pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk).timeout_config(s3_timeouts());
    if sdk.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
