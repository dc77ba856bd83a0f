//! Real callers (docs/design.md, "API keys and owners", "Idempotency", "Listing", "Job states"):
//! keys, owners, idempotent submits, cancel, listing and `Prefer: wait`, through the handlers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::helpers::{
    KEY, OTHER_KEY, OWNER, Stack, assert_problem, header_of, json_of, post_generate, request, request_as,
    request_with_query, sqs_event,
};
use chrono::Utc;
use futures::StreamExt;
use lambda_http::Request;
use lambda_http::http::{Method, header};
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::domain::generation::GenerateRequest;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::{Job, JobStatus};
use mediagen::domain::keys::{ApiKey, Owner};
use mediagen::domain::listing::MAX_READ;
use mediagen::domain::retry::Budget;
use mediagen::entrypoints::{http, sqs};
use mediagen::ports::{GeneratedImage, ImageModel, JobStore, ModelError, RunLog};
use mediagen::services::keys::{KeyAdmin, LimitChanges};
use serde_json::{Value, json};

const JSON: Option<&str> = Some("application/json");

/// Submits through the handler and answers the job id.
async fn submit(stack: &Stack, body: Value) -> JobId {
    let response = http::submit::handle(&stack.submit_api(), post_generate(body.to_string())).await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    JobId::parse(json_of(&response)["job_id"].as_str().unwrap()).unwrap()
}

/// Runs `generate` on whatever the queue holds.
async fn run_queue(stack: &Stack) {
    let generator = stack.generator(LocalModel);
    sqs::handle(&generator, sqs_event(stack.receive(30).await)).await;
}

