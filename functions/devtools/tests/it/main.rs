//! The whole path over HTTP against a running local stack, one binary. Those tests are ignored by
//! a plain `cargo test`, which has no stack to talk to; `scripts/test.sh` starts the stack and runs
//! `local_model::` and `webhooks::` with the local model, then `replicate_model::` with the mock
//! Replicate API. `hosted::` (the pump's hosted function) needs no stack.

mod hosted;
mod local_model;
mod providers;
mod replicate_model;
mod stream;
mod webhooks;

use std::time::{Duration, Instant};

use mediagen_devtools::client::ApiClient;

/// The local stack's address, set by `scripts/test.sh`.
fn api_url() -> String {
    std::env::var("MEDIAGEN_API_URL").expect("MEDIAGEN_API_URL: the local stack's address, set by scripts/test.sh")
}

/// A key the stack knows, set by `scripts/test.sh`.
fn api_key() -> String {
    std::env::var("MEDIAGEN_API_KEY").expect("MEDIAGEN_API_KEY: a key of the local stack, set by scripts/test.sh")
}

/// A client of the stack at `MEDIAGEN_API_URL`.
fn client() -> ApiClient {
    ApiClient::new(&api_url(), Some(&api_key())).expect("an API client")
}

/// Waits until `check` holds, looking again every `every`; fails saying `what` after `within`.
async fn until(within: Duration, every: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}
