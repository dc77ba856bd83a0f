//! `deliver`: the SQS-triggered sender of webhooks (docs/design.md, "Webhooks").

use std::time::Duration;

use mediagen::adapters::aws;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::adapters::webhook::HttpWebhookSender;
use mediagen::entrypoints::sqs;
use mediagen::runtime::bootstrap;
use mediagen::runtime::config::ConfigError;
use mediagen::services::webhooks::Deliverer;

/// The most one delivery waits for its receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, sdk) = bootstrap::cold_start().await;
    let (links, keys) = tokio::join!(
        bootstrap::file_links(&config, &sdk),
        bootstrap::signing_keys(&config, &sdk)
    );
    let keys = keys.and_then(|keys| keys.ok_or(ConfigError::Missing("WEBHOOK_SECRET_PARAMETER")));
    let deliverer = Deliverer::new(
        DynamoJobStore::new(aws::dynamodb(&sdk), &config.jobs_table),
        bootstrap::or_exit(bootstrap::webhook_queue(&config, &sdk)),
        bootstrap::or_exit(
            HttpWebhookSender::new(config.allow_local_urls, DELIVERY_TIMEOUT)
                .map_err(|e| ConfigError::Startup(format!("could not build the HTTP client: {e}"))),
        ),
        bootstrap::or_exit(keys),
    );
    let links = bootstrap::or_exit(links);
    let (deliverer, links) = (&deliverer, &links);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        Ok::<_, std::convert::Infallible>(sqs::deliver(deliverer, links, event).await)
    }))
    .await
}
