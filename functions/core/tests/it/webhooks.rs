//! Webhooks (docs/design.md, "Webhooks"): final jobs queue a delivery, and `deliver` POSTs it,
//! signed with the owner's key, to a receiver on loopback, through its SQS entrypoint and
//! against the real store and queues. Signatures are checked by another implementation: Python's
//! `hmac`.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{
    KEY, OTHER_KEY, OTHER_OWNER, OWNER, Stack, WEBHOOK_SECRET, json_of, post_generate, request, request_as,
    signing_keys, sqs_event,
};
use aws_lambda_events::event::sqs::SqsMessage;
use chrono::Utc;
use lambda_http::RequestExt;
use lambda_http::http::Method;
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::adapters::sqs::SqsJobQueue;
use mediagen::domain::generation::GenerateRequest;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::{Job, JobStatus};
use mediagen::domain::keys::{ApiKey, Owner};
use mediagen::domain::retry::Budget;
use mediagen::entrypoints::{http, sqs};
use mediagen::ports::{GeneratedImage, ImageModel, JobMessage, JobStore, ModelError, RunLog, WebhookQueue};
use mediagen::services::keys::KeyAdmin;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A receiver on loopback answering every POST with `status`.
async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

/// Submits through the handler and answers the job id.
async fn submit(stack: &Stack, body: Value) -> JobId {
    let response = http::submit::handle(&stack.submit_api(), post_generate(body.to_string())).await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    JobId::parse(json_of(&response)["job_id"].as_str().unwrap()).unwrap()
}

/// Runs what the jobs queue holds through `generate`.
async fn run_jobs<I: ImageModel>(stack: &Stack, model: I) {
    let records = stack.receive(30).await;
    assert!(!records.is_empty(), "no job message");
    sqs::handle(&stack.generator(model), sqs_event(records)).await;
}

async fn job(stack: &Stack, id: JobId) -> Job {
    stack.store().job(id).await.unwrap().unwrap()
}

fn job_id_of(record: &SqsMessage) -> JobId {
    let message: JobMessage = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
    JobId::parse(&message.job_id).unwrap()
}

