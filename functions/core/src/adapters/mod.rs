//! The AWS implementations of the ports.

pub mod dynamodb;
pub mod presign;
pub mod s3;
pub mod sqs;

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
