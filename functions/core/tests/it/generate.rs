//! The `generate` worker through its SQS entrypoint, against the real store, queue and bucket.

use std::time::Duration;

use crate::helpers::{MAX_RECEIVE_COUNT, Stack, record, sqs_event};
use chrono::Utc;
use mediagen::adapters::dynamodb::DynamoJobStore;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::adapters::sqs::SqsJobQueue;
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::GenerateRequest;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::{Job, JobError, JobStatus, MediaItem, RunRecord};
use mediagen::domain::keys::Owner;
use mediagen::domain::retry::{Backoff, Budget, LONGEST_HOLD};
use mediagen::entrypoints::sqs;
use mediagen::ports::{
    Claim, Commit, GeneratedImage, ImageModel, JobQueue, JobStore, MediaReader, MediaStore, ModelError, RunLog,
    StoreError, Transition,
};
use mediagen::services::generate::{GenerateSettings, Generator};
use serde_json::json;

/// A model that always answers the same error: the stand-in for a failing model API.
#[derive(Clone)]
struct FailingModel(ModelError);

impl ImageModel for FailingModel {
    type Output = ();

    async fn generate<L: RunLog>(&self, _: &GenerateRequest, _: &Budget, _: &L) -> Result<Vec<()>, ModelError> {
        Err(self.0.clone())
    }

    async fn fetch(&self, _: &GenerateRequest, _: &(), _: &Budget) -> Result<GeneratedImage, ModelError> {
        Err(self.0.clone())
    }
}

/// Submits a job the way `submit` does and answers it with its queued message.
async fn submitted(stack: &Stack, body: serde_json::Value) -> (Job, aws_lambda_events::event::sqs::SqsMessage) {
    let request = GenerateRequest::parse(&body, &stack.policy()).unwrap();
    let owner = Owner::parse(crate::helpers::OWNER).unwrap();
    let job = Job::new(owner, request, Utc::now(), Duration::from_secs(86_400));
    stack.store().create(&job, None).await.unwrap();
    stack.queue().enqueue(job.id).await.unwrap();
    let mut messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1);
    (job, messages.remove(0))
}

async fn job(stack: &Stack, id: JobId) -> Job {
    stack.store().job(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_job_runs_to_succeeded_with_its_images_stored() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(
        &stack,
        json!({"prompt": "a red fox", "width": 256, "height": 320, "num_outputs": 2, "output_format": "jpg"}),
    )
    .await;

    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(response.batch_item_failures.is_empty());

    let done = job(&stack, queued.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.attempts, 1);
    assert!(done.completed_at.is_some() && done.started_at.is_some());
    assert_eq!(done.media_ids.len(), 2);
    let media = stack.store().job_media(&done).await.unwrap();
    assert_eq!(media.iter().map(|m| m.index).collect::<Vec<_>>(), [0, 1]);
    for item in &media {
        assert_eq!((item.width, item.height), (256, 320));
        assert_eq!(item.content_type, "image/jpeg");
        assert_eq!(item.key, format!("media/{}/{}.jpg", done.id, item.index));
        let object = mediagen::adapters::aws::s3(&stack.sdk)
            .get_object()
            .bucket(&item.bucket)
            .key(&item.key)
            .send()
            .await
            .unwrap();
        assert_eq!(object.content_type(), Some("image/jpeg"));
        let bytes = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len() as u64, item.bytes);
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), (256, 320));
    }
}

#[tokio::test]
async fn the_same_message_twice_yields_one_set_of_images() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(
        &stack,
        json!({"prompt": "twice", "width": 256, "height": 256, "num_outputs": 3}),
    )
    .await;
    let generator = stack.generator(LocalModel);

    let first = sqs::handle(&generator, sqs_event(vec![message.clone()])).await;
    let after_first = job(&stack, queued.id).await;
    let second = sqs::handle(&generator, sqs_event(vec![message])).await;
    let after_second = job(&stack, queued.id).await;

    assert!(first.batch_item_failures.is_empty());
    assert!(second.batch_item_failures.is_empty(), "a duplicate is acknowledged");
    assert_eq!(after_second.status, JobStatus::Succeeded);
    assert_eq!(after_second.media_ids, after_first.media_ids);
    assert_eq!(after_second.attempts, 1);
    assert_eq!(stack.object_keys(&format!("media/{}/", queued.id)).await.len(), 3);
}