fn with_header(mut request: Request, name: &'static str, value: &str) -> Request {
    request.headers_mut().insert(name, value.parse().unwrap());
    request
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_are_401_without_the_key() {
    let stack = Stack::new().await;
    let submit = stack.submit_api();
    let unknown = "mgk_unknownunknownunknownunknown1234";
    let mut anonymous = post_generate(r#"{"prompt":"a"}"#);
    anonymous.headers_mut().remove(header::AUTHORIZATION);
    let cases: Vec<(Request, Option<&str>)> = vec![
        (anonymous, None),
        (
            with_header(
                post_generate(r#"{"prompt":"a"}"#),
                "authorization",
                "Basic dXNlcjpwdw==",
            ),
            None,
        ),
        (
            request_as("mgk_short", Method::POST, "/media/generate", JSON, r#"{"prompt":"a"}"#),
            Some("mgk_short"),
        ),
        (
            request_as(unknown, Method::POST, "/media/generate", JSON, r#"{"prompt":"a"}"#),
            Some(unknown),
        ),
    ];
    for (request, secret) in cases {
        let response = http::submit::handle(&submit, request).await;
        let problem = assert_problem(&response, 401);
        assert_eq!(header_of(&response, "www-authenticate"), Some("Bearer"));
        assert_eq!(problem["type"], "urn:mediagen:problem:unauthorized");
        if let Some(secret) = secret {
            assert!(!problem.to_string().contains(secret), "{problem}");
        }
    }
    assert!(stack.receive(0).await.is_empty(), "no refused request may queue a job");

    // A revoked key stops working (a fresh instance here; a warm one within its cache time).
    let admin = KeyAdmin::new(stack.store());
    admin.revoke(&KEY[..12]).await.unwrap();
    let path = format!("/media/status/{}", JobId::new());
    let response = http::status::handle(&stack.status_api(), request(Method::GET, &path, None, "")).await;
    assert_problem(&response, 401);
}

#[tokio::test]
async fn registering_a_key_again_never_undoes_a_revocation_or_moves_it_to_another_owner() {
    let stack = Stack::new().await;
    let admin = KeyAdmin::new(stack.store());
    let key = || Some(ApiKey::parse(KEY).unwrap());
    let owner = |name: &str| Owner::parse(name).unwrap();
    // The same key for the same owner again, as a local stack does at every start: nothing changes.
    admin.create(owner(OWNER), key()).await.unwrap();
    // Not to another owner.
    assert!(admin.create(owner(crate::helpers::OTHER_OWNER), key()).await.is_err());
    admin.revoke(&KEY[..12]).await.unwrap();
    // Not back to life.
    assert!(admin.create(owner(OWNER), key()).await.is_err());
    let path = format!("/media/status/{}", JobId::new());
    let response = http::status::handle(&stack.status_api(), request(Method::GET, &path, None, "")).await;
    assert_problem(&response, 401);
    let records = admin.list().await.unwrap();
    let record = records.iter().find(|r| KEY.starts_with(&r.prefix)).unwrap();
    assert_eq!((record.owner.as_str(), record.revoked_at.is_some()), (OWNER, true));
}

#[tokio::test]
async fn another_owners_job_media_cancel_and_listing_entry_are_not_found() {
    let stack = Stack::new().await;
    let job_id = submit(&stack, json!({"prompt": "mine", "width": 256, "height": 256})).await;
    run_queue(&stack).await;
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.owner.as_str(), OWNER);
    let media_id = job.media_ids[0];

    let status = stack.status_api();
    for path in [format!("/media/status/{job_id}"), format!("/media/jobs/{job_id}")] {
        let mine = http::status::handle(&status, request(Method::GET, &path, None, "")).await;
        assert_eq!(mine.status(), 200, "{path}");
        let theirs = http::status::handle(&status, request_as(OTHER_KEY, Method::GET, &path, None, "")).await;
        let unknown = http::status::handle(
            &status,
            request_as(
                OTHER_KEY,
                Method::GET,
                &path.replace(&job_id.to_string(), &JobId::new().to_string()),
                None,
                "",
            ),
        )
        .await;
        assert_eq!(assert_problem(&theirs, 404), assert_problem(&unknown, 404), "{path}");
    }
    let content = stack.content_api(Duration::from_secs(60));
    let path = format!("/media/content/{media_id}");
    assert_eq!(
        http::content::handle(&content, request(Method::GET, &path, None, ""))
            .await
            .status(),
        302
    );
    let theirs = http::content::handle(&content, request_as(OTHER_KEY, Method::GET, &path, None, "")).await;
    assert_problem(&theirs, 404);

    let cancel = format!("/media/jobs/{job_id}/cancel");
    let theirs = http::submit::handle(
        &stack.submit_api(),
        request_as(OTHER_KEY, Method::POST, &cancel, None, ""),
    )
    .await;
    assert_problem(&theirs, 404);

    let list = http::status::handle(&status, request_as(OTHER_KEY, Method::GET, "/media/jobs", None, "")).await;
    assert_eq!(list.status(), 200);
    assert_eq!(json_of(&list)["jobs"], json!([]));
    let mine = http::status::handle(&status, request(Method::GET, "/media/jobs", None, "")).await;
    assert_eq!(json_of(&mine)["jobs"][0]["job_id"], job_id.to_string());
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_replays_the_first_job() {
    let stack = Stack::new().await;
    let api = stack.submit_api();
    let body = json!({"prompt": "only once", "seed": 5});
    let send = |body: String| with_header(post_generate(body), "idempotency-key", "order-42");

    let first = http::submit::handle(&api, send(body.to_string())).await;
    assert_eq!(first.status(), 202);
    assert_eq!(header_of(&first, "idempotent-replayed"), None);
    // The same body, formatted otherwise.
    let again = http::submit::handle(&api, send(r#"{ "seed": 5, "prompt": "only once" }"#.into())).await;
    assert_eq!(again.status(), 200);
    assert_eq!(header_of(&again, "idempotent-replayed"), Some("true"));
    assert_eq!(json_of(&again)["job_id"], json_of(&first)["job_id"]);

    let other = http::submit::handle(&api, send(json!({"prompt": "something else"}).to_string())).await;
    let problem = assert_problem(&other, 422);
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");

    // Keys are per owner: another owner's same key makes their own job.
    let mut theirs = request_as(OTHER_KEY, Method::POST, "/media/generate", JSON, body.to_string());
    theirs
        .headers_mut()
        .insert("idempotency-key", "order-42".parse().unwrap());
    let theirs = http::submit::handle(&api, theirs).await;
    assert_eq!(theirs.status(), 202);
    assert_ne!(json_of(&theirs)["job_id"], json_of(&first)["job_id"]);
    assert_eq!(stack.receive(0).await.len(), 2, "one message per job made");

    for bad in ["", "has space", &"x".repeat(256)] {
        let response = http::submit::handle(
            &api,
            with_header(post_generate(body.to_string()), "idempotency-key", bad),
        )
        .await;
        assert_problem(&response, 400);
    }
}

#[tokio::test]
async fn twenty_concurrent_submits_with_one_key_make_one_job() {
    let stack = Stack::new().await;
    let api = stack.submit_api();
    let body = json!({"prompt": "a race"}).to_string();
    let answers = futures::future::join_all((0..20).map(|_| {
        let request = with_header(post_generate(body.clone()), "idempotency-key", "race-1");
        http::submit::handle(&api, request)
    }))
    .await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|response| {
            assert!(matches!(response.status().as_u16(), 200 | 202), "{}", json_of(response));
            json_of(response)["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(answers.iter().filter(|r| r.status() == 202).count(), 1);
    assert_eq!(stack.receive(0).await.len(), 1);
}

/// The first submit wrote the job and its key, then ended (a crash, a timeout) before sending its
/// message: a retry with the key sends it, once the first submit can no longer be running.
#[tokio::test]
async fn a_replay_of_a_job_its_submit_never_sent_sends_it() {
    let stack = Stack::new().await;
    let api = stack.submit_api();
    let body = json!({"prompt": "left behind"});
    let request = GenerateRequest::parse(&body, &stack.policy()).unwrap();
    let fingerprint = mediagen::domain::idempotency::request_fingerprint(&body);
    for (age, sent) in [(5, false), (11, true)] {
        let name = format!("left-{age}");
        let key = mediagen::domain::idempotency::IdempotencyKey::parse(name.as_bytes()).unwrap();
        let job = Job::new(
            Owner::parse(OWNER).unwrap(),
            request.clone(),
            Utc::now() - chrono::Duration::seconds(age),
            Duration::from_secs(3600),
        );
        let claim = mediagen::ports::IdempotencyClaim {
            key: &key,
            fingerprint: &fingerprint,
            expires_at: Utc::now().timestamp() + 3600,
        };
        stack.store().create(&job, Some(claim)).await.unwrap();

        let answer = http::submit::handle(
            &api,
            with_header(post_generate(body.to_string()), "idempotency-key", &name),
        )
        .await;
        assert_eq!(answer.status(), 200, "{}", json_of(&answer));
        assert_eq!(json_of(&answer)["job_id"], job.id.to_string());
        // A younger job's own submit may still be sending it.
        assert_eq!(stack.receive(0).await.len(), usize::from(sent), "a job {age} s old");
        assert_eq!(stack.store().job(job.id).await.unwrap().unwrap().unsent, !sent);
    }
}

#[tokio::test]
async fn a_queued_job_is_canceled_and_its_message_is_dropped() {
    let stack = Stack::new().await;
    let job_id = submit(&stack, json!({"prompt": "never mind"})).await;
    let cancel = format!("/media/jobs/{job_id}/cancel");
    let response = http::submit::handle(&stack.submit_api(), request(Method::POST, &cancel, None, "")).await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    assert_eq!(json_of(&response)["status"], "canceled");

    let generator = stack.generator(LocalModel);
    let answer = sqs::handle(&generator, sqs_event(stack.receive(30).await)).await;
    assert!(answer.batch_item_failures.is_empty());
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Canceled, 0));

    let again = http::submit::handle(&stack.submit_api(), request(Method::POST, &cancel, None, "")).await;
    let problem = assert_problem(&again, 409);
    assert_eq!(problem["type"], "urn:mediagen:problem:already-final");
    let wrong = http::submit::handle(&stack.submit_api(), request(Method::GET, &cancel, None, "")).await;
    assert_problem(&wrong, 405);
}

/// The local model, slowed down so that a cancel can land while it runs.
struct SlowModel(Duration);

impl ImageModel for SlowModel {
    type Output = u32;

    async fn generate<L: RunLog>(
        &self,
        request: &GenerateRequest,
        budget: &Budget,
        log: &L,
    ) -> Result<Vec<u32>, ModelError> {
        tokio::time::sleep(self.0).await;
        LocalModel.generate(request, budget, log).await
    }

    async fn fetch(
        &self,
        request: &GenerateRequest,
        output: &u32,
        budget: &Budget,
    ) -> Result<GeneratedImage, ModelError> {
        LocalModel.fetch(request, output, budget).await
    }
}

#[tokio::test]
async fn a_processing_job_canceled_ends_canceled_without_its_images() {
    let stack = Stack::new().await;
    let job_id = submit(
        &stack,
        json!({"prompt": "too late", "width": 256, "height": 256, "num_outputs": 2}),
    )
    .await;
    let generator = stack.generator(SlowModel(Duration::from_millis(1500)));
    let records = stack.receive(30).await;
    let cancel_while_running = async {
        let started = Instant::now();
        while stack.store().job(job_id).await.unwrap().unwrap().status != JobStatus::Processing {
            assert!(started.elapsed() < Duration::from_secs(5), "the job never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cancel = format!("/media/jobs/{job_id}/cancel");
        http::submit::handle(&stack.submit_api(), request(Method::POST, &cancel, None, "")).await
    };
    let (answer, response) = tokio::join!(sqs::handle(&generator, sqs_event(records)), cancel_while_running);
    assert_eq!(response.status(), 202, "{}", json_of(&response));
    assert_eq!(json_of(&response)["status"], "processing");
    assert_eq!(json_of(&response)["cancel_requested"], true);
    assert!(answer.batch_item_failures.is_empty());
    let job = stack.store().job(job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert!(job.media_ids.is_empty(), "no images committed");
    assert!(
        stack.object_keys(&format!("media/{job_id}/")).await.is_empty(),
        "no images kept"
    );
}

#[tokio::test]
async fn listing_pages_through_250_jobs_without_loss_or_repeat() {
    let stack = Stack::new().await;
    let store = stack.store();
    let policy = stack.policy();
    let mut made = Vec::new();
    for (owner, count) in [(OWNER, 250), (crate::helpers::OTHER_OWNER, 30)] {
        let owner = Owner::parse(owner).unwrap();
        for i in 0..count {
            let request = GenerateRequest::parse(&json!({"prompt": format!("job {i}")}), &policy).unwrap();
            let mut job = Job::new(owner.clone(), request, Utc::now(), Duration::from_secs(3600));
            if i % 5 == 0 {
                job.status = JobStatus::Failed;
            }
            store.create(&job, None).await.unwrap();
            if owner.as_str() == OWNER {
                made.push((job.created_at, job.id, job.status));
            }
        }
    }
    // Newest first: ids are time-ordered (UUIDv7).
    made.sort_by_key(|(_, id, _)| std::cmp::Reverse(id.to_string()));
    let expected: Vec<String> = made.iter().map(|(_, id, _)| id.to_string()).collect();

    let status = stack.status_api();
    let page_through = |query: &'static str| {
        let status = &status;
        async move {
            let mut seen = Vec::new();
            let mut path = format!("/media/jobs?{query}");
            loop {
                let response = http::status::handle(status, request_with_query(&path)).await;
                assert_eq!(response.status(), 200, "{}", json_of(&response));
                let page = json_of(&response);
                for job in page["jobs"].as_array().unwrap() {
                    seen.push(job["job_id"].as_str().unwrap().to_owned());
                }
                match page["next_cursor"].as_str() {
                    Some(cursor) => path = format!("/media/jobs?{query}&cursor={cursor}"),
                    None => return seen,
                }
            }
        }
    };
    assert_eq!(page_through("limit=37").await, expected);
    let failed: Vec<String> = made
        .iter()
        .filter(|(_, _, status)| *status == JobStatus::Failed)
        .map(|(_, id, _)| id.to_string())
        .collect();
    assert_eq!(page_through("limit=100&status=failed").await, failed);

    let first = json_of(&http::status::handle(&status, request_with_query("/media/jobs")).await);
    assert_eq!(first["jobs"].as_array().unwrap().len(), 20, "the default page");
    let cursor = first["next_cursor"].as_str().unwrap();
    let tampered = format!("/media/jobs?cursor={}x{}", &cursor[..5], &cursor[5..]);
    for bad in [
        tampered.as_str(),
        "/media/jobs?cursor=%%%",
        "/media/jobs?limit=0",
        "/media/jobs?limit=101",
        "/media/jobs?status=done",
        "/media/jobs?page=2",
    ] {
        let response = http::status::handle(&status, request_with_query(bad)).await;
        let problem = assert_problem(&response, 400);
        assert_eq!(problem["type"], "urn:mediagen:problem:invalid-query", "{bad}");
    }
}

#[tokio::test]
async fn a_status_filter_sees_each_job_as_it_is_now() {
    let stack = Stack::new().await;
    let store = stack.store();
    let owner = Owner::parse(OWNER).unwrap();
    let new_job = |prompt: &str| {
        let request = GenerateRequest::parse(&json!({"prompt": prompt}), &stack.policy()).unwrap();
        Job::new(owner.clone(), request, Utc::now(), Duration::from_secs(3600))
    };
    let queued = new_job("stays queued");
    let running = new_job("is claimed");
    let failed = new_job("is claimed, then fails");
    for job in [&queued, &running, &failed] {
        store.create(job, None).await.unwrap();
    }
    let lease = Utc::now() + chrono::Duration::minutes(5);
    let mut claimed = Vec::new();
    for job in [&running, &failed] {
        match store.claim(job.id, Utc::now(), lease).await.unwrap() {
            mediagen::ports::Claim::Claimed(job) => claimed.push(*job),
            other => panic!("{other:?}"),
        }
    }
    let error = mediagen::domain::job::JobError::new("model_error", "the model broke");
    store.fail(&claimed[1], &error, Utc::now()).await.unwrap();
    // A final job written before jobs carried their final status for the index.
    let mut legacy = new_job("succeeded long ago");
    legacy.status = JobStatus::Succeeded;
    store.create(&legacy, None).await.unwrap();
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .update_item()
        .table_name(&stack.resources.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("JOB#{}", legacy.id)),
        )
        .update_expression("REMOVE final_status")
        .send()
        .await
        .unwrap();

    let status = stack.status_api();
    for (filter, expected) in [
        ("queued", vec![&queued]),
        ("processing", vec![&running]),
        ("failed", vec![&failed]),
        ("succeeded", vec![&legacy]),
        ("canceled", vec![]),
    ] {
        let response = http::status::handle(&status, request_with_query(&format!("/media/jobs?status={filter}"))).await;
        assert_eq!(response.status(), 200, "{}", json_of(&response));
        let page = json_of(&response);
        let listed: Vec<(&str, &str)> = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| (job["job_id"].as_str().unwrap(), job["status"].as_str().unwrap()))
            .collect();
        let expected: Vec<(String, &str)> = expected.iter().map(|job| (job.id.to_string(), filter)).collect();
        let expected: Vec<(&str, &str)> = expected.iter().map(|(id, status)| (id.as_str(), *status)).collect();
        assert_eq!(listed, expected, "status={filter}");
    }
    let everything = json_of(&http::status::handle(&status, request_with_query("/media/jobs")).await);
    let statuses: Vec<&str> = everything["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "failed", "processing", "queued"],
        "newest first, as they are now"
    );
}

/// Follows a listing's cursors from `query` to the end: each page's job ids, in order.
async fn pages_of(stack: &Stack, query: &str) -> Vec<Vec<String>> {
    let status = stack.status_api();
    let mut pages = Vec::new();
    let mut path = format!("/media/jobs?{query}");
    loop {
        let response = http::status::handle(&status, request_with_query(&path)).await;
        assert_eq!(response.status(), 200, "{}", json_of(&response));
        let page = json_of(&response);
        let ids = page["jobs"].as_array().unwrap().iter();
        pages.push(ids.map(|job| job["job_id"].as_str().unwrap().to_owned()).collect());
        assert!(pages.len() <= 10, "the cursors go on and on: {page}");
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/media/jobs?{query}&cursor={cursor}"),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn a_status_filter_reads_a_bounded_part_of_the_jobs_per_request_and_says_where_to_go_on() {
    let stack = Stack::new().await;
    let store = stack.store();
    let policy = stack.policy();
    let owner = Owner::parse(OWNER).unwrap();
    let mut jobs: Vec<Job> = (0..300)
        .map(|i| {
            let request = GenerateRequest::parse(&json!({"prompt": format!("job {i}")}), &policy).unwrap();
            Job::new(owner.clone(), request, Utc::now(), Duration::from_secs(3600))
        })
        .collect();
    // Newest first, as listed (UUIDv7 ids); only the newest and the oldest failed, none canceled.
    jobs.sort_by_key(|job| std::cmp::Reverse(job.id.to_string()));
    jobs[0].status = JobStatus::Failed;
    jobs[299].status = JobStatus::Failed;
    futures::stream::iter(&jobs)
        .for_each_concurrent(16, |job| async {
            store.create(job, None).await.unwrap();
        })
        .await;
    let newest = jobs[0].id.to_string();
    let oldest = jobs[299].id.to_string();

    // A filter that matches nothing answers from a bounded read, with a cursor to go on from.
    let none = pages_of(&stack, "status=canceled").await;
    assert!(none.len() > 1, "one request read all 300 jobs: {none:?}");
    assert!(none.iter().all(Vec::is_empty), "{none:?}");
    // Each request read at most MAX_READ jobs, and no fewer while more were left.
    let reads = 300usize.div_ceil(MAX_READ as usize);
    assert!((reads..=reads + 1).contains(&none.len()), "{} requests", none.len());

    // The first request stops before the oldest job; the cursors reach it, each job once.
    let failed = pages_of(&stack, "status=failed&limit=100").await;
    assert!(failed.len() > 1, "one request read all 300 jobs: {failed:?}");
    assert_eq!(failed[0], vec![newest.clone()], "{failed:?}");
    assert_eq!(failed.concat(), [newest, oldest]);

    // The next page's link and Replicate's `next` go on from there too, with the filter.
    let status = stack.status_api();
    let first = json_of(&http::status::handle(&status, request_with_query("/media/jobs?status=canceled")).await);
    assert_eq!(first["jobs"], json!([]), "{first}");
    let next = first["links"]["next"].as_str().unwrap();
    assert!(next.contains("status=canceled") && next.contains("cursor="), "{next}");
    let listed = http::submit::handle(
        &stack.submit_api(),
        request_with_query("/v1/predictions?status=canceled"),
    )
    .await;
    let predictions = json_of(&listed);
    assert_eq!(predictions["results"], json!([]), "{predictions}");
    let next = predictions["next"].as_str().unwrap_or_default();
    assert!(
        next.contains("status=canceled") && next.contains("cursor="),
        "{predictions}"
    );
}

/// A GET whose query string reaches the handler as API Gateway gives it.
#[tokio::test]
async fn prefer_wait_answers_a_finished_job_or_the_state_when_the_wait_runs_out() {
    let stack = Stack::new().await;
    // With nothing running the queue, the wait runs out and the job is still queued.
    let job_id = submit(&stack, json!({"prompt": "waiting"})).await;
    let path = format!("/media/jobs/{job_id}");
    let started = Instant::now();
    let response = http::status::handle(
        &stack.status_api(),
        with_header(request(Method::GET, &path, None, ""), "prefer", "wait=1"),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 200);
    assert_eq!(header_of(&response, "preference-applied"), Some("wait"));
    assert_eq!(json_of(&response)["status"], "queued");
    // Out of the worker's way below.
    assert_eq!(stack.receive(300).await.len(), 1);

    // A worker running beside the submit: the submit's answer is the succeeded job.
    let worker = async {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let records = stack.receive(30).await;
            if !records.is_empty() {
                run_records(&stack, records).await;
                return;
            }
        }
    };
    let api = stack.submit_api();
    let submit = http::submit::handle(
        &api,
        with_header(
            post_generate(json!({"prompt": "fast", "width": 256, "height": 256}).to_string()),
            "prefer",
            "wait=10",
        ),
    );
    let ((), response) = tokio::join!(worker, submit);
    let body = json_of(&response);
    assert_eq!(response.status(), 200, "{body}");
    assert_eq!(header_of(&response, "preference-applied"), Some("wait"));
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["media"].as_array().unwrap().len(), 1);
    assert!(body["links"]["status"].as_str().is_some());
}

async fn run_records(stack: &Stack, records: Vec<aws_lambda_events::event::sqs::SqsMessage>) {
    let generator = stack.generator(LocalModel);
    sqs::handle(&generator, sqs_event(records)).await;
}

#[tokio::test]
async fn a_key_past_its_create_limit_gets_429_with_retry_after_and_others_go_on() {
    let stack = Stack::new().await;
    KeyAdmin::new(stack.store())
        .set_limits(
            &KEY[..12],
            LimitChanges {
                creates_per_minute: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // All four in one window of a minute.
    let second = Utc::now().timestamp() % 60;
    if second > 50 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
    let service = stack.submit_api();
    for remaining in [2, 1, 0] {
        let response = http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)).await;
        assert_eq!(response.status(), 202, "{}", json_of(&response));
        assert_eq!(header_of(&response, "ratelimit-policy"), Some("\"create\";q=3;w=60"));
        let limit = header_of(&response, "ratelimit").unwrap().to_owned();
        assert!(limit.starts_with(&format!("\"create\";r={remaining};t=")), "{limit}");
    }
    let refused = http::submit::handle(&service, post_generate(r#"{"prompt":"a"}"#)).await;
    let problem = assert_problem(&refused, 429);
    assert_eq!(problem["type"], "urn:mediagen:problem:rate-limited");
    let wait: u64 = header_of(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        header_of(&refused, "ratelimit")
            .unwrap()
            .starts_with("\"create\";r=0;t=")
    );
    // Nothing was written or queued for it.
    assert_eq!(stack.receive(0).await.len(), 3);

    // Reads are another class; another key is another budget.
    let read = http::status::handle(&stack.status_api(), request(Method::GET, "/media/jobs", None, "")).await;
    assert_eq!(read.status(), 200);
    assert!(
        header_of(&read, "ratelimit")
            .unwrap()
            .starts_with("\"other\";r=2999;t=")
    );
    let other = request_as(OTHER_KEY, Method::POST, "/media/generate", JSON, r#"{"prompt":"b"}"#);
    assert_eq!(http::submit::handle(&service, other).await.status(), 202);
}

#[tokio::test]
async fn a_key_holds_no_more_waits_open_than_its_limit_and_the_rest_are_answered_at_once() {
    let stack = Stack::new().await;
    KeyAdmin::new(stack.store())
        .set_limits(
            &KEY[..12],
            LimitChanges {
                concurrent_waits: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Nothing runs the queue: the job stays queued, and a wait runs its whole length.
    let job_id = submit(&stack, json!({"prompt": "never run", "width": 256, "height": 256})).await;
    let status = stack.status_api();
    let waiting = || {
        let path = format!("/media/jobs/{job_id}");
        http::status::handle(
            &status,
            with_header(request(Method::GET, &path, None, ""), "prefer", "wait=2"),
        )
    };
    let started = Instant::now();
    let (first, second) = tokio::join!(waiting(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answered = waiting().await;
        (answered, started.elapsed())
    });
    let (second, second_took) = second;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    assert_eq!(header_of(&first, "preference-applied"), Some("wait"));
    assert_eq!(
        header_of(&second, "preference-applied"),
        None,
        "answered without waiting"
    );
    assert!(second_took < Duration::from_millis(1500), "{second_took:?}");
    // The first wait has ended: the next may wait again.
    assert_eq!(header_of(&waiting().await, "preference-applied"), Some("wait"));
}
