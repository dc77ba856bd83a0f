//! mediagen: the domain, its ports and adapters, shared by every Lambda function.
//!
//! Arrows point inward: the function binaries build [`config::Config`] and the adapters once, hand
//! them to an entrypoint ([`api`] for HTTP, [`worker`] for SQS), which calls a service in
//! [`services`]; services know only the traits in [`ports`].

pub mod adapters;
pub mod api;
pub mod aws;
pub mod bootstrap;
pub mod config;
pub mod ids;
pub mod job;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod ports;
pub mod problem;
pub mod provision;
pub mod request;
pub mod retry;
pub mod services;
pub mod telemetry;
pub mod worker;
