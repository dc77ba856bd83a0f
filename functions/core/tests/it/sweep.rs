//! The sweeper (docs/design.md, "Failure rules"): a job whose message used up its receives on the
//! jobs queue while the job was still `queued` or `processing` is ended `failed` from the
//! dead-letter queue, through real SQS redrive, store and bucket.

use std::time::Duration;

use crate::helpers::{OWNER, Stack, sqs_event};
use aws_lambda_events::event::sqs::SqsMessage;
use bytes::Bytes;
use chrono::Utc;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::domain::generation::GenerateRequest;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::{Job, JobError, JobStatus};
use mediagen::domain::keys::Owner;
use mediagen::entrypoints::sqs;
use mediagen::ports::{Claim, JobQueue, JobStore, MediaStore};
use serde_json::json;

/// A job with a webhook, written and queued as `submit` leaves it.
async fn queued(stack: &Stack) -> Job {
    let body = json!({"prompt": "stranded", "width": 256, "height": 256, "num_outputs": 2,
                      "webhook_url": "http://127.0.0.1:9/hook"});
    let request = GenerateRequest::parse(&body, &stack.policy()).unwrap();
    let job = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        Utc::now(),
        Duration::from_secs(86_400),
    );
    stack.store().create(&job, None).await.unwrap();
    stack.queue().enqueue(job.id).await.unwrap();
    job
}

/// Claims the job as a worker would, its lease ending `lease` from now (in the past if negative).
async fn claimed(stack: &Stack, job: &Job, lease: chrono::Duration) -> Job {
    let now = Utc::now();
    let Claim::Claimed(claimed) = stack.store().claim(job.id, now, now + lease).await.unwrap() else {
        panic!("the claim must succeed");
    };
    *claimed
}

async fn job(stack: &Stack, id: JobId) -> Job {
    stack.store().job(id).await.unwrap().unwrap()
}

async fn sweep(stack: &Stack, records: Vec<SqsMessage>) -> usize {
    sqs::dead_letters(&stack.sweeper(), sqs_event(records))
        .await
        .batch_item_failures
        .len()
}

async fn webhooks_queued(stack: &Stack) -> usize {
    stack.receive_webhooks(30).await.len()
}

/// `claim` failed on the last receive (or generate's `release` succeeded and nothing came after).
#[tokio::test]
async fn a_queued_job_whose_message_reached_the_dead_letter_queue_is_failed() {
    let stack = Stack::new().await;
    let job_id = queued(&stack).await.id;
    let dead = stack.exhaust_to_dead_letters().await;

    assert_eq!(sweep(&stack, dead.clone()).await, 0, "handled, so deleted");
    let failed = job(&stack, job_id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "retries_exhausted");
    assert!(failed.completed_at.is_some());
    assert_eq!(webhooks_queued(&stack).await, 1, "its webhook is queued");

    // Idempotent: the same dead letter again changes nothing and queues no second webhook.
    assert_eq!(sweep(&stack, dead).await, 0);
    assert_eq!(job(&stack, job_id).await.updated_at, failed.updated_at);
    assert_eq!(webhooks_queued(&stack).await, 0);
}

/// The worker crashed (or timed out, or ran out of memory) on the last receive, after storing
/// an image but before the commit.
#[tokio::test]
async fn a_job_whose_worker_died_on_the_last_receive_is_failed_and_its_images_removed() {
    let stack = Stack::new().await;
    let queued = queued(&stack).await;
    let dead = claimed(&stack, &queued, chrono::Duration::seconds(-1)).await;
    let key = dead.media_key(0, mediagen::domain::format::OutputFormat::Png);
    stack
        .media()
        .put(&key, Bytes::from_static(b"half a job"), "image/png")
        .await
        .unwrap();
    let letters = stack.exhaust_to_dead_letters().await;

    assert_eq!(sweep(&stack, letters).await, 0);
    let failed = job(&stack, queued.id).await;
    assert_eq!((failed.status, failed.attempts), (JobStatus::Failed, 1));
    assert!(failed.lease_until.is_none());
    assert!(
        stack.object_keys(&format!("media/{}/", queued.id)).await.is_empty(),
        "a job that did not succeed keeps no images"
    );
}

