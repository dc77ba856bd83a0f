//! The implementations of the ports: DynamoDB, SQS and S3 (requests signed ourselves), outbound
//! HTTP fetching and webhook POSTs (one outbound client setup), and the image models. Adapters
//! know the domain and the ports, never the services or the entrypoints.

pub mod aws;
pub mod dynamodb;
pub mod fetch;
pub mod image_model;
pub mod outbound;
pub mod s3;
pub mod s3_signer;
pub mod settings;
pub mod sqs;
pub mod ssm;
pub mod webhook;

/// An error with its whole chain of causes, on one line: the SDK hides the useful part in `source`.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
