//! What the service is about, free of any I/O: ids, jobs and their states, the generation
//! request and its rules and the words of the Replicate- and OpenAI-compatible APIs for it, API keys and owners and their rate limits and quotas, idempotency keys, listing
//! pages, output formats,
//! the model catalogue, the network policy for outbound URLs, secrets, timestamps, the time
//! budgets and retries every layer shares, and webhook signing. Nothing here
//! imports another module of this crate outside `domain`.

pub mod catalogue;
pub mod cost;
pub mod file_urls;
pub mod format;
pub mod generation;
pub mod idempotency;
pub mod ids;
pub mod images;
pub mod job;
pub mod keys;
pub mod limits;
pub mod listing;
pub mod network;
pub mod prediction;
pub mod quota;
pub mod retry;
pub mod secret;
pub mod stream;
pub mod timestamp;
pub mod webhook;
