//! `status`: `GET /media/status/{job_id}` and `GET /media/jobs/{job_id}`.

use mediagen::adapters::aws;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::entrypoints::http;
use mediagen::runtime::bootstrap;
use mediagen::services::read::ReadService;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let service = ReadService::new(DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table));
    let service = &service;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(http::status::handle(service, request).await)
    }))
    .await
}
