//! Tools for the local stack: the SQS event-source stand-in and an API client for the demo and
//! the end-to-end test.

pub mod client;
pub mod gateway;
pub mod mock_replicate;
pub mod pump;
pub mod runtime_api;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
