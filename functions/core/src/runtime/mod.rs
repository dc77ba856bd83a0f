//! The wiring: settings read once at cold start, logging, the adapters built from them, and the
//! resources a local stack or a test creates. Function binaries call into here and then hand the
//! services to an entrypoint.

pub mod bootstrap;
pub mod config;
pub mod provision;
pub mod telemetry;