#[tokio::test]
async fn a_job_under_a_live_lease_goes_back_to_the_queue() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "held", "width": 256, "height": 256})).await;
    let now = Utc::now();
    let Claim::Claimed(_) = stack
        .store()
        .claim(queued.id, now, now + chrono::Duration::minutes(5))
        .await
        .unwrap()
    else {
        panic!("the first claim must succeed");
    };

    let message_id = message.message_id.clone().unwrap();
    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;

    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, [message_id.as_str()]);
    let held = job(&stack, queued.id).await;
    assert_eq!((held.status, held.attempts), (JobStatus::Processing, 1));
    assert!(stack.object_keys(&format!("media/{}/", queued.id)).await.is_empty());
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "abandoned", "width": 256, "height": 256})).await;
    let long_ago = Utc::now() - chrono::Duration::minutes(10);
    stack
        .store()
        .claim(queued.id, long_ago, long_ago + chrono::Duration::minutes(1))
        .await
        .unwrap();

    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(response.batch_item_failures.is_empty());
    let done = job(&stack, queued.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
}

#[tokio::test]
async fn a_malformed_message_does_not_block_its_batch() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "neighbour", "width": 256, "height": 256})).await;
    let records = vec![
        record("m-garbage", "not json at all", 1),
        record("m-wrong-shape", r#"{"job":"x"}"#, 1),
        record("m-bad-id", r#"{"job_id":"../../etc"}"#, 1),
        message,
        record(
            "m-unknown-job",
            &json!({"job_id": JobId::new().to_string()}).to_string(),
            1,
        ),
    ];
    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(records)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_transient_failure_returns_the_job_to_the_queue() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "flaky", "width": 256, "height": 256})).await;
    let model = FailingModel(ModelError::Transient {
        message: "model answered 503".into(),
        retry_after: None,
    });
    let message_id = message.message_id.clone().unwrap();
    let response = sqs::handle(&stack.generator(model), sqs_event(vec![message])).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, message_id);
    let retried = job(&stack, queued.id).await;
    assert_eq!(retried.status, JobStatus::Queued);
    assert_eq!(retried.attempts, 1);
    assert_eq!(
        retried.error.unwrap().message,
        "the image model was unavailable or busy"
    );
    // The redelivery delay keeps the message out of sight for now.
    assert!(stack.receive(30).await.is_empty());
}

#[tokio::test]
async fn the_last_allowed_receive_marks_the_job_failed() {
    let stack = Stack::new().await;
    let (queued, _) = submitted(&stack, json!({"prompt": "doomed", "width": 256, "height": 256})).await;
    let model = FailingModel(ModelError::Transient {
        message: "model answered 503".into(),
        retry_after: None,
    });
    let last = record(
        "m-last",
        &json!({"job_id": queued.id.to_string()}).to_string(),
        MAX_RECEIVE_COUNT,
    );
    let response = sqs::handle(&stack.generator(model), sqs_event(vec![last])).await;

    // Reported all the same, so that the queue moves it to the dead-letter queue.
    assert_eq!(response.batch_item_failures.len(), 1);
    let failed = job(&stack, queued.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "retries_exhausted");
    assert!(
        error.message.contains("the image model was unavailable"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_permanent_model_error_fails_the_job_with_the_models_reason() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "forbidden", "width": 256, "height": 256})).await;
    let model = FailingModel(ModelError::Permanent {
        code: "model_rejected".into(),
        message: "NSFW content detected".into(),
    });
    let response = sqs::handle(&stack.generator(model), sqs_event(vec![message])).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "a permanent failure is acknowledged"
    );
    let failed = job(&stack, queued.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().message, "NSFW content detected");
}

