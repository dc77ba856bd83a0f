//! The core's integration tests, one binary: a module per route or service, the harness once.
//! Most talk to moto server at `MEDIAGEN_TEST_ENDPOINT` (started by `scripts/test.sh`); the
//! Replicate contract tests talk to a local mock of its API, the webhook tests to a receiver on
//! loopback.

#[cfg(feature = "bedrock")]
mod bedrock;
mod callers;
mod capacity;
mod events;
mod generate;
mod helpers;
mod models;
mod openai;
mod paid_runs;
mod predictions;
mod quota;
mod read;
mod replicate;
mod submit;
mod sweep;
mod webhooks;
