//! JSON logs through `tracing` (docs/design.md, "Observability"). Span fields (the request id, the job id) appear in
//! every line logged inside them.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON subscriber; `RUST_LOG` sets the levels (default `info`) as comma-separated
/// `level` and `target=level` directives (docs/design.md, "Observability", says why not `EnvFilter`).
pub fn init() {
    let parsed = std::env::var("RUST_LOG")
        .ok()
        .map(|directives| directives.parse::<Targets>());
    let filter = match &parsed {
        Some(Ok(targets)) => targets.clone(),
        _ => Targets::new().with_default(Level::INFO),
    };
    let installed = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_target(false)
                .with_current_span(false)
                .with_span_list(true)
                .flatten_event(true),
        )
        .with(filter)
        .try_init();
    if let (Ok(()), Some(Err(err))) = (installed, parsed) {
        tracing::warn!(%err, "RUST_LOG is not `level` and `target=level` directives; logging at info");
    }
}