#[tokio::test]
async fn a_final_job_is_never_moved_again() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "final", "width": 256, "height": 256})).await;
    let model = FailingModel(ModelError::Permanent {
        code: "model_rejected".into(),
        message: "no".into(),
    });
    sqs::handle(&stack.generator(model), sqs_event(vec![message.clone()])).await;
    // A late duplicate meets a working model: the failed job must stay failed, with no images.
    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Failed);
    assert!(stack.object_keys(&format!("media/{}/", queued.id)).await.is_empty());
}

/// Claims the job as a worker that then died would have: its lease already run out.
async fn claimed_by_a_dead_worker(stack: &Stack, id: JobId) -> Job {
    let long_ago = Utc::now() - chrono::Duration::minutes(10);
    let Claim::Claimed(dead) = stack
        .store()
        .claim(id, long_ago, long_ago + chrono::Duration::minutes(1))
        .await
        .unwrap()
    else {
        panic!("the first claim must succeed");
    };
    *dead
}

async fn put(stack: &Stack, key: &str) {
    stack
        .media()
        .put(key, bytes::Bytes::from_static(b"left by a dead attempt"), "image/png")
        .await
        .unwrap();
}

/// A worker died between its S3 put and its commit; the next attempt succeeds: the bucket holds
/// exactly the committed images, the stale bytes overwritten and a stray format removed.
#[tokio::test]
async fn a_crash_between_the_put_and_the_commit_leaves_exactly_the_committed_images() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "crash", "width": 256, "height": 256})).await;
    let dead = claimed_by_a_dead_worker(&stack, queued.id).await;
    put(&stack, &dead.media_key(0, OutputFormat::Png)).await;
    put(&stack, &dead.media_key(0, OutputFormat::Webp)).await;

    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(response.batch_item_failures.is_empty());
    let done = job(&stack, queued.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
    let media = stack.store().job_media(&done).await.unwrap();
    let mut keys = stack.object_keys(&format!("media/{}/", queued.id)).await;
    keys.sort();
    assert_eq!(keys, [media[0].key.clone()]);
    let stored = stack.media().get(&media[0].bucket, &media[0].key).await.unwrap();
    assert_eq!(
        stored.len() as u64,
        media[0].bytes,
        "the dead attempt's bytes were overwritten"
    );
}

/// The same crash, then the job fails for good: no image of it stays in the bucket.
#[tokio::test]
async fn a_crash_between_the_put_and_the_commit_then_a_failure_leaves_no_images() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "crash", "width": 256, "height": 256})).await;
    let dead = claimed_by_a_dead_worker(&stack, queued.id).await;
    put(&stack, &dead.media_key(0, OutputFormat::Png)).await;
    let model = FailingModel(ModelError::Permanent {
        code: "model_rejected".into(),
        message: "no".into(),
    });

    sqs::handle(&stack.generator(model), sqs_event(vec![message])).await;
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Failed);
    assert!(stack.object_keys(&format!("media/{}/", queued.id)).await.is_empty());
}

/// Renders the first output and fails on the second: an attempt that stored an image and then
/// failed in a way worth another try.
#[derive(Clone)]
struct SecondOutputFails;

impl ImageModel for SecondOutputFails {
    type Output = u32;

    async fn generate<L: RunLog>(&self, request: &GenerateRequest, _: &Budget, _: &L) -> Result<Vec<u32>, ModelError> {
        Ok((0..request.num_outputs).collect())
    }

    async fn fetch(&self, request: &GenerateRequest, index: &u32, _: &Budget) -> Result<GeneratedImage, ModelError> {
        match index {
            0 => mediagen::adapters::image_model::local::render(request, 0),
            _ => Err(ModelError::Transient {
                message: "the second output broke off".into(),
                retry_after: None,
            }),
        }
    }
}

#[tokio::test]
async fn a_job_sent_back_to_the_queue_keeps_no_images() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(
        &stack,
        json!({"prompt": "half", "width": 256, "height": 256, "num_outputs": 2}),
    )
    .await;
    let response = sqs::handle(&stack.generator(SecondOutputFails), sqs_event(vec![message])).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Queued);
    assert!(stack.object_keys(&format!("media/{}/", queued.id)).await.is_empty());
}