/// Checks a delivery the way a receiver would, with Python's `hmac`: derives the owner's key
/// from the master secret, signs `{id}.{timestamp}.{body}` and compares. Answers what it printed.
fn python_verifies(owner: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    const VERIFY: &str = r#"
import base64, hashlib, hmac, os, sys
master = base64.b64decode(os.environ["MASTER"].removeprefix("whsec_"))
key = hmac.new(master, b"mediagen-webhook-key:" + os.environ["OWNER"].encode(), hashlib.sha256).digest()
body = sys.stdin.buffer.read()
signed = (os.environ["ID"] + "." + os.environ["TIMESTAMP"] + ".").encode() + body
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
given = [s.split(",", 1)[1] for s in os.environ["SIGNATURE"].split() if s.startswith("v1,")]
ok = any(hmac.compare_digest(expected, s) for s in given)
print(("ok " if ok else "bad ") + "whsec_" + base64.b64encode(key).decode())
"#;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    let mut python = Command::new("python3")
        .arg("-c")
        .arg(VERIFY)
        .env("MASTER", WEBHOOK_SECRET)
        .env("OWNER", owner)
        .env("ID", header("webhook-id"))
        .env("TIMESTAMP", header("webhook-timestamp"))
        .env("SIGNATURE", header("webhook-signature"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(body).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_succeeded_job_is_posted_once_signed_with_its_owners_key() {
    let stack = Stack::new().await;
    let server = receiver(204).await;
    let webhook_url = format!("{}/hooks/mediagen?token=t0k", server.uri());
    // Submitted through API Gateway's stage `prod` at api.example.com, over HTTPS.
    let body = json!({"prompt": "a heron", "width": 256, "height": 256, "webhook_url": webhook_url});
    let mut submitted = post_generate(body.to_string());
    submitted
        .headers_mut()
        .insert("host", "api.example.com".parse().unwrap());
    submitted
        .headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    *submitted.uri_mut() = "/prod/media/generate".parse().unwrap();
    let submitted = submitted.with_raw_http_path("/media/generate");
    let response = http::submit::handle(&stack.submit_api(), submitted).await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    let job_id = JobId::parse(json_of(&response)["job_id"].as_str().unwrap()).unwrap();
    run_jobs(&stack, LocalModel).await;
    let done = job(&stack, job_id).await;
    assert_eq!(done.status, JobStatus::Succeeded);

    let deliveries = stack.receive_webhooks(30).await;
    assert_eq!(deliveries.len(), 1, "one delivery per final job");
    assert_eq!(job_id_of(&deliveries[0]), job_id);
    let answer = sqs::deliver(
        &stack.deliverer(true),
        &crate::helpers::file_links(),
        sqs_event(deliveries),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!(post.url.path(), "/hooks/mediagen");
    assert_eq!(post.url.query(), Some("token=t0k"));
    let header = |name: &str| post.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("webhook-id"), format!("msg_{job_id}_completed"));
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert!((Utc::now().timestamp() - timestamp).abs() < 60, "{timestamp}");
    assert!(header("webhook-signature").starts_with("v1,"));

    // The body is the job as GET /media/jobs/{job_id} shows it, and the event, its links
    // absolute: at the address, and in the stage, the job was submitted to. Without the read's
    // `links` (where to follow the job, signed for a while), which a final job's record does not
    // need.
    let mut body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["event"], "completed");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["media"].as_array().map(Vec::len), Some(1));
    body.as_object_mut().unwrap().remove("event");
    let mut shown = json_of(
        &http::status::handle(
            &stack.status_api(),
            request(Method::GET, &format!("/media/jobs/{job_id}"), None, ""),
        )
        .await,
    );
    assert!(shown.as_object_mut().unwrap().remove("links").is_some());
    let relative = shown["media"][0]["content_url"].as_str().unwrap().to_owned();
    shown["media"][0]["content_url"] = json!(format!("https://api.example.com/prod{relative}"));
    assert_eq!(body, shown);

    let headers: Vec<(&str, &str)> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(|name| (name, header(name)))
        .collect();
    let verdict = python_verifies(OWNER, &headers, &post.body);
    let owner_secret = signing_keys().signing_secret(&Owner::parse(OWNER).unwrap(), 0);
    assert_eq!(verdict, format!("ok {}", owner_secret.expose()));
    // Another owner's key does not verify it: one owner cannot forge another's deliveries.
    assert!(python_verifies("someone-else", &headers, &post.body).starts_with("bad "));

    // Delivery never changes the job.
    assert_eq!(job(&stack, job_id).await, done);
}

#[tokio::test]
async fn a_receiver_that_fails_gets_the_delivery_again_later() {
    let stack = Stack::new().await;
    let server = receiver(500).await;
    let job_id = submit(
        &stack,
        json!({"prompt": "a heron", "webhook_url": format!("{}/hook", server.uri())}),
    )
    .await;
    let cancel = format!("/media/jobs/{job_id}/cancel");
    let response = http::submit::handle(&stack.submit_api(), request(Method::POST, &cancel, None, "")).await;
    assert_eq!(json_of(&response)["status"], "canceled");
    let canceled = job(&stack, job_id).await;

    // Received with no visibility timeout: only the delivery's own retry delay hides it now.
    let deliveries = stack.receive_webhooks(0).await;
    assert_eq!(deliveries.len(), 1);
    let message_id = deliveries[0].message_id.clone().unwrap();
    let answer = sqs::deliver(
        &stack.deliverer(true),
        &crate::helpers::file_links(),
        sqs_event(deliveries),
    )
    .await;
    let failed: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [message_id]);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert!(
        stack.receive_webhooks(0).await.is_empty(),
        "the delivery comes back only after its retry delay"
    );
    assert_eq!(job(&stack, job_id).await, canceled);
}

