//! `content`: `GET /media/content/{media_id}`.

use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore};
use mediagen::services::content::ContentService;
use mediagen::{api, aws, bootstrap};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let media = S3MediaStore::new(
        aws::s3(&sdk, None),
        aws::s3(&sdk, config.presign_endpoint_url.as_deref()),
        &config.media_bucket,
    );
    let service = ContentService::new(
        DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table),
        media,
        config.presign_ttl,
    );
    let service = &service;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(api::content::handle(service, request).await)
    }))
    .await
}
