//! `submit`: the writes, `POST /media/generate` and `POST /media/jobs/{job_id}/cancel`, and the
//! creates of the Replicate- and OpenAI-compatible APIs.

use mediagen::adapters::aws;
use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore, sqs::SqsJobQueue};
use mediagen::entrypoints::http::{self, submit::SubmitApi};
use mediagen::runtime::bootstrap;
use mediagen::runtime::config::ConfigError;
use mediagen::services::content::ContentService;
use mediagen::services::{auth::Authenticator, cancel::CancelService, read::ReadService, submit::SubmitService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    // One SQS client for the jobs queue and the webhooks queue (docs/design.md, "Configuration").
    let sqs = aws::sqs(&sdk);
    let webhooks = bootstrap::webhook_notifier(&config, &sqs);
    // The images' bytes, for the OpenAI-compatible API's base64 answers.
    let media = bootstrap::or_exit(
        S3MediaStore::from_sdk(&sdk, &config.media_bucket, config.presign_endpoint_url.as_deref())
            .map_err(|e| ConfigError::Startup(e.to_string())),
    );
    let jobs_queue = SqsJobQueue::new(sqs, &config.jobs_queue_url);
    let api = SubmitApi {
        auth: Authenticator::new(store.clone()),
        submit: SubmitService::new(
            store.clone(),
            jobs_queue.clone(),
            webhooks.clone(),
            config.request_policy(),
            config.retention,
            config.quota_defaults,
        )
        .with_longest_wait(config.longest_provider_wait),
        cancel: CancelService::new(store.clone(), jobs_queue, webhooks),
        reads: ReadService::new(store.clone()),
        content: ContentService::new(store, media, config.presign_ttl),
        links: bootstrap::file_links_on_first_use(&config, &sdk),
    };
    let api = &api;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(http::submit::handle(api, request).await)
    }))
    .await
}
