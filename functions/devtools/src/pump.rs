//! A local stand-in for Lambda's SQS event-source mapping: long-polls a queue (the jobs queue, the
//! webhooks queue, the jobs dead-letter queue), hands each batch to its function (`generate`,
//! `deliver`, `sweeper`) as a real `SQSEvent`, and deletes only the records the function did not
//! report in `batchItemFailures`. Reported records, and all of a batch whose invocation failed,
//! come back after their visibility timeout, as on AWS. The function runs here, as Lambda runs it
//! ([`HostedFunction`]: its own process, started again after a crash, killed at its timeout), or
//! behind Lambda's Invoke API, as `cargo lambda watch` serves it (docs/local-stack.md). With a
//! schedule it also sends the function EventBridge's scheduled event at that rate, as the
//! sweeper's schedule does on AWS.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use bytes::Bytes;

use crate::Error;
use crate::runtime_api::{HostedFunction, InvokeError};

/// Where the pump's function runs.
pub enum Target {
    /// Here, as Lambda runs it.
    Hosted(HostedFunction),
    /// Behind Lambda's Invoke API: `POST {url}` with the event, as `cargo lambda invoke` calls
    /// `cargo lambda watch`. The client's timeout is the function's.
    Invoke { http: reqwest::Client, url: String },
}

impl Target {
    /// The function's answer, or why the invocation failed.
    pub async fn invoke(&self, payload: Bytes) -> Result<Bytes, InvokeError> {
        match self {
            Target::Hosted(function) => function.invoke(payload).await,
            Target::Invoke { http, url } => {
                let response = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(payload)
                    .send()
                    .await
                    .map_err(|e| InvokeError::Unreachable(mediagen::adapters::describe_error(&e)))?;
                // Lambda marks a function's own error with this header, whatever the status.
                let failed = !response.status().is_success() || response.headers().contains_key("x-amz-function-error");
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| InvokeError::Unreachable(mediagen::adapters::describe_error(&e)))?;
                match failed {
                    true => Err(InvokeError::Failed(String::from_utf8_lossy(&body).into_owned())),
                    false => Ok(body),
                }
            }
        }
    }
}

pub struct Pump {
    pub sqs: Client,
    pub target: Target,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub batch_size: i32,
    pub wait_seconds: i32,
    /// How often to send a scheduled event, if at all.
    pub schedule: Option<Duration>,
}

/// What happened to one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    pub deleted: usize,
    pub returned: usize,
    /// How long the invocation took, as Lambda's `REPORT` line gives its duration.
    pub duration: Duration,
}

impl Pump {
    /// Receives one batch (waiting up to `wait_seconds`) and hands it over; `None` if the queue
    /// stayed empty.
    pub async fn run_once(&self) -> Result<Option<BatchReport>, Error> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(None);
        }

        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.record(m)).collect();
        let invoked = std::time::Instant::now();
        let answer = self.target.invoke(Bytes::from(serde_json::to_vec(&event)?)).await;
        let duration = invoked.elapsed();
        let failed: HashSet<String> = match answer.map(|body| serde_json::from_slice::<SqsBatchResponse>(&body)) {
            Ok(Ok(answer)) => answer
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            // The whole invocation failed: Lambda returns the whole batch, after its visibility
            // timeout.
            Ok(Err(err)) => {
                eprintln!("pump: the function's answer does not parse: {err}");
                messages.iter().filter_map(|m| m.message_id.clone()).collect()
            }
            Err(err) => {
                eprintln!("pump: the invocation failed: {err}");
                messages.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };

        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| m.message_id.as_ref().is_some_and(|id| !failed.contains(id)))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        let deleted = done.len();
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await?;
        }
        Ok(Some(BatchReport {
            received: messages.len(),
            deleted,
            returned: messages.len() - deleted,
            duration,
        }))
    }

    fn record(&self, message: &Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.md5_of_body = message.md5_of_body.clone();
        record.md5_of_message_attributes = message.md5_of_message_attributes.clone();
        record.attributes = message
            .attributes
            .iter()
            .flatten()
            .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
            .collect();
        record.message_attributes = message
            .message_attributes
            .iter()
            .flatten()
            .map(|(name, value)| {
                let mut attribute = SqsMessageAttribute::default();
                attribute.string_value = value.string_value.clone();
                attribute.data_type = Some(value.data_type.clone());
                (name.clone(), attribute)
            })
            .collect();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(self.region.clone());
        record
    }

    /// Sends the function the event an EventBridge schedule sends.
    pub async fn tick(&self) -> Result<String, Error> {
        let now = chrono::Utc::now();
        let event = serde_json::json!({
            "version": "0",
            "id": format!("{:032x}", fastrand::u128(..)),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": self.region,
            "resources": ["arn:aws:events:local:123456789012:rule/local-schedule"],
            "detail": {},
        });
        let answer = self.target.invoke(Bytes::from(serde_json::to_vec(&event)?)).await?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// Runs until `stop` is set, polling while `enabled` is. A batch in hand is always finished
    /// first: stopping in the middle of a receive would leave its messages invisible until their
    /// visibility timeout.
    pub async fn run(&self, stop: &AtomicBool, enabled: &AtomicBool) -> Result<(), Error> {
        let mut last_tick = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if !enabled.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if let Some(every) = self.schedule
                && last_tick.elapsed() >= every
            {
                last_tick = std::time::Instant::now();
                match self.tick().await {
                    Ok(answer) => eprintln!("pump: scheduled event → {answer}"),
                    Err(err) => eprintln!(
                        "pump: scheduled event: {}",
                        mediagen::adapters::describe_error(err.as_ref())
                    ),
                }
            }
            match self.run_once().await {
                Ok(Some(report)) => eprintln!(
                    "pump: batch of {} → {} done, {} back to the queue; invocation {} ms",
                    report.received,
                    report.deleted,
                    report.returned,
                    report.duration.as_millis()
                ),
                Ok(None) => {}
                Err(err) => {
                    eprintln!("pump: {}", mediagen::adapters::describe_error(err.as_ref()));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        eprintln!("pump: stopped");
        Ok(())
    }
}
