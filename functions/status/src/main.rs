//! `status`: the reads, `GET /media/status/{job_id}`, `GET /media/jobs/{job_id}` and
//! `GET /media/jobs`, the caller's webhook secret and its rotation, and the 404 problem for every
//! path no other function serves.

use mediagen::adapters::aws;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::entrypoints::http::{self, status::LazyBody, status::StatusApi};
use mediagen::runtime::bootstrap;
use mediagen::services::{auth::Authenticator, read::ReadService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    let api = StatusApi {
        auth: Authenticator::new(store.clone()),
        reads: ReadService::new(store.clone()),
        links: bootstrap::file_links_on_first_use(&config, &sdk),
        // Without WEBHOOK_SECRET_PARAMETER this deployment signs no webhooks, and has no secret to show.
        webhook_secrets: bootstrap::webhook_secrets_on_first_use(&config, &sdk, store),
        openapi: {
            let models: Vec<String> = config.catalogue.names().into_iter().map(str::to_owned).collect();
            LazyBody::new(Box::new(move || http::openapi::document(&models).to_string()))
        },
        models: mediagen::entrypoints::views::model_list(&config.catalogue),
        quota_defaults: config.quota_defaults,
    };
    let api = &api;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(http::status::handle(api, request).await)
    }))
    .await
}
