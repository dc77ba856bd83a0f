//! How events reach the services: HTTP requests through API Gateway (or `cargo lambda watch`),
//! and SQS batches for `generate`, `deliver` and `sweeper`.

pub mod http;
pub mod sqs;
pub mod sweeper;
