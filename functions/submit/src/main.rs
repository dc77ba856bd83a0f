//! `submit`: `POST /media/generate`.

use mediagen::adapters::{dynamodb::DynamoJobStore, sqs::SqsJobQueue};
use mediagen::services::submit::SubmitService;
use mediagen::{api, aws, bootstrap};

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
        Ok::<_, std::convert::Infallible>(api::submit::handle(service, request).await)
    }))
    .await
}
