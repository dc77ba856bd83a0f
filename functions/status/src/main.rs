//! `status`: `GET /media/status/{job_id}` and `GET /media/jobs/{job_id}`.

use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::{api, aws, bootstrap};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    let store = &store;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(api::status::handle(store, request).await)
    }))
    .await
}
