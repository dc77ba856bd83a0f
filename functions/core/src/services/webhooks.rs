//! Webhooks (docs/design.md, "Webhooks"): when a job with a `webhook_url` becomes final, its
//! delivery is queued ([`Notifier`]); `deliver` takes it from the queue, signs the job with its
//! owner's key and POSTs it ([`Deliverer`]), trying again with a growing delay until the queue
//! gives up. Delivery never changes the job. An owner's key is shown, rotated and revoked by
//! generation ([`WebhookSecrets`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::message::{Delivery, Outcome};
use super::metrics::{self, Metric};
use crate::domain::ids::JobId;
use crate::domain::job::{Job, MediaItem};
use crate::domain::keys::Owner;
use crate::domain::secret::Secret;
use crate::domain::webhook::{
    MasterKey, SigningKey, SigningState, WebhookEvent, grace_until, retry_delay, signature_header,
};
use crate::ports::{
    JobStore, QueueError, SigningStore, StoreError, WebhookError, WebhookPost, WebhookQueue, WebhookSender,
};

/// Queues the delivery of a final job's webhook. Submit, cancel and generate each hold one; the
/// queue sits behind a trait object so that none of them grows a type parameter for it.
#[derive(Clone, Default)]
pub struct Notifier {
    queue: Option<Arc<dyn Enqueue>>,
}

/// [`WebhookQueue::enqueue`] in a form a trait object can carry.
trait Enqueue: Send + Sync {
    fn enqueue(&self, id: JobId) -> BoxFuture<'_, Result<(), QueueError>>;
}

impl<W: WebhookQueue> Enqueue for W {
    fn enqueue(&self, id: JobId) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(WebhookQueue::enqueue(self, id))
    }
}

impl Notifier {
    pub fn new(queue: impl WebhookQueue + 'static) -> Self {
        Self {
            queue: Some(Arc::new(queue)),
        }
    }

    /// Webhooks off (no `WEBHOOKS_QUEUE_URL`): nothing is ever queued.
    pub fn off() -> Self {
        Self::default()
    }

    /// Call once the job's final state is committed. A job without a `webhook_url` needs no
    /// delivery; a failure to queue one is logged and changes nothing else: the job stays as it is.
    /// Answers whether nothing is left to queue (false: the delivery could not be queued).
    pub async fn job_final(&self, job: &Job) -> bool {
        let (Some(queue), Some(_)) = (&self.queue, &job.request.webhook_url) else {
            return true;
        };
        match queue.enqueue(job.id).await {
            Ok(()) => {
                tracing::info!("webhook delivery queued");
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "could not queue the webhook delivery");
                false
            }
        }
    }

    /// [`Notifier::job_final`] for a job whose final write marked its webhook pending: once it is
    /// queued, the mark is removed. While the mark stays, the next delivery of the job's message
    /// that finds it queues the webhook again, so that it is queued at least once
    /// (docs/design.md, "Webhooks").
    pub async fn job_final_marked<S: JobStore>(&self, store: &S, job: &Job) -> bool {
        if !self.job_final(job).await {
            return false;
        }
        if job.request.webhook_url.is_some()
            && let Err(err) = store.mark_webhook_queued(job.id).await
        {
            // The mark stays: a later delivery of the message only queues the webhook again.
            tracing::warn!(error = %err, "could not note that the job's webhook is queued");
        }
        true
    }
}

/// The owners' signing keys, each derived from the deployment's master key (`WEBHOOK_SECRET`).
#[derive(Debug, Clone)]
pub struct SigningKeys {
    master: MasterKey,
}

impl SigningKeys {
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    /// The secret of one generation of an owner's key, as receivers are given it: `whsec_<base64>`.
    pub fn signing_secret(&self, owner: &Owner, generation: u64) -> Secret {
        self.key(owner, generation).secret()
    }

    fn key(&self, owner: &Owner, generation: u64) -> SigningKey {
        self.master.for_owner(owner, generation)
    }
}

/// A rotation's outcome: the secret that signs from now on, and until when the one it replaces
/// still signs too (none: it stopped at once).
#[derive(Debug)]
pub struct Rotated {
    pub secret: Secret,
    pub previous_until: Option<DateTime<Utc>>,
}

/// The owners' webhook secrets as they stand: the generation each owner is at, read from the
/// store on every use (docs/design.md, "Webhooks").
pub struct WebhookSecrets<S> {
    store: S,
    keys: SigningKeys,
}

impl<S> WebhookSecrets<S> {
    pub fn new(store: S, keys: SigningKeys) -> Self {
        Self { store, keys }
    }
}

impl<S: SigningStore> WebhookSecrets<S> {
    /// The secret the owner's receivers verify with from now on.
    pub async fn current(&self, owner: &Owner) -> Result<Secret, StoreError> {
        let state = self.store.signing_state(owner).await?;
        Ok(self.keys.signing_secret(owner, state.generation))
    }

