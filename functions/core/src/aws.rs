//! AWS clients, built once per cold start from the standard environment.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and `AWS_ENDPOINT_URL` the way every AWS SDK does.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint_override {
        builder = builder.endpoint_url(endpoint);
    }
    if endpoint_override.is_some() || sdk.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