#[tokio::test]
async fn a_host_that_resolves_to_loopback_is_refused_and_never_retried() {
    let stack = Stack::new().await;
    // Anything that tried to deliver would connect here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The URL passed the checks at submit on a stack that allowed local URLs; the deliverer
    // does not allow them, and `localhost` resolves to loopback.
    let url = format!("https://localhost:{port}/hook");
    let request = GenerateRequest::parse(&json!({"prompt": "a heron", "webhook_url": url}), &stack.policy()).unwrap();
    let queued = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        Utc::now(),
        Duration::from_secs(86_400),
    );
    stack.store().create(&queued, None).await.unwrap();
    stack.store().cancel(queued.id, Utc::now()).await.unwrap();
    let canceled = job(&stack, queued.id).await;
    stack.webhooks().enqueue(queued.id).await.unwrap();

    let deliveries = stack.receive_webhooks(0).await;
    assert_eq!(deliveries.len(), 1);
    let answer = sqs::deliver(
        &stack.deliverer(false),
        &crate::helpers::file_links(),
        sqs_event(deliveries),
    )
    .await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "a refusal is acknowledged: {answer:?}"
    );
    let connected = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(connected.is_err(), "nothing may reach the refused host");
    assert_eq!(job(&stack, queued.id).await, canceled);
}

/// A model that refuses every input.
struct RefusingModel;

impl ImageModel for RefusingModel {
    type Output = ();

    async fn generate<L: RunLog>(&self, _: &GenerateRequest, _: &Budget, _: &L) -> Result<Vec<()>, ModelError> {
        Err(ModelError::Permanent {
            code: "model_rejected".into(),
            message: "no herons".into(),
        })
    }

    async fn fetch(&self, _: &GenerateRequest, _: &(), _: &Budget) -> Result<GeneratedImage, ModelError> {
        unreachable!("generate never succeeds")
    }
}

#[tokio::test]
async fn failed_jobs_queue_a_delivery_and_jobs_without_a_webhook_url_do_not() {
    let stack = Stack::new().await;
    let hook = "http://127.0.0.1:9/hook";
    let failed = submit(&stack, json!({"prompt": "a heron", "webhook_url": hook})).await;
    let quiet = submit(&stack, json!({"prompt": "a heron"})).await;
    run_jobs(&stack, RefusingModel).await;
    assert_eq!(job(&stack, failed).await.status, JobStatus::Failed);
    assert_eq!(job(&stack, quiet).await.status, JobStatus::Failed);

    // A job that could not be queued fails at submit, and its webhook is queued all the same.
    let unreachable = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.sdk)
            .endpoint_url("http://127.0.0.1:1")
            .build(),
    );
    let service = stack.submit_api_with_queue(SqsJobQueue::new(unreachable, &stack.provisioned.queue_url));
    let response = http::submit::handle(
        &service,
        post_generate(json!({"prompt": "a", "webhook_url": hook}).to_string()),
    )
    .await;
    assert_eq!(response.status(), 503);

    let queued: HashSet<JobId> = stack.receive_webhooks(30).await.iter().map(job_id_of).collect();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert!(queued.contains(&failed) && !queued.contains(&quiet));
    let never_queued = queued.iter().find(|id| **id != failed).unwrap();
    let job = job(&stack, *never_queued).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().code, "enqueue_failed");
}

#[tokio::test]
async fn a_predictions_webhook_links_to_where_it_was_created() {
    let stack = Stack::new().await;
    let server = receiver(204).await;
    let body = json!({"input": {"prompt": "a heron", "width": 256, "height": 256}, "webhook": format!("{}/hook", server.uri())});
    let mut create = request(
        Method::POST,
        "/v1/models/mediagen/local/predictions",
        Some("application/json"),
        body.to_string(),
    );
    create.headers_mut().insert("host", "api.example.com".parse().unwrap());
    create
        .headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let created = http::submit::handle(&stack.submit_api(), create).await;
    assert_eq!(created.status(), 201, "{}", json_of(&created));
    let id = json_of(&created)["id"].as_str().unwrap().to_owned();
    run_jobs(&stack, LocalModel).await;
    let deliveries = stack.receive_webhooks(30).await;
    sqs::deliver(
        &stack.deliverer(true),
        &crate::helpers::file_links(),
        sqs_event(deliveries),
    )
    .await;

    let received = server.received_requests().await.unwrap();
    let prediction: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        prediction["urls"]["get"],
        format!("https://api.example.com/v1/predictions/{id}")
    );
    let output = prediction["output"][0].as_str().unwrap();
    assert!(output.starts_with("https://api.example.com/v1/files/"), "{output}");
}