/// A worker whose lease ran out and was taken over cannot commit: the `attempts` fence.
#[tokio::test]
async fn a_stale_workers_commit_is_rejected_by_the_attempts_fence() {
    let stack = Stack::new().await;
    let (queued, _) = submitted(&stack, json!({"prompt": "fence", "width": 256, "height": 256})).await;
    let stale = claimed_by_a_dead_worker(&stack, queued.id).await;
    let now = Utc::now();
    let Claim::Claimed(current) = stack
        .store()
        .claim(queued.id, now, now + chrono::Duration::minutes(1))
        .await
        .unwrap()
    else {
        panic!("the lease ran out: the job is taken over");
    };
    let store = stack.store();
    let error = JobError::new("x", "y");
    assert_eq!(
        store
            .complete(&stale, &[], &RunRecord::default(), Utc::now())
            .await
            .unwrap(),
        Commit::Stale
    );
    assert_eq!(store.fail(&stale, &error, Utc::now()).await.unwrap(), Transition::Stale);
    assert_eq!(
        store.release(&stale, &error, Utc::now()).await.unwrap(),
        Transition::Stale
    );
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Processing);
    assert_eq!(
        store
            .complete(&current, &[], &RunRecord::default(), Utc::now())
            .await
            .unwrap(),
        Commit::Applied
    );
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Succeeded);
}

/// SQS may deliver one message twice at the same time, to two invocations.
#[tokio::test]
async fn two_workers_with_the_same_message_at_once_make_one_set_of_images() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(
        &stack,
        json!({"prompt": "twins", "width": 256, "height": 256, "num_outputs": 2}),
    )
    .await;
    let (first, second) = (stack.generator(LocalModel), stack.generator(LocalModel));
    let (a, b) = tokio::join!(
        sqs::handle(&first, sqs_event(vec![message.clone()])),
        sqs::handle(&second, sqs_event(vec![message]))
    );

    let done = job(&stack, queued.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(done.media_ids.len(), 2);
    assert_eq!(stack.object_keys(&format!("media/{}/", queued.id)).await.len(), 2);
    // One of them held the job; the other's delivery came back for later, and found it final.
    assert_eq!(a.batch_item_failures.len() + b.batch_item_failures.len(), 1);
}

/// A store whose commit goes through but whose answer is lost, once.
struct LostCommitAnswer {
    store: DynamoJobStore,
    lost: std::sync::atomic::AtomicBool,
}