/// `fail` failed on the last receive, or `release` failed one receive earlier: the lease of the
/// last claim is still live, and a worker may yet commit. The sweeper waits for it to run out.
#[tokio::test]
async fn a_job_under_a_live_lease_is_left_to_its_worker_until_the_lease_ends() {
    let stack = Stack::new().await;
    let queued = queued(&stack).await;
    claimed(&stack, &queued, chrono::Duration::seconds(2)).await;
    let letters = stack.exhaust_to_dead_letters().await;

    assert_eq!(
        sweep(&stack, letters.clone()).await,
        1,
        "returned to the dead-letter queue"
    );
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Processing);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sweep(&stack, letters).await, 0);
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Failed);
}

#[tokio::test]
async fn a_final_or_missing_job_is_left_alone() {
    let stack = Stack::new().await;
    let queued = queued(&stack).await;
    let running = claimed(&stack, &queued, chrono::Duration::minutes(1)).await;
    let error = JobError::new("model_rejected", "no");
    stack.store().fail(&running, &error, Utc::now()).await.unwrap();
    let letters = stack.exhaust_to_dead_letters().await;
    let missing = crate::helpers::record("m-missing", &json!({"job_id": JobId::new().to_string()}).to_string(), 1);

    assert_eq!(sweep(&stack, [letters, vec![missing]].concat()).await, 0);
    let failed = job(&stack, queued.id).await;
    assert_eq!(failed.error, Some(error), "the job keeps its own reason");
}

/// The worker ended the job on the last receive and died before queueing its webhook: the dead
/// letter finds the job final with its webhook never queued, and queues it, once.
#[tokio::test]
async fn a_dead_letter_of_a_final_job_whose_webhook_was_never_queued_queues_it() {
    let stack = Stack::new().await;
    let queued = queued(&stack).await;
    let running = claimed(&stack, &queued, chrono::Duration::minutes(1)).await;
    let committed = stack
        .store()
        .complete(&running, &[], &mediagen::domain::job::RunRecord::default(), Utc::now())
        .await
        .unwrap();
    assert_eq!(committed, mediagen::ports::Commit::Applied);
    let letters = stack.exhaust_to_dead_letters().await;

    assert_eq!(sweep(&stack, letters.clone()).await, 0);
    assert_eq!(job(&stack, queued.id).await.status, JobStatus::Succeeded);
    assert_eq!(webhooks_queued(&stack).await, 1, "its webhook is queued");

    assert_eq!(sweep(&stack, letters).await, 0);
    assert_eq!(webhooks_queued(&stack).await, 0, "once");
}

/// A dead letter whose body names no job: the sweeper cannot end what it may stand for, so it
/// keeps it in the dead-letter queue for an operator, out of the way for SQS's longest delay; the
/// batch's other letters are handled.
#[tokio::test]
async fn an_unreadable_dead_letter_is_kept_for_an_operator() {
    let stack = Stack::new().await;
    let queued = queued(&stack).await;
    let mut letters = stack.exhaust_to_dead_letters().await;
    mediagen::adapters::aws::sqs(&stack.sdk)
        .send_message()
        .queue_url(&stack.provisioned.dead_letter_queue_url)
        .message_body(r#"{"job_id": "01a2"#)
        .send()
        .await
        .unwrap();
    // Received with no visibility timeout: only the sweeper's own delay can hide it now.
    let unreadable = stack.receive_dead_letters(0).await;
    assert_eq!(unreadable.len(), 1);
    let unreadable_id = unreadable[0].message_id.clone().unwrap();
    letters.extend(unreadable);

    let answer = sqs::dead_letters(&stack.sweeper(), sqs_event(letters)).await;
    let kept: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        kept,
        [unreadable_id.as_str()],
        "reported, so that it stays in the queue"
    );
    assert_eq!(
        job(&stack, queued.id).await.status,
        JobStatus::Failed,
        "the other letter handled"
    );
    assert!(
        stack.receive_dead_letters(0).await.is_empty(),
        "kept out of sight, not taken again at once"
    );
}

/// A job written as `submit` writes it, `age` ago, whose message never went out: `submit` crashed
/// or timed out between the two, or could not send and then could not mark it failed either.
/// Its webhook is refused at once (nothing listens on port 9).
async fn never_sent(stack: &Stack, age: chrono::Duration) -> Job {
    let body = json!({"prompt": "never sent", "width": 256, "height": 256, "webhook_url": "http://127.0.0.1:9/hook"});
    let request = GenerateRequest::parse(&body, &stack.policy()).unwrap();
    let job = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        Utc::now() - age,
        Duration::from_secs(86_400),
    );
    stack.store().create(&job, None).await.unwrap();
    job
}

