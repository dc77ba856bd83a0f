//! `POST /media/generate` through the real handler, store and queue.

use crate::helpers::{Stack, assert_problem, header_of, json_of, post_generate, request, sqs_event};
use lambda_http::http::Method;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::adapters::sqs::SqsJobQueue;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::JobStatus;
use mediagen::entrypoints::{http, sqs};
use mediagen::ports::{Claim, JobQueue, JobStore, QueueError};
use serde_json::{Value, json};

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn a_valid_request_is_accepted_stored_and_queued() {
    let stack = Stack::new().await;
    let body = json!({"prompt": "a lighthouse", "width": 512, "height": 256, "seed": 42, "output_format": "webp"});
    let response = http::submit::handle(&stack.submit_api(), post_generate(body.to_string())).await;

    assert_eq!(response.status(), 202);
    let answer = json_of(&response);
    let job_id = JobId::parse(answer["job_id"].as_str().unwrap()).unwrap();
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["links"]["status"], format!("/media/status/{job_id}"));
    assert_eq!(answer["links"]["job"], format!("/media/jobs/{job_id}"));
    assert!(answer["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        header_of(&response, "location"),
        Some(format!("/media/status/{job_id}").as_str())
    );

    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(
        (job.request.width, job.request.height, job.request.seed),
        (512, 256, 42)
    );

    let messages = stack.receive(30).await;
    assert_eq!(messages.len(), 1);
    let message: Value = serde_json::from_str(messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(message, json!({"job_id": job_id.to_string()}));
}

/// Every bad-input row of docs/design.md, "HTTP contract": the right 4xx, a problem body naming the field.
#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field() {
    let stack = Stack::new().await;
    let service = stack.submit_api();
    let long = "x".repeat(2001);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "   "}), "prompt"),
        (json!({"prompt": long}), "prompt"),
        (json!({"prompt": 12}), "prompt"),
        (json!({"prompt": "a", "negative_prompt": long}), "negative_prompt"),
        (json!({"prompt": "a", "model": "dall-e-3"}), "model"),
        (json!({"prompt": "a", "width": 255}), "width"),
        (json!({"prompt": "a", "width": 1472}), "width"),
        (json!({"prompt": "a", "width": 500}), "width"),
        (json!({"prompt": "a", "width": "512"}), "width"),
        (json!({"prompt": "a", "height": 224}), "height"),
        (json!({"prompt": "a", "height": 1441}), "height"),
        (json!({"prompt": "a", "height": 512.5}), "height"),
        (json!({"prompt": "a", "num_outputs": 0}), "num_outputs"),
        (json!({"prompt": "a", "num_outputs": 5}), "num_outputs"),
        (json!({"prompt": "a", "seed": -1}), "seed"),
        (json!({"prompt": "a", "seed": 4_294_967_296u64}), "seed"),
        (json!({"prompt": "a", "output_format": "gif"}), "output_format"),
        (
            json!({"prompt": "a", "webhook_url": "http://example.com/hook"}),
            "webhook_url",
        ),
        (
            json!({"prompt": "a", "webhook_url": "https://10.1.2.3/hook"}),
            "webhook_url",
        ),
        (json!({"prompt": "a", "webhook_url": "not a url"}), "webhook_url"),
        (json!({"prompt": "a", "guidance": 7}), "guidance"),
        (json!(["prompt"]), "body"),
    ];
    for (body, field) in cases {
        let response = http::submit::handle(&service, post_generate(body.to_string())).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_problem(&response, 422);
        let problem = json_of(&response);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}");
        assert!(problem["detail"].as_str().unwrap().contains(field), "{problem}");
    }
    assert!(stack.receive(0).await.is_empty(), "no rejected request may queue a job");
}

#[tokio::test]
async fn transport_level_mistakes_get_their_own_status() {
    let stack = Stack::new().await;
    let service = stack.submit_api();
    let cases = [
        (Method::POST, Some("text/plain"), "prompt=a".to_owned(), 415),
        (Method::POST, None, r#"{"prompt":"a"}"#.to_owned(), 415),
        (Method::POST, JSON, "{\"prompt\": ".to_owned(), 400),
        (Method::POST, JSON, String::new(), 400),
        (
            Method::POST,
            JSON,
            json!({"prompt": "a".repeat(70_000)}).to_string(),
            413,
        ),
        (Method::GET, None, String::new(), 405),
        (Method::PUT, JSON, r#"{"prompt":"a"}"#.to_owned(), 405),
    ];
    for (method, content_type, body, status) in cases {
        let response =
            http::submit::handle(&service, request(method.clone(), "/media/generate", content_type, body)).await;
        assert_eq!(response.status(), status, "{method} {content_type:?}");
        assert_problem(&response, status);
    }
    let response = http::submit::handle(&service, request(Method::GET, "/media/generate", None, "")).await;
    assert_eq!(header_of(&response, "allow"), Some("POST"));
    // A charset parameter is still JSON.
    let response = http::submit::handle(
        &service,
        request(
            Method::POST,
            "/media/generate",
            Some("application/json; charset=utf-8"),
            r#"{"prompt":"a"}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn an_unreachable_queue_gives_503_and_a_failed_job() {
    let stack = Stack::new().await;
    // Nothing listens on port 1: every send fails to connect.
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.sdk)
            .endpoint_url("http://127.0.0.1:1")
            .build(),
    );
    let service = stack.submit_api_with_queue(SqsJobQueue::new(sqs, &stack.provisioned.queue_url));
    let response = http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)).await;

    assert_eq!(response.status(), 503);
    assert_problem(&response, 503);
    assert!(header_of(&response, "retry-after").is_some());
    let detail = json_of(&response)["detail"].as_str().unwrap().to_owned();
    let job_id = detail
        .split_whitespace()
        .nth(1)
        .and_then(|id| JobId::parse(id).ok())
        .unwrap();
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "enqueue_failed");
}

