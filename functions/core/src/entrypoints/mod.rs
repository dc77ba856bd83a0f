//! How events reach the services: HTTP requests through API Gateway (or its local stand-in),
//! and SQS batches for `generate`, `deliver` and `sweeper`.

pub mod http;
pub mod sqs;
pub mod sweeper;
pub mod views;
