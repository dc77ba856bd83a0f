//! The operations of the service, written against the ports only: authenticate a caller, accept
//! a job, run one, read and list jobs, cancel one, end the jobs no message will bring back, hand out links
//! to images, follow a job as a stream of events, manage API keys, deliver webhooks.

pub mod auth;
pub mod cancel;
pub mod content;
pub mod generate;
pub mod keys;
pub mod message;
pub mod metrics;
pub mod read;
pub mod stream;
pub mod submit;
pub mod sweep;
pub mod webhooks;
