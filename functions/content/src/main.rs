//! `content`: `GET /media/content/{media_id}`.

use mediagen::adapters::aws;
use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore};
use mediagen::entrypoints::http::{self, content::ContentApi};
use mediagen::runtime::bootstrap;
use mediagen::runtime::config::ConfigError;
use mediagen::services::{auth::Authenticator, content::ContentService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let media = bootstrap::or_exit(
        S3MediaStore::from_sdk(&sdk, &config.media_bucket, config.presign_endpoint_url.as_deref())
            .map_err(|e| ConfigError::Startup(e.to_string())),
    );
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    let api = ContentApi {
        auth: Authenticator::new(store.clone()),
        content: ContentService::new(store, media, config.presign_ttl),
        links: bootstrap::file_links_on_first_use(&config, &sdk),
    };
    let api = &api;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(http::content::handle(api, request).await)
    }))
    .await
}