impl JobStore for LostCommitAnswer {
    async fn complete(
        &self,
        claimed: &Job,
        media: &[MediaItem],
        record: &RunRecord,
        now: chrono::DateTime<Utc>,
    ) -> Result<Commit, StoreError> {
        let applied = self.store.complete(claimed, media, record, now).await?;
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection reset before the answer".into()));
        }
        Ok(applied)
    }
    // The rest as the real store.
    async fn create(
        &self,
        job: &Job,
        idempotency: Option<mediagen::ports::IdempotencyClaim<'_>>,
    ) -> Result<mediagen::ports::Created, StoreError> {
        self.store.create(job, idempotency).await
    }
    async fn release_idempotency(
        &self,
        owner: &Owner,
        key: &mediagen::domain::idempotency::IdempotencyKey,
        job_id: JobId,
    ) -> Result<Transition, StoreError> {
        self.store.release_idempotency(owner, key, job_id).await
    }
    async fn idempotent_job(
        &self,
        owner: &Owner,
        key: &mediagen::domain::idempotency::IdempotencyKey,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<(JobId, String)>, StoreError> {
        self.store.idempotent_job(owner, key, now).await
    }
    async fn list(
        &self,
        owner: &Owner,
        query: &mediagen::domain::listing::ListQuery,
    ) -> Result<mediagen::ports::JobPage, StoreError> {
        self.store.list(owner, query).await
    }
    async fn cancel(&self, id: JobId, now: chrono::DateTime<Utc>) -> Result<mediagen::ports::Cancel, StoreError> {
        self.store.cancel(id, now).await
    }
    async fn finish_canceled(&self, claimed: &Job, now: chrono::DateTime<Utc>) -> Result<Transition, StoreError> {
        self.store.finish_canceled(claimed, now).await
    }
    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.store.job(id).await
    }
    async fn media(&self, id: mediagen::domain::ids::MediaId) -> Result<Option<MediaItem>, StoreError> {
        self.store.media(id).await
    }
    async fn job_media(&self, job: &Job) -> Result<Vec<MediaItem>, StoreError> {
        self.store.job_media(job).await
    }
    async fn note_predictions(&self, claimed: &Job, model: &str, ids: &[String]) -> Result<Transition, StoreError> {
        self.store.note_predictions(claimed, model, ids).await
    }
    async fn mark_sent(&self, id: JobId) -> Result<(), StoreError> {
        self.store.mark_sent(id).await
    }
    async fn mark_webhook_queued(&self, id: JobId) -> Result<(), StoreError> {
        self.store.mark_webhook_queued(id).await
    }
    async fn unsent(
        &self,
        before: chrono::DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<mediagen::ports::UnsentJob>, StoreError> {
        self.store.unsent(before, limit).await
    }
    async fn fail_unsent(
        &self,
        id: JobId,
        error: &JobError,
        now: chrono::DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        self.store.fail_unsent(id, error, now).await
    }
    async fn fail_queued(
        &self,
        id: JobId,
        error: &JobError,
        now: chrono::DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.store.fail_queued(id, error, now).await
    }
    async fn fail_stranded(
        &self,
        id: JobId,
        error: &JobError,
        now: chrono::DateTime<Utc>,
    ) -> Result<mediagen::ports::Stranded, StoreError> {
        self.store.fail_stranded(id, error, now).await
    }
    async fn claim(
        &self,
        id: JobId,
        now: chrono::DateTime<Utc>,
        lease_until: chrono::DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.store.claim(id, now, lease_until).await
    }
    async fn release(
        &self,
        claimed: &Job,
        error: &JobError,
        now: chrono::DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.store.release(claimed, error, now).await
    }
    async fn park(
        &self,
        claimed: &Job,
        parked: &mediagen::domain::job::Parked<'_>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.store.park(claimed, parked, now).await
    }
    async fn fail(
        &self,
        claimed: &Job,
        error: &JobError,
        now: chrono::DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.store.fail(claimed, error, now).await
    }
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_still_ends_the_job_succeeded_once() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "lost", "width": 256, "height": 256})).await;
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
    let store = LostCommitAnswer {
        store: stack.store(),
        lost: Default::default(),
    };
    let generator = Generator::new(
        store,
        stack.queue(),
        stack.media(),
        LocalModel,
        stack.notifier(),
        settings,
    );

    let response = sqs::handle(&generator, sqs_event(vec![message.clone()])).await;
    assert!(response.batch_item_failures.is_empty());
    let done = job(&stack, queued.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.media_ids.len(), 1);
    assert_eq!(stack.object_keys(&format!("media/{}/", queued.id)).await.len(), 1);
    // A redelivery finds it final and changes nothing.
    let again = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(job(&stack, queued.id).await.media_ids, done.media_ids);
}

/// The jobs the webhooks queue holds deliveries for, in the order received.
async fn webhooks_queued(stack: &Stack) -> Vec<JobId> {
    stack
        .receive_webhooks(30)
        .await
        .iter()
        .map(|record| {
            let message: mediagen::ports::JobMessage = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
            JobId::parse(&message.job_id).unwrap()
        })
        .collect()
}

/// A job with a webhook, submitted, and its message.
async fn submitted_with_webhook(stack: &Stack) -> (Job, aws_lambda_events::event::sqs::SqsMessage) {
    submitted(
        stack,
        json!({"prompt": "announced", "width": 256, "height": 256, "webhook_url": "http://127.0.0.1:9/hook"}),
    )
    .await
}