/// A job canceled while queued is announced by the cancel; its message, which comes to
/// `generate` afterwards, finds it final and queues no second delivery.
#[tokio::test]
async fn a_job_canceled_while_queued_is_announced_once_though_its_message_comes_later() {
    let stack = Stack::new().await;
    let job_id = submit(
        &stack,
        json!({"prompt": "a heron", "webhook_url": "http://127.0.0.1:9/hook"}),
    )
    .await;
    let cancel = format!("/media/jobs/{job_id}/cancel");
    let response = http::submit::handle(&stack.submit_api(), request(Method::POST, &cancel, None, "")).await;
    assert_eq!(json_of(&response)["status"], "canceled");

    run_jobs(&stack, LocalModel).await;
    let queued: Vec<JobId> = stack.receive_webhooks(30).await.iter().map(job_id_of).collect();
    assert_eq!(queued, [job_id]);
}

/// What a receiver holding `secret` makes of a delivery, checked with Python's `hmac`: "ok" if
/// any of the header's signatures verifies, else "bad".
fn python_verifies_with(secret: &str, headers: &[(String, String)], body: &[u8]) -> String {
    const VERIFY: &str = r#"
import base64, hashlib, hmac, os, sys
key = base64.b64decode(os.environ["SECRET"].removeprefix("whsec_"))
body = sys.stdin.buffer.read()
signed = (os.environ["ID"] + "." + os.environ["TIMESTAMP"] + ".").encode() + body
expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
given = [s.split(",", 1)[1] for s in os.environ["SIGNATURE"].split(" ") if s.startswith("v1,")]
print("ok" if any(hmac.compare_digest(expected, s) for s in given) else "bad")
"#;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    };
    let mut python = Command::new("python3")
        .arg("-c")
        .arg(VERIFY)
        .env("SECRET", secret)
        .env("ID", header("webhook-id"))
        .env("TIMESTAMP", header("webhook-timestamp"))
        .env("SIGNATURE", header("webhook-signature"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(body).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The secret `GET /v1/webhooks/default/secret` shows the holder of `key`.
async fn shown_secret(stack: &Stack, key: &str) -> String {
    let response = http::status::handle(
        &stack.status_api(),
        request_as(key, Method::GET, "/v1/webhooks/default/secret", None, ""),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    json_of(&response)["key"].as_str().unwrap().to_owned()
}

/// `POST /media/webhooks/secret/rotate` with `query`, as the holder of `KEY`.
async fn rotate(stack: &Stack, query: &[(&str, &str)]) -> Value {
    let params: std::collections::HashMap<String, String> =
        query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let post = request(Method::POST, "/media/webhooks/secret/rotate", None, "").with_query_string_parameters(params);
    let response = http::status::handle(&stack.status_api(), post).await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    json_of(&response)
}

/// A final job of `owner`'s with a webhook to `server`, delivered by `deliver`: its headers and
/// body as the receiver got them.
async fn deliver_one(stack: &Stack, owner: &str, server: &MockServer) -> (Vec<(String, String)>, Vec<u8>) {
    let request = GenerateRequest::parse(
        &json!({"prompt": "a heron", "webhook_url": format!("{}/hook", server.uri())}),
        &stack.policy(),
    )
    .unwrap();
    let queued = Job::new(
        Owner::parse(owner).unwrap(),
        request,
        Utc::now(),
        Duration::from_secs(86_400),
    );
    stack.store().create(&queued, None).await.unwrap();
    stack.store().cancel(queued.id, Utc::now()).await.unwrap();
    stack.webhooks().enqueue(queued.id).await.unwrap();
    let answer = sqs::deliver(
        &stack.deliverer(true),
        &crate::helpers::file_links(),
        sqs_event(stack.receive_webhooks(30).await),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let post = server.received_requests().await.unwrap().pop().expect("a delivery");
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    let headers = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(|name| {
            let value = post.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    (headers, post.body)
}

fn signatures(headers: &[(String, String)]) -> Vec<String> {
    let (_, value) = headers.iter().find(|(n, _)| n == "webhook-signature").unwrap();
    value.split(' ').map(str::to_owned).collect()
}

/// Each signature of the header alone, as a receiver holding one secret would be sent it.
fn each_signature(headers: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    signatures(headers)
        .into_iter()
        .map(|signature| {
            headers
                .iter()
                .map(|(n, v)| match n.as_str() {
                    "webhook-signature" => (n.clone(), signature.clone()),
                    _ => (n.clone(), v.clone()),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn during_a_rotations_grace_deliveries_verify_with_either_secret_and_after_it_with_the_new_only() {
    let stack = Stack::new().await;
    let server = receiver(204).await;
    let old = shown_secret(&stack, KEY).await;

    let rotated = rotate(&stack, &[]).await;
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let until = chrono::DateTime::parse_from_rfc3339(rotated["previous_key_valid_until"].as_str().unwrap()).unwrap();
    let grace = until.with_timezone(&Utc) - Utc::now();
    assert!((23..=24).contains(&grace.num_hours()), "{grace}");
    assert_eq!(
        shown_secret(&stack, KEY).await,
        new,
        "the route shows the current secret"
    );
    // Another owner's secret does not move.
    assert_eq!(
        shown_secret(&stack, OTHER_KEY).await,
        signing_keys()
            .signing_secret(&Owner::parse(OTHER_OWNER).unwrap(), 0)
            .expose()
    );

    // Two signatures, the new secret's first; a receiver holding either verifies the delivery,
    // and each signature verifies with one secret only.
    let (headers, body) = deliver_one(&stack, OWNER, &server).await;
    assert_eq!(signatures(&headers).len(), 2, "{headers:?}");
    assert_eq!(python_verifies_with(&old, &headers, &body), "ok");
    assert_eq!(python_verifies_with(&new, &headers, &body), "ok");
    let [first, second] = <[_; 2]>::try_from(each_signature(&headers)).unwrap();
    assert_eq!(
        [&new, &old].map(|secret| python_verifies_with(secret, &first, &body)),
        ["ok", "bad"]
    );
    assert_eq!(
        [&new, &old].map(|secret| python_verifies_with(secret, &second, &body)),
        ["bad", "ok"]
    );
    // Another owner's secret verifies neither.
    let theirs = shown_secret(&stack, OTHER_KEY).await;
    assert_eq!(python_verifies_with(&theirs, &headers, &body), "bad");

    // Rotated again with a grace of one second: once it is over, only the newest secret signs;
    // the one before it (and the first, whose grace the rotation ended) verify nothing.
    let newest = rotate(&stack, &[("grace_seconds", "1")]).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (headers, body) = deliver_one(&stack, OWNER, &server).await;
    assert_eq!(signatures(&headers).len(), 2, "{headers:?}");
    assert_eq!(python_verifies_with(&old, &headers, &body), "bad");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (headers, body) = deliver_one(&stack, OWNER, &server).await;
    assert_eq!(signatures(&headers).len(), 1, "{headers:?}");
    assert_eq!(python_verifies_with(&newest, &headers, &body), "ok");
    assert_eq!(python_verifies_with(&new, &headers, &body), "bad");
    assert_eq!(python_verifies_with(&old, &headers, &body), "bad");
}

#[tokio::test]
async fn a_rotation_asks_for_a_grace_the_api_allows() {
    let stack = Stack::new().await;
    let old = shown_secret(&stack, KEY).await;
    for query in [
        ("grace_seconds", "604801"),
        ("grace_seconds", "-1"),
        ("grace_seconds", "a day"),
        ("grace", "60"),
    ] {
        let params = std::collections::HashMap::from([(query.0.to_owned(), query.1.to_owned())]);
        let post =
            request(Method::POST, "/media/webhooks/secret/rotate", None, "").with_query_string_parameters(params);
        let response = http::status::handle(&stack.status_api(), post).await;
        let problem = crate::helpers::assert_problem(&response, 400);
        assert_eq!(problem["errors"][0]["field"], query.0, "{problem}");
    }
    assert_eq!(
        shown_secret(&stack, KEY).await,
        old,
        "a refused rotation changes nothing"
    );
    // No grace: the old secret stops at once.
    let rotated = rotate(&stack, &[("grace_seconds", "0")]).await;
    assert_eq!(rotated["previous_key_valid_until"], Value::Null);
    let server = receiver(204).await;
    let (headers, body) = deliver_one(&stack, OWNER, &server).await;
    assert_eq!(signatures(&headers).len(), 1);
    assert_eq!(python_verifies_with(&old, &headers, &body), "bad");
    assert_eq!(
        python_verifies_with(rotated["key"].as_str().unwrap(), &headers, &body),
        "ok"
    );
}

#[tokio::test]
async fn revoking_an_owners_last_key_revokes_their_webhook_secret() {
    let stack = Stack::new().await;
    let server = receiver(204).await;
    let admin = KeyAdmin::new(stack.store());
    let old = shown_secret(&stack, KEY).await;
    // In a rotation's grace, so that two secrets verify when the last key goes.
    rotate(&stack, &[]).await;
    let rotated = shown_secret(&stack, KEY).await;

    // One of two keys: the owner keeps the secret.
    let (second, _) = admin.create(Owner::parse(OWNER).unwrap(), None).await.unwrap();
    let revoked = admin.revoke(&second.prefix()).await.unwrap();
    assert!(revoked.secret_revoked.is_none());
    assert_eq!(shown_secret(&stack, KEY).await, rotated);

    // The last one: neither secret verifies anything sent after.
    let revoked = admin.revoke(&KEY[..12]).await.unwrap();
    assert!(revoked.secret_revoked.is_some());
    let (headers, body) = deliver_one(&stack, OWNER, &server).await;
    assert_eq!(signatures(&headers).len(), 1, "{headers:?}");
    assert_eq!(python_verifies_with(&old, &headers, &body), "bad");
    assert_eq!(python_verifies_with(&rotated, &headers, &body), "bad");

    // A key made later for the owner is shown the secret that signs now.
    let (later, _) = admin.create(Owner::parse(OWNER).unwrap(), None).await.unwrap();
    let fresh = shown_secret(&stack, later.expose()).await;
    assert!(fresh != old && fresh != rotated);
    assert_eq!(python_verifies_with(&fresh, &headers, &body), "ok");
    // The other owner's secret never moved.
    assert_eq!(
        shown_secret(&stack, OTHER_KEY).await,
        signing_keys()
            .signing_secret(&Owner::parse(OTHER_OWNER).unwrap(), 0)
            .expose()
    );
}

/// The secret is revoked before the key: a revoke stopped between the two leaves the key live
/// with a fresh secret, and run again it revokes the key.
#[tokio::test]
async fn a_revoke_stopped_after_the_secret_is_finished_by_running_it_again() {
    let stack = Stack::new().await;
    let admin = KeyAdmin::new(stack.store());
    let old = shown_secret(&stack, KEY).await;
    // The first step of a revoke of the owner's last key, alone, as a crash would leave it.
    mediagen::ports::SigningStore::next_generation(&stack.store(), &Owner::parse(OWNER).unwrap(), None)
        .await
        .unwrap();
    let between = shown_secret(&stack, KEY).await;
    assert_ne!(between, old, "the old secret is revoked already");
    let revoked = admin.revoke(&KEY[..12]).await.unwrap();
    assert!(revoked.record.revoked_at.is_some() && revoked.secret_revoked.is_some());
    let (later, _) = admin.create(Owner::parse(OWNER).unwrap(), None).await.unwrap();
    let fresh = shown_secret(&stack, later.expose()).await;
    assert!(fresh != old && fresh != between);
    // Registered again, the revoked key stays revoked.
    assert!(
        admin
            .create(Owner::parse(OWNER).unwrap(), Some(ApiKey::parse(KEY).unwrap()))
            .await
            .is_err()
    );
}
