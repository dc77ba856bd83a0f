//! Tools for the local stack: the SQS event-source stand-in and an API client for the demo and
//! the end-to-end test.

pub mod client;
pub mod gateway;
pub mod mock_bedrock;
pub mod mock_openai;
pub mod mock_replicate;
pub mod pump;
pub mod runtime_api;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A path router (`matchit`, axum's, as the API's own routes) of fixed paths: a path that is not
/// one (a mistake in the list) is reported by `who` and left out.
pub fn path_router<T>(who: &str, paths: impl IntoIterator<Item = (&'static str, T)>) -> matchit::Router<T> {
    let mut router = matchit::Router::new();
    for (path, value) in paths {
        if let Err(err) = router.insert(path, value) {
            eprintln!("{who}: {path} is not a route: {err}");
        }
    }
    router
}
