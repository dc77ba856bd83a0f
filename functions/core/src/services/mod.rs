//! The operations of the service, written against the ports only.

pub mod content;
pub mod generate;
pub mod submit;
