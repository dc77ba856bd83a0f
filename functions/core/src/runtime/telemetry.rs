//! JSON logs through `tracing` (docs/design.md, "Observability"). Span fields (the request id, the job id) appear in
//! every line logged inside them.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; `RUST_LOG` adjusts the level (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .try_init();
}
