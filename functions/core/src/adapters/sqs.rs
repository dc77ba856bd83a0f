//! The jobs queue and the webhook deliveries queue on SQS. A message body is `{"job_id":"…"}`
//! on both; the job record is the truth.

use std::time::Duration;

use aws_sdk_sqs::Client;

use super::describe_error as describe;
use crate::domain::ids::JobId;
use crate::domain::retry::LONGEST_HOLD;
use crate::ports::{JobMessage, JobQueue, QueueError, WebhookQueue};

/// The longest `DelaySeconds` SQS takes.
const LONGEST_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    async fn send(&self, id: JobId) -> Result<(), QueueError> {
        self.send_after(id, Duration::ZERO).await
    }

    async fn send_after(&self, id: JobId, delay: Duration) -> Result<(), QueueError> {
        let message = JobMessage { job_id: id.to_string() };
        let body = serde_json::to_string(&message).map_err(|e| QueueError::Unavailable(e.to_string()))?;
        let seconds = delay.min(LONGEST_DELAY).as_secs() as i32;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .set_delay_seconds((seconds > 0).then_some(seconds))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe(&e)))?;
        Ok(())
    }

    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS refuses a visibility beyond 12 hours from the receive.
        let seconds = delay.min(LONGEST_HOLD).as_secs() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(describe(&e)))?;
        Ok(())
    }
}

impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, id: JobId) -> Result<(), QueueError> {
        self.send(id).await
    }

    async fn enqueue_after(&self, id: JobId, delay: Duration) -> Result<(), QueueError> {
        self.send_after(id, delay).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.delay(receipt_handle, delay).await
    }
}

/// The webhook deliveries queue: the same messages on another queue.
#[derive(Debug, Clone)]
pub struct SqsWebhookQueue(SqsJobQueue);

impl SqsWebhookQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self(SqsJobQueue::new(client, queue_url))
    }
}

impl WebhookQueue for SqsWebhookQueue {
    async fn enqueue(&self, id: JobId) -> Result<(), QueueError> {
        self.0.send(id).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.0.delay(receipt_handle, delay).await
    }
}