    /// Moves the owner to a new secret; the old one keeps verifying for `grace` (no time: it
    /// stops at once).
    pub async fn rotate(&self, owner: &Owner, grace: Duration) -> Result<Rotated, StoreError> {
        let state = self
            .store
            .next_generation(owner, grace_until(Utc::now(), grace))
            .await?;
        Ok(Rotated {
            secret: self.keys.signing_secret(owner, state.generation),
            previous_until: state.previous.map(|previous| previous.until),
        })
    }

    /// The `webhook-signature` of a message to the owner: one signature with the current key,
    /// and one with the previous key while its grace lasts.
    pub async fn signature(
        &self,
        owner: &Owner,
        message_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<String, StoreError> {
        let state: SigningState = self.store.signing_state(owner).await?;
        let keys: Vec<SigningKey> = state
            .signing(Utc::now())
            .into_iter()
            .map(|generation| self.keys.key(owner, generation))
            .collect();
        Ok(signature_header(&keys, message_id, timestamp, body))
    }
}

/// Sends the webhooks the delivery queue holds.
pub struct Deliverer<S, Q, P> {
    store: S,
    queue: Q,
    sender: P,
    secrets: WebhookSecrets<S>,
}

impl<S: Clone, Q, P> Deliverer<S, Q, P> {
    pub fn new(store: S, queue: Q, sender: P, keys: SigningKeys) -> Self {
        Self {
            secrets: WebhookSecrets::new(store.clone(), keys),
            store,
            queue,
            sender,
        }
    }
}

impl<S: JobStore + SigningStore, Q: WebhookQueue, P: WebhookSender> Deliverer<S, Q, P> {
    /// Delivers one job's webhook; `render` makes the body (the job as the API shows it).
    pub async fn deliver<R>(&self, delivery: &Delivery<'_>, render: R) -> Outcome
    where
        R: FnOnce(&Job, &[MediaItem], WebhookEvent) -> Vec<u8>,
    {
        let job = match self.store.job(delivery.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!("delivery names a job that does not exist; dropped");
                return Outcome::Acknowledge;
            }
            Err(err) => return self.retry(delivery, &err.to_string()).await,
        };
        if !job.status.is_final() {
            // Deliveries are queued only after the final state is committed.
            tracing::warn!(status = %job.status, "delivery names a job that is not final; dropped");
            return Outcome::Acknowledge;
        }
        let Some(url) = &job.request.webhook_url else {
            tracing::warn!("delivery names a job without a webhook_url; dropped");
            return Outcome::Acknowledge;
        };
        let media = match self.store.job_media(&job).await {
            Ok(media) => media,
            Err(err) => return self.retry(delivery, &err.to_string()).await,
        };

        let event = WebhookEvent::Completed;
        let body = render(&job, &media, event);
        let message_id = event.message_id(job.id);
        // A fresh timestamp on every attempt: receivers refuse old ones.
        let timestamp = Utc::now().timestamp();
        // One read of the owner's signing state per delivery rather than a cache, so that a
        // rotation or revocation applies to the next delivery (docs/design.md, "Webhooks").
        let signature = match self.secrets.signature(&job.owner, &message_id, timestamp, &body).await {
            Ok(signature) => signature,
            Err(err) => return self.retry(delivery, &err.to_string()).await,
        };
        let headers = [
            ("webhook-id", message_id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        let post = WebhookPost {
            url,
            headers: &headers,
            body: &body,
        };
        match self.sender.post(&post).await {
            Ok(()) => {
                tracing::info!(receive_count = delivery.receive_count, "webhook delivered");
                metrics::emit(&job.request.model, &[(Metric::WebhooksDelivered, 1.0)]);
                Outcome::Acknowledge
            }
            Err(err @ WebhookError::Refused { .. }) => {
                tracing::warn!(error = %err, "webhook refused; dropped, never retried");
                Outcome::Acknowledge
            }
            Err(err) => {
                metrics::emit(&job.request.model, &[(Metric::WebhookAttemptsFailed, 1.0)]);
                self.retry(delivery, &err.to_string()).await
            }
        }
    }

    /// Sends the delivery back to the queue, to come again after a growing delay.
    async fn retry(&self, delivery: &Delivery<'_>, reason: &str) -> Outcome {
        let delay = retry_delay(delivery.receive_count);
        tracing::warn!(
            error = reason,
            receive_count = delivery.receive_count,
            retry_in_s = delay.as_secs(),
            "webhook not delivered; tried again later"
        );
        if let Some(receipt_handle) = delivery.receipt_handle
            && let Err(err) = self.queue.retry_later(receipt_handle, delay).await
        {
            // The queue's own visibility timeout still brings the delivery back.
            tracing::warn!(error = %err, "could not set the delivery's retry delay");
        }
        Outcome::Retry
    }
}
