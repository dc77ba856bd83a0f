//! `generate`: the SQS-triggered worker.

use mediagen::adapters::aws;
use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore, sqs::SqsJobQueue};
use mediagen::entrypoints::sqs;
use mediagen::runtime::bootstrap;
use mediagen::runtime::config::ConfigError;
use mediagen::services::generate::{GenerateSettings, Generator};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let media = bootstrap::or_exit(
        S3MediaStore::from_sdk(&sdk, &config.media_bucket, None).map_err(|e| ConfigError::Startup(e.to_string())),
    );
    let store = DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table);
    // One SQS client for the jobs queue and the webhooks queue (docs/design.md, "Configuration").
    let sqs = aws::sqs(&sdk);
    let generator = Generator::new(
        store.clone(),
        SqsJobQueue::new(sqs.clone(), &config.jobs_queue_url),
        media,
        bootstrap::or_exit(bootstrap::image_model(&config, &sdk).await),
        bootstrap::webhook_notifier(&config, &sqs),
        GenerateSettings {
            catalogue: config.catalogue.clone(),
            memory_mb: config.memory_mb,
            ..GenerateSettings::new(config.max_receive_count, config.retention)
        },
    )
    // The providers' limits are counted in the table (docs/design.md, "Provider limits").
    .with_gate(store);
    let generator = &generator;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        Ok::<_, std::convert::Infallible>(sqs::handle(generator, event).await)
    }))
    .await
}
