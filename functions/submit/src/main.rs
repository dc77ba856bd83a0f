//! `submit`: `POST /media/generate`.

use mediagen::adapters::aws;
use mediagen::adapters::{dynamodb::DynamoJobStore, sqs::SqsJobQueue};
use mediagen::entrypoints::http;
use mediagen::runtime::bootstrap;
use mediagen::services::submit::SubmitService;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let service = SubmitService::new(
        DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table),
        SqsJobQueue::new(aws::sqs(&sdk), &config.jobs_queue_url),
        config.request_policy(),
        config.retention,
    );
    let service = &service;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(http::submit::handle(service, request).await)
    }))
    .await
}