/// A queue that takes the connection and never answers: without the SDK's timeouts the send
/// would wait until the function timed out, and the job would stay `queued` with no message.
#[tokio::test]
async fn a_queue_that_never_answers_gives_503_in_time_and_a_failed_job() {
    let stack = Stack::new().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.sdk)
            .endpoint_url(format!("http://{address}"))
            .build(),
    );
    let service = stack.submit_api_with_queue(SqsJobQueue::new(sqs, &stack.provisioned.queue_url));
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)),
    )
    .await
    .expect("submit must answer well inside its 25 s function timeout");
    held.abort();

    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let detail = json_of(&response)["detail"].as_str().unwrap().to_owned();
    let job_id = detail
        .split_whitespace()
        .nth(1)
        .and_then(|id| JobId::parse(id).ok())
        .unwrap();
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
}

#[tokio::test]
async fn a_missing_queue_gives_503_and_a_failed_job() {
    let stack = Stack::new().await;
    let missing = stack
        .provisioned
        .queue_url
        .replace(&stack.resources.queue, "no-such-queue");
    let service = stack.submit_api_with_queue(SqsJobQueue::new(mediagen::adapters::aws::sqs(&stack.sdk), missing));
    let response = http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)).await;
    assert_eq!(response.status(), 503);
}

/// Sends the message for real, lets a worker claim the job, then reports a failure: a send
/// whose answer was lost.
#[derive(Clone)]
struct LostAnswer {
    queue: SqsJobQueue,
    store: mediagen::adapters::dynamodb::DynamoJobStore,
}

impl JobQueue for LostAnswer {
    async fn enqueue(&self, id: JobId) -> Result<(), QueueError> {
        self.queue.enqueue(id).await?;
        let now = chrono::Utc::now();
        let claim = self.store.claim(id, now, now + chrono::Duration::minutes(1)).await;
        assert!(matches!(claim, Ok(Claim::Claimed(_))), "{claim:?}");
        Err(QueueError::Unavailable("connection reset before the answer".into()))
    }

    async fn enqueue_after(&self, id: JobId, delay: std::time::Duration) -> Result<(), QueueError> {
        self.queue.enqueue_after(id, delay).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        self.queue.retry_later(receipt_handle, delay).await
    }
}

#[tokio::test]
async fn a_lost_send_answer_for_a_job_already_running_answers_202() {
    let stack = Stack::new().await;
    let service = stack.submit_api_with_queue(LostAnswer {
        queue: stack.queue(),
        store: stack.store(),
    });
    let response = http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)).await;

    let answer = json_of(&response);
    assert_eq!(response.status(), 202, "{answer}");
    let job_id = JobId::parse(answer["job_id"].as_str().unwrap()).unwrap();
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Processing,
        "the running job is left to its worker"
    );
    assert_eq!(stack.receive(0).await.len(), 1, "its message went out");
}

/// A queue that fails its first send and works after.
#[derive(Clone)]
struct DownOnce {
    queue: SqsJobQueue,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl JobQueue for DownOnce {
    async fn enqueue(&self, id: JobId) -> Result<(), QueueError> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Unavailable("the queue was down".into()));
        }
        self.queue.enqueue(id).await
    }

    async fn enqueue_after(&self, id: JobId, delay: std::time::Duration) -> Result<(), QueueError> {
        self.queue.enqueue_after(id, delay).await
    }

    async fn retry_later(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        self.queue.retry_later(receipt_handle, delay).await
    }
}

/// The caller did the right thing, retrying with the same Idempotency-Key after a 503: the retry
/// must queue a job that runs, not answer the failed one for 24 hours.
#[tokio::test]
async fn a_replay_after_enqueue_failed_queues_a_job_that_succeeds() {
    let stack = Stack::new().await;
    let service = stack.submit_api_with_queue(DownOnce {
        queue: stack.queue(),
        failed: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    });
    let submit = || {
        let mut request = post_generate(r#"{"prompt":"a","width":256,"height":256}"#);
        request
            .headers_mut()
            .insert("idempotency-key", "retry-me-1".parse().unwrap());
        http::submit::handle(&service, request)
    };
    assert_eq!(submit().await.status(), 503);
    let retried = submit().await;
    let answer = json_of(&retried);
    assert_eq!(retried.status(), 202, "{answer}");
    let job_id = JobId::parse(answer["job_id"].as_str().unwrap()).unwrap();
    sqs::handle(&stack.generator(LocalModel), sqs_event(stack.receive(10).await)).await;
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    // From now on the key answers this job.
    let again = submit().await;
    assert_eq!(again.status(), 200);
    assert_eq!(json_of(&again)["job_id"], job_id.to_string());
}