/// The worker over another store, as the stack's generator otherwise.
fn generator_over<S: JobStore>(
    stack: &Stack,
    store: S,
) -> Generator<S, SqsJobQueue, mediagen::adapters::s3::S3MediaStore, LocalModel> {
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
    Generator::new(
        store,
        stack.queue(),
        stack.media(),
        LocalModel,
        stack.notifier(),
        settings,
    )
}

/// The commit went through but its answer was lost: the retry must see its own commit, and the
/// job's webhook be queued once (docs/design.md, "Webhooks").
#[tokio::test]
async fn a_commit_whose_answer_was_lost_still_queues_its_webhook_once() {
    let stack = Stack::new().await;
    let (queued, message) = submitted_with_webhook(&stack).await;
    let store = LostCommitAnswer {
        store: stack.store(),
        lost: Default::default(),
    };

    let response = sqs::handle(&generator_over(&stack, store), sqs_event(vec![message.clone()])).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let done = job(&stack, queued.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.media_ids.len(), 1);
    assert_eq!(stack.object_keys(&format!("media/{}/", queued.id)).await.len(), 1);
    assert_eq!(webhooks_queued(&stack).await, [queued.id], "one delivery, for the job");

    // A redelivery finds the job final with its webhook queued: no second delivery.
    let again = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(again.batch_item_failures.is_empty());
    assert!(webhooks_queued(&stack).await.is_empty());
}

/// A worker ended the job and died before queueing its webhook (a crash, a timeout), or the
/// answer to its final write was lost and it returned the message: the message comes back, finds
/// the job final with its webhook never queued, and queues it, once.
#[tokio::test]
async fn a_redelivery_queues_the_webhook_the_worker_that_ended_the_job_never_queued() {
    let stack = Stack::new().await;
    for ending in ["complete", "fail"] {
        let (queued, message) = submitted_with_webhook(&stack).await;
        let store = stack.store();
        let now = Utc::now();
        let Claim::Claimed(claimed) = store
            .claim(queued.id, now, now + chrono::Duration::minutes(1))
            .await
            .unwrap()
        else {
            panic!("the first claim must succeed");
        };
        match ending {
            "complete" => assert_eq!(
                store.complete(&claimed, &[], &RunRecord::default(), now).await.unwrap(),
                Commit::Applied
            ),
            _ => assert_eq!(
                store
                    .fail(&claimed, &JobError::new("model_rejected", "no"), now)
                    .await
                    .unwrap(),
                Transition::Applied
            ),
        }

        let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message.clone()])).await;
        assert!(response.batch_item_failures.is_empty(), "{ending}: {response:?}");
        assert_eq!(webhooks_queued(&stack).await, [queued.id], "{ending}");
        assert!(job(&stack, queued.id).await.status.is_final());

        let again = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
        assert!(again.batch_item_failures.is_empty());
        assert!(webhooks_queued(&stack).await.is_empty(), "{ending}: queued once");
    }
}

/// The webhooks queue does not answer when the job succeeds: the message goes back, and its
/// redelivery queues the webhook.
#[tokio::test]
async fn a_webhook_that_could_not_be_queued_is_queued_by_the_redelivery() {
    let stack = Stack::new().await;
    let (queued, message) = submitted_with_webhook(&stack).await;
    let message_id = message.message_id.clone().unwrap();
    // Nothing listens on port 1.
    let unreachable = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.sdk)
            .endpoint_url("http://127.0.0.1:1")
            .build(),
    );
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
    let notifier = mediagen::services::webhooks::Notifier::new(mediagen::adapters::sqs::SqsWebhookQueue::new(
        unreachable,
        &stack.provisioned.webhooks_queue_url,
    ));
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        LocalModel,
        notifier,
        settings,
    );

    let response = sqs::handle(&generator, sqs_event(vec![message.clone()])).await;
    let returned: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(returned, [message_id.as_str()], "returned, to queue the webhook later");
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Succeeded);
    assert!(webhooks_queued(&stack).await.is_empty());

    let again = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(webhooks_queued(&stack).await, [queued.id]);
}

/// Notes a run and fails the first time; the second time it must be handed that run back.
struct NotingModel;