fn cutoff() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::minutes(5)
}

#[tokio::test]
async fn the_sweep_sends_again_the_jobs_never_sent_and_only_those() {
    let stack = Stack::new().await;
    let lost = never_sent(&stack, chrono::Duration::minutes(10)).await;
    let young = never_sent(&stack, chrono::Duration::seconds(10)).await;
    let sent = never_sent(&stack, chrono::Duration::minutes(10)).await;
    stack.queue().enqueue(sent.id).await.unwrap();
    stack.store().mark_sent(sent.id).await.unwrap();
    let picked_up = never_sent(&stack, chrono::Duration::minutes(10)).await;
    claimed(&stack, &picked_up, chrono::Duration::minutes(1)).await;
    // The message `submit` sent for `sent`, out of sight.
    assert_eq!(stack.receive(60).await.len(), 1);

    let report = stack.sweeper().sweep(cutoff()).await;
    assert_eq!(
        (report.found, report.sent, report.failed, report.errors),
        (1, 1, 0, 0),
        "{report:?}"
    );
    let resent = job(&stack, lost.id).await;
    assert_eq!(resent.status, JobStatus::Queued);
    assert!(!resent.unsent, "its mark is removed");
    let messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1, "one message, for the lost job");
    assert!(messages[0].body.as_deref().unwrap().contains(&lost.id.to_string()));
    assert_eq!(webhooks_queued(&stack).await, 0, "nothing ended");
    assert!(job(&stack, young.id).await.unsent, "submit may still send it");
    assert_eq!(job(&stack, sent.id).await.status, JobStatus::Queued);
    assert_eq!(job(&stack, picked_up.id).await.status, JobStatus::Processing);

    // Idempotent: nothing left to send.
    assert_eq!(stack.sweeper().sweep(cutoff()).await, Default::default());
}

#[tokio::test]
async fn a_job_whose_message_send_failed_is_sent_again_by_the_sweeper_and_ends_succeeded() {
    let stack = Stack::new().await;
    let lost = never_sent(&stack, chrono::Duration::minutes(10)).await;

    assert_eq!(stack.sweeper().sweep(cutoff()).await.sent, 1);
    let messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1);
    let response = sqs::handle(&stack.generator(LocalModel), sqs_event(messages)).await;
    assert!(response.batch_item_failures.is_empty());

    let done = job(&stack, lost.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.media_ids.len(), 1);
    assert_eq!(webhooks_queued(&stack).await, 1, "its webhook is queued");
}

