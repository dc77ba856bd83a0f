//! The operations of the service, written against the ports only: accept a job, run one, read
//! jobs back, hand out links to their images. Each emits its own metrics.

pub mod content;
pub mod generate;
pub mod metrics;
pub mod read;
pub mod submit;
