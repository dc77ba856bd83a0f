//! `stream`: `GET /v1/predictions/{prediction_id}/stream`, a job's progress as Server-Sent
//! Events, answered as Lambda streams a response (`responseTransferMode: STREAM` in
//! template.yaml).

use mediagen::adapters::aws;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::entrypoints::http::stream::{self, StreamApi};
use mediagen::runtime::bootstrap;
use mediagen::services::{auth::Authenticator, stream::StreamService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    // The process's to the end: each stream's task borrows it while the runtime sends its body.
    let api: &'static StreamApi<DynamoJobStore> = Box::leak(Box::new(StreamApi {
        auth: Authenticator::new(store.clone()),
        streams: StreamService::new(store, config.stream_timing),
        links: bootstrap::file_links_on_first_use(&config, &sdk),
    }));
    lambda_http::run_with_streaming_response(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(stream::handle(api, request).await)
    }))
    .await
}