impl ImageModel for NotingModel {
    type Output = u32;

    async fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> Result<Vec<u32>, ModelError> {
        if log.noted().is_empty() {
            log.note(vec!["run-1".into()]).await;
            return Err(ModelError::Transient {
                message: "broke off after starting paid work".into(),
                retry_after: None,
            });
        }
        assert_eq!(log.noted(), ["run-1"], "the next attempt resumes the noted run");
        LocalModel.generate(request, budget, log).await
    }

    async fn fetch(
        &self,
        request: &GenerateRequest,
        index: &u32,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        LocalModel.fetch(request, index, budget).await
    }
}

#[tokio::test]
async fn paid_work_noted_by_one_attempt_is_handed_to_the_next() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "resume", "width": 256, "height": 256})).await;
    // No retry inside the invocation: the second try comes with the next delivery.
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 1);
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        NotingModel,
        stack.notifier(),
        settings,
    );

    let first = sqs::handle(&generator, sqs_event(vec![message.clone()])).await;
    assert_eq!(first.batch_item_failures.len(), 1);
    assert_eq!(job(&stack, queued.id).await.predictions, ["run-1"]);
    let second = sqs::handle(&generator, sqs_event(vec![message])).await;
    assert!(second.batch_item_failures.is_empty());
    let done = job(&stack, queued.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 2));
}

/// Records the redelivery delays the worker asks for.
struct RecordingQueue {
    queue: SqsJobQueue,
    delays: std::sync::Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl JobQueue for RecordingQueue {
    async fn enqueue(&self, id: JobId) -> Result<(), mediagen::ports::QueueError> {
        self.queue.enqueue(id).await
    }

    async fn enqueue_after(&self, id: JobId, delay: Duration) -> Result<(), mediagen::ports::QueueError> {
        self.queue.enqueue_after(id, delay).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), mediagen::ports::QueueError> {
        self.delays.lock().unwrap().push(delay);
        self.queue.retry_later(receipt_handle, delay).await
    }
}

/// A long rate limit is waited out between deliveries, not spent receive by receive.
#[tokio::test]
async fn the_models_retry_after_sets_the_redelivery_within_sqs_limits() {
    let stack = Stack::new().await;
    // SQS refuses a hold of its whole 12 hours on a message already received.
    for (asked, expected) in [(900, 900), (100_000, LONGEST_HOLD.as_secs())] {
        let (_, message) = submitted(&stack, json!({"prompt": "throttled", "width": 256, "height": 256})).await;
        let delays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let queue = RecordingQueue {
            queue: stack.queue(),
            delays: delays.clone(),
        };
        let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
        settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
        let model = FailingModel(ModelError::Transient {
            message: "Replicate throttled the request".into(),
            retry_after: Some(Duration::from_secs(asked)),
        });
        let generator = Generator::new(stack.store(), queue, stack.media(), model, stack.notifier(), settings);
        let response = sqs::handle(&generator, sqs_event(vec![message])).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(
            *delays.lock().unwrap(),
            [Duration::from_secs(expected)],
            "asked {asked} s"
        );
    }
}

/// Takes `per_job` for each job, and needs that much to start one: a slow model.
struct SteadyModel {
    per_job: Duration,
}

impl ImageModel for SteadyModel {
    type Output = u32;

    fn min_budget(&self) -> Duration {
        self.per_job + Duration::from_millis(100)
    }

    async fn generate<L: RunLog>(&self, _: &GenerateRequest, budget: &Budget, _: &L) -> Result<Vec<u32>, ModelError> {
        if budget.remaining() < self.per_job {
            return Err(ModelError::Transient {
                message: "out of time".into(),
                retry_after: None,
            });
        }
        tokio::time::sleep(self.per_job).await;
        Ok(vec![0])
    }

