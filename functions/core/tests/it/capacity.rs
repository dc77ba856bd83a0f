//! The index writes a job costs (docs/design.md, "Stored data"): one job with a webhook through
//! submit, generate's claim and commit and its webhook's mark, every DynamoDB write asked for
//! `ReturnConsumedCapacity=INDEXES` on the way out, the write units each index took summed from
//! the answers. `MEDIAGEN_CAPACITY_REPORT=1` prints them as one JSON line, for scripts/bench.sh.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{ConfigBag, RuntimeComponents};
use aws_sdk_dynamodb::operation::{
    delete_item::DeleteItemOutput, put_item::PutItemOutput, transact_write_items::TransactWriteItemsOutput,
    update_item::UpdateItemOutput,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::entrypoints::{http, sqs};
use serde_json::{Value, json};

use crate::helpers::{Stack, json_of, post_generate, sqs_event};

const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

/// One write's consumed capacity, as DynamoDB answered it.
#[derive(Debug, Clone, serde::Serialize)]
struct Write {
    operation: &'static str,
    /// The base table's write units (with a transaction's, all its items').
    table: f64,
    /// Write units per index.
    indexes: BTreeMap<String, f64>,
}

/// Asks every DynamoDB write for the capacity it consumed per index, and notes the answers.
#[derive(Debug, Clone, Default)]
struct IndexMeter {
    writes: Arc<Mutex<Vec<Write>>>,
}

fn operation(target: Option<&str>) -> Option<&str> {
    target?.strip_prefix("DynamoDB_20120810.")
}

impl Intercept for IndexMeter {
    fn name(&self) -> &'static str {
        "IndexMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if !operation(request.headers().get("x-amz-target")).is_some_and(|op| WRITES.contains(&op)) {
            return Ok(());
        }
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut body: Value = serde_json::from_slice(bytes)?;
        body["ReturnConsumedCapacity"] = json!("INDEXES");
        let body = serde_json::to_vec(&body)?;
        request.headers_mut().insert("content-length", body.len().to_string());
        *request.body_mut() = body.into();
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = match context.output_or_error() {
            Ok(output) if output.downcast_ref::<PutItemOutput>().is_some() => "PutItem",
            Ok(output) if output.downcast_ref::<UpdateItemOutput>().is_some() => "UpdateItem",
            Ok(output) if output.downcast_ref::<DeleteItemOutput>().is_some() => "DeleteItem",
            Ok(output) if output.downcast_ref::<TransactWriteItemsOutput>().is_some() => "TransactWriteItems",
            Ok(_) => "another",
            Err(_) => "refused",
        };
        let Some(body) = context
            .response()
            .body()
            .bytes()
            .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        else {
            return Ok(());
        };
        // One object (PutItem, UpdateItem) or one per table (the batch and transaction writes).
        let consumed = match &body["ConsumedCapacity"] {
            Value::Array(tables) => tables.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        let mut writes = self.writes.lock().unwrap();
        for table in consumed {
            let units = |capacity: &Value| {
                capacity["WriteCapacityUnits"]
                    .as_f64()
                    .or_else(|| capacity["CapacityUnits"].as_f64())
                    .unwrap_or(0.0)
            };
            let mut write = Write {
                operation: op,
                table: units(&table["Table"]),
                indexes: BTreeMap::new(),
            };
            for (index, capacity) in table["GlobalSecondaryIndexes"].as_object().into_iter().flatten() {
                write.indexes.insert(index.clone(), units(capacity));
            }
            writes.push(write);
        }
        Ok(())
    }
}

/// The stack's store on a client that meters index writes.
fn metered(stack: &Stack, meter: &IndexMeter) -> DynamoJobStore {
    let config = aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
        .interceptor(meter.clone())
        .build();
    DynamoJobStore::new(aws_sdk_dynamodb::Client::from_conf(config), &stack.resources.table)
}

fn total(writes: &[Write], index: &str) -> f64 {
    writes.iter().filter_map(|write| write.indexes.get(index)).sum()
}

#[tokio::test]
async fn a_job_writes_its_owners_index_at_its_creation_and_its_end_only() {
    let stack = Stack::new().await;
    let meter = IndexMeter::default();
    let store = metered(&stack, &meter);

    let body = json!({"prompt": "a lighthouse at dusk, in the style of an old postcard", "num_outputs": 2,
                      "webhook_url": "http://127.0.0.1:9/hook"});
    let response = http::submit::handle(
        &stack.submit_api_on(store.clone(), stack.queue()),
        post_generate(body.to_string()),
    )
    .await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    let messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1);
    let answer = sqs::handle(&stack.generator_on(store, LocalModel), sqs_event(messages)).await;
    assert!(answer.batch_item_failures.is_empty());

    let writes = meter.writes.lock().unwrap().clone();
    let by_owner = total(&writes, "by_owner");
    let unsent = total(&writes, "unsent");
    let table: f64 = writes.iter().map(|write| write.table).sum();
    if std::env::var_os("MEDIAGEN_CAPACITY_REPORT").is_some() {
        println!(
            "{}",
            json!({"by_owner_write_units_per_job": by_owner, "unsent_write_units_per_job": unsent,
                   "table_write_units_per_job": table, "writes": writes})
        );
    }
    assert!(by_owner > 0.0, "DynamoDB reported no index capacity: {writes:?}");
    // The job's creation and its commit (a transaction, so two units); not its claim, the unsent
    // mark's removal nor the webhook's mark, which change nothing the index projects.
    let index_writes = writes
        .iter()
        .filter(|write| write.indexes.contains_key("by_owner"))
        .count();
    assert_eq!(index_writes, 2, "{writes:?}");
    assert!(by_owner <= 3.0, "by_owner took {by_owner} write units: {writes:?}");
}
