//! `sweeper`: ends the jobs no message will bring back (docs/design.md, "Failure rules"): those
//! whose message the jobs queue gave up on (from its dead-letter queue), and, on a schedule,
//! those whose message was never sent.

use mediagen::adapters::aws;
use mediagen::adapters::{dynamodb::DynamoJobStore, s3::S3MediaStore, sqs::SqsJobQueue};
use mediagen::entrypoints::sweeper;
use mediagen::runtime::bootstrap;
use mediagen::runtime::config::ConfigError;
use mediagen::services::sweep::{Sweeper, SweeperQueues};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let media = bootstrap::or_exit(
        S3MediaStore::from_sdk(&sdk, &config.media_bucket, None).map_err(|e| ConfigError::Startup(e.to_string())),
    );
    // One SQS client for its three queues (docs/design.md, "Configuration").
    let sqs = aws::sqs(&sdk);
    let service = Sweeper::new(
        DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table),
        SweeperQueues {
            dead_letters: bootstrap::or_exit(bootstrap::dead_letter_queue(&config, &sqs)),
            // To send again the messages of the jobs never sent (docs/design.md, "Failure rules").
            jobs: SqsJobQueue::new(sqs.clone(), &config.jobs_queue_url),
        },
        media,
        // To stop the runs of the jobs it fails (docs/design.md, "Failure rules").
        bootstrap::or_exit(bootstrap::image_model(&config, &sdk).await),
        bootstrap::webhook_notifier(&config, &sqs),
        config.retention,
    );
    let service = &service;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        Ok::<_, std::convert::Infallible>(sweeper::handle(service, event).await)
    }))
    .await
}
