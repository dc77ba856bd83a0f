//! Creates the table, queues and bucket the service runs on, for the local stack and the tests.
//! Deployed stacks get the same resources from `template.yaml`. Every step tolerates resources
//! that already exist, so running it twice is harmless.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::adapters::aws;
use crate::adapters::describe_error;
use crate::adapters::dynamodb::OWNER_INDEX_ATTRIBUTES;

#[derive(Debug, thiserror::Error)]
#[error("could not create {resource}: {reason}")]
pub struct ProvisionError {
    resource: String,
    reason: String,
}

fn failed(resource: &str, err: &(dyn std::error::Error + 'static)) -> ProvisionError {
    ProvisionError {
        resource: resource.to_owned(),
        reason: describe_error(err),
    }
}

/// Names and settings of the resources.
#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub bucket: String,
    pub max_receive_count: u32,
    pub visibility_timeout_seconds: u32,
    /// The webhook deliveries queue, with its own dead-letter queue and settings.
    pub webhooks_queue: String,
    pub webhooks_dead_letter_queue: String,
    pub webhooks_max_receive_count: u32,
    pub webhooks_visibility_timeout_seconds: u32,
}

/// What the functions need to find the resources.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub queue_url: String,
    pub queue_arn: String,
    pub dead_letter_queue_url: String,
    pub webhooks_queue_url: String,
    pub webhooks_queue_arn: String,
    pub webhooks_dead_letter_queue_url: String,
}

pub async fn provision(sdk: &SdkConfig, resources: &Resources) -> Result<Provisioned, ProvisionError> {
    create_table(&aws::dynamodb(sdk), &resources.table).await?;
    create_bucket(&aws::s3(sdk), &resources.bucket, sdk).await?;
    let sqs = aws::sqs(sdk);
    let jobs = create_queues(
        &sqs,
        &resources.queue,
        &resources.dead_letter_queue,
        resources.max_receive_count,
        resources.visibility_timeout_seconds,
    )
    .await?;
    let webhooks = create_queues(
        &sqs,
        &resources.webhooks_queue,
        &resources.webhooks_dead_letter_queue,
        resources.webhooks_max_receive_count,
        resources.webhooks_visibility_timeout_seconds,
    )
    .await?;
    Ok(Provisioned {
        queue_url: jobs.url,
        queue_arn: jobs.arn,
        dead_letter_queue_url: jobs.dead_letter_url,
        webhooks_queue_url: webhooks.url,
        webhooks_queue_arn: webhooks.arn,
        webhooks_dead_letter_queue_url: webhooks.dead_letter_url,
    })
}

async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), ProvisionError> {
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| failed(table, &e))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| failed(table, &e))
    };
    // The same index as template.yaml's: an owner's jobs by creation time, and the API keys,
    // with what a listing shows of them.
    let by_owner = GlobalSecondaryIndex::builder()
        .index_name("by_owner")
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(OWNER_INDEX_ATTRIBUTES.map(str::to_owned).to_vec()))
                .build(),
        )
        .build()
        .map_err(|e| failed(table, &e))?;
    // Jobs whose message is not known to have been sent, for the sweeper.
    let unsent = GlobalSecondaryIndex::builder()
        .index_name("unsent")
        .key_schema(key("gsi2pk", KeyType::Hash)?)
        .key_schema(key("gsi2sk", KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()
        .map_err(|e| failed(table, &e))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("pk")?)
        .attribute_definitions(string_attribute("gsi1pk")?)
        .attribute_definitions(string_attribute("gsi1sk")?)
        .attribute_definitions(string_attribute("gsi2pk")?)
        .attribute_definitions(string_attribute("gsi2sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .global_secondary_indexes(by_owner)
        .global_secondary_indexes(unsent)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(failed(table, &err)),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("ttl")
                .build()
                .map_err(|e| failed(table, &e))?,
        )
        .send()
        .await
        .map(|_| ())
        .or_else(|err| {
            // Enabling TTL again on a table that has it is refused; that is the state we want.
            let already = err
                .as_service_error()
                .and_then(|e| e.meta().message())
                .is_some_and(|m| m.contains("already enabled"));
            if already { Ok(()) } else { Err(failed(table, &err)) }
        })
}

async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str, sdk: &SdkConfig) -> Result<(), ProvisionError> {
    let mut request = client.create_bucket().bucket(bucket);
    let region = sdk.region().map(|r| r.as_ref().to_owned()).unwrap_or_default();
    if !region.is_empty() && region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(err) => return Err(failed(bucket, &err)),
    }
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed(bucket, &e))?;
    Ok(())
}

/// A queue and the dead-letter queue it redrives to.
struct Queues {
    url: String,
    arn: String,
    dead_letter_url: String,
}

async fn create_queues(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    dlq: &str,
    max_receive_count: u32,
    visibility_timeout_seconds: u32,
) -> Result<Queues, ProvisionError> {
    // The jobs dead-letter queue is itself a function's event source (the sweeper's): the same
    // visibility timeout as the queue it serves.
    let dead_letter_url = client
        .create_queue()
        .queue_name(dlq)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        )
        .send()
        .await
        .map_err(|e| failed(dlq, &e))?
        .queue_url
        .unwrap_or_default();
    let dead_letter_arn = queue_arn(client, &dead_letter_url, dlq).await?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let url = client
        .create_queue()
        .queue_name(queue)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        // As template.yaml: the longest SQS keeps a message, not its default 4 days.
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| failed(queue, &e))?
        .queue_url
        .unwrap_or_default();
    let arn = queue_arn(client, &url, queue).await?;
    Ok(Queues {
        url,
        arn,
        dead_letter_url,
    })
}

pub async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str, name: &str) -> Result<String, ProvisionError> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| failed(name, &e))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ProvisionError {
            resource: name.to_owned(),
            reason: "the queue has no ARN".into(),
        })
}