#[tokio::test]
async fn a_message_sent_twice_runs_the_job_once() {
    let stack = Stack::new().await;
    // Sent by submit, whose mark could not be removed, then again by the sweeper.
    let lost = never_sent(&stack, chrono::Duration::minutes(10)).await;
    stack.queue().enqueue(lost.id).await.unwrap();
    assert_eq!(stack.sweeper().sweep(cutoff()).await.sent, 1);
    let mut messages = stack.receive(30).await;
    messages.extend(stack.receive(30).await);
    assert_eq!(messages.len(), 2);

    // One after the other (in one batch, the second would find the first's lease and come back).
    for message in messages {
        let response = sqs::handle(&stack.generator(LocalModel), sqs_event(vec![message])).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let done = job(&stack, lost.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(webhooks_queued(&stack).await, 1, "one webhook");
}

#[tokio::test]
async fn an_unsent_job_whose_message_cannot_be_sent_or_past_its_retention_is_failed() {
    let stack = Stack::new().await;
    let lost = never_sent(&stack, chrono::Duration::minutes(10)).await;
    let missing_queue = format!("{}-missing", stack.provisioned.queue_url);
    let report = stack
        .sweeper_sending_to(&missing_queue, LocalModel)
        .sweep(cutoff())
        .await;
    assert_eq!((report.sent, report.failed, report.errors), (0, 1, 0), "{report:?}");
    let failed = job(&stack, lost.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "enqueue_failed");
    assert!(!failed.unsent);
    assert_eq!(webhooks_queued(&stack).await, 1, "its webhook is queued");

    // Made two days ago, one more than the stack's retention; kept from DynamoDB's TTL.
    let body = json!({"prompt": "expired"});
    let mut expired = Job::new(
        Owner::parse(OWNER).unwrap(),
        GenerateRequest::parse(&body, &stack.policy()).unwrap(),
        Utc::now() - chrono::Duration::days(2),
        Duration::from_secs(86_400),
    );
    expired.ttl = Utc::now().timestamp() + 86_400;
    stack.store().create(&expired, None).await.unwrap();
    let report = stack.sweeper().sweep(cutoff()).await;
    assert_eq!((report.sent, report.failed), (0, 1), "{report:?}");
    assert_eq!(job(&stack, expired.id).await.status, JobStatus::Failed);
    assert!(stack.receive(0).await.is_empty(), "no message for it");
}

/// Jobs written before the unsent index was sharded carry its one partition, `UNSENT`: the
/// sweeper still finds them.
#[tokio::test]
async fn a_job_marked_in_the_unsharded_partition_is_found() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = Stack::new().await;
    let old = never_sent(&stack, chrono::Duration::minutes(10)).await;
    mediagen::adapters::aws::dynamodb(&stack.sdk)
        .update_item()
        .table_name(&stack.resources.table)
        .key("pk", AttributeValue::S(format!("JOB#{}", old.id)))
        .update_expression("SET gsi2pk = :unsent")
        .expression_attribute_values(":unsent", AttributeValue::S("UNSENT".into()))
        .send()
        .await
        .unwrap();
    let found = stack.store().unsent(cutoff(), 10).await.unwrap();
    assert_eq!(found.iter().map(|job| job.id).collect::<Vec<_>>(), [old.id]);
    assert_eq!(stack.sweeper().sweep(cutoff()).await.sent, 1);
}

#[tokio::test]
async fn the_unsent_jobs_of_every_shard_come_oldest_first_up_to_the_limit() {
    let stack = Stack::new().await;
    let mut made = Vec::new();
    for minutes in (10..40).rev() {
        made.push(never_sent(&stack, chrono::Duration::minutes(minutes)).await.id);
    }
    let found = stack.store().unsent(cutoff(), 20).await.unwrap();
    assert_eq!(found.iter().map(|job| job.id).collect::<Vec<_>>(), made[..20]);
    assert!(found.windows(2).all(|pair| pair[0].created_at <= pair[1].created_at));
}

#[tokio::test]
async fn a_submitted_job_is_not_left_unsent() {
    let stack = Stack::new().await;
    let response = mediagen::entrypoints::http::submit::handle(
        &stack.submit_api(),
        crate::helpers::post_generate(r#"{"prompt":"a"}"#),
    )
    .await;
    assert_eq!(response.status(), 202);
    let id = JobId::parse(crate::helpers::json_of(&response)["job_id"].as_str().unwrap()).unwrap();
    assert!(!job(&stack, id).await.unsent);
    assert!(
        stack
            .store()
            .unsent(Utc::now() + chrono::Duration::minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The client whose submit crashed before the send retries with the same `Idempotency-Key`: the
/// retry sends the message the first submit never did, and the job runs.
#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_sends_the_message_never_sent() {
    use mediagen::domain::idempotency::{IdempotencyKey, request_fingerprint};
    let stack = Stack::new().await;
    let body = json!({"prompt": "retried"});
    let request = GenerateRequest::parse(&body, &stack.policy()).unwrap();
    let first = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        Utc::now() - chrono::Duration::seconds(30),
        Duration::from_secs(86_400),
    );
    let key = IdempotencyKey::parse(b"order-7").unwrap();
    let fingerprint = request_fingerprint(&body);
    let claim = mediagen::ports::IdempotencyClaim {
        key: &key,
        fingerprint: &fingerprint,
        expires_at: first.created_at.timestamp() + 86_400,
    };
    stack.store().create(&first, Some(claim)).await.unwrap();

    let mut retry = crate::helpers::post_generate(body.to_string());
    retry
        .headers_mut()
        .insert("idempotency-key", "order-7".parse().unwrap());
    let response = mediagen::entrypoints::http::submit::handle(&stack.submit_api(), retry).await;
    assert_eq!(response.status(), 200, "{}", crate::helpers::json_of(&response));
    assert_eq!(crate::helpers::json_of(&response)["job_id"], first.id.to_string());
    let messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1, "the retry sent the job's message");
    assert!(!job(&stack, first.id).await.unsent);
}