    async fn fetch(
        &self,
        request: &GenerateRequest,
        index: &u32,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        LocalModel.fetch(request, index, budget).await
    }
}

/// Ten records, four at a time, in an invocation with time for one round of them: the first
/// round runs; the others go back unclaimed, their jobs untouched, no attempt spent on them.
#[tokio::test]
async fn a_batch_of_ten_near_the_deadline_spends_no_attempt_it_cannot_finish() {
    let stack = Stack::new().await;
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    for n in 0..10 {
        let (queued, message) = submitted(
            &stack,
            json!({"prompt": format!("late {n}"), "width": 256, "height": 256}),
        )
        .await;
        jobs.push(queued.id);
        records.push(message);
    }
    let model = SteadyModel {
        per_job: Duration::from_millis(1500),
    };
    // 3 s after the reserve: one round of 1.6 s, not two.
    let response = sqs::handle(
        &stack.generator(model),
        crate::helpers::sqs_event_due_in(records, sqs::DEADLINE_RESERVE + Duration::from_secs(3)),
    )
    .await;

    let mut succeeded = 0;
    for id in &jobs {
        let job = job(&stack, *id).await;
        match job.status {
            JobStatus::Succeeded => succeeded += 1,
            JobStatus::Queued => {
                assert_eq!(job.attempts, 0, "a job returned for lack of time keeps its attempts");
                assert!(job.error.is_none(), "{:?}", job.error);
            }
            other => panic!("job {id} is {other}"),
        }
    }
    assert_eq!(succeeded, 4, "the first round ran");
    assert_eq!(response.batch_item_failures.len(), 6);
    // Returned for another invocation at once: visible again within a second or so, while the
    // records that ran stay hidden.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut back: Vec<String> = stack
        .receive(30)
        .await
        .into_iter()
        .filter_map(|m| m.message_id)
        .collect();
    let mut returned: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    back.sort();
    returned.sort();
    assert_eq!(back, returned);
}

/// A batch of the event source's size (template.yaml's BatchSize, RECORD_CONCURRENCY records)
/// starts whole in an invocation with time for one job each: no record waits its turn, so none
/// goes back unstarted, and no receive is spent on a record that never ran.
#[tokio::test]
async fn a_batch_of_the_event_sources_size_starts_every_record() {
    let stack = Stack::new().await;
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    for n in 0..sqs::RECORD_CONCURRENCY {
        let (queued, message) = submitted(
            &stack,
            json!({"prompt": format!("on time {n}"), "width": 256, "height": 256}),
        )
        .await;
        jobs.push(queued.id);
        records.push(message);
    }
    let model = SteadyModel {
        per_job: Duration::from_millis(1500),
    };
    // 3 s after the reserve: one round of 1.6 s.
    let response = sqs::handle(
        &stack.generator(model),
        crate::helpers::sqs_event_due_in(records, sqs::DEADLINE_RESERVE + Duration::from_secs(3)),
    )
    .await;

    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    for id in &jobs {
        let job = job(&stack, *id).await;
        assert_eq!((job.status, job.attempts), (JobStatus::Succeeded, 1));
    }
}

/// What a job shows its client is a short message; an SDK's error chain (endpoints, sockets)
/// goes to the log only.
#[tokio::test]
async fn a_failure_of_our_storage_shows_no_sdk_error_chain() {
    let stack = Stack::new().await;
    let (queued, message) = submitted(&stack, json!({"prompt": "no bucket", "width": 256, "height": 256})).await;
    // Nothing listens on port 1: every put fails to connect.
    let unreachable = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("test", "test", None, None, "tests"),
        ))
        .endpoint_url("http://127.0.0.1:1")
        .http_client(mediagen::adapters::aws::http_client())
        .build();
    let media = mediagen::adapters::s3::S3MediaStore::from_sdk(&unreachable, "media", None).unwrap();
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 1);
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        media,
        LocalModel,
        stack.notifier(),
        settings,
    );

    sqs::handle(&generator, sqs_event(vec![message])).await;
    let retried = job(&stack, queued.id).await;
    assert_eq!(retried.status, JobStatus::Queued);
    let shown = retried.error.unwrap().message;
    assert_eq!(shown, "storage was briefly unavailable");
    for internal in ["127.0.0.1", "dispatch", "error", "Connection"] {
        assert!(!shown.contains(internal), "{shown}");
    }
}
