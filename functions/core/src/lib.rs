//! mediagen: the domain, its services, ports and adapters, shared by every Lambda function.
//!
//! Layers, arrows pointing inward (docs/design.md, "Code layout"):
//! `runtime` wires `adapters` into `services`, which `entrypoints` call; services know only `ports`;
//! adapters implement the ports; everything uses `domain`, which imports nothing of ours.

pub mod adapters;
pub mod domain;
pub mod entrypoints;
pub mod ports;
pub mod runtime;
pub mod services;
