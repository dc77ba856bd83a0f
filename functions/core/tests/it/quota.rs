//! Per-owner quotas (docs/design.md, "Quotas") through the real handlers and store: jobs queued
//! or running at once, monthly budgets, and `GET /media/usage`.

use crate::helpers::{OWNER, Stack, assert_problem, header_of, json_of, post_generate, request, sqs_event};
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::Method;
use lambda_http::{Body, Request};
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::domain::ids::JobId;
use mediagen::domain::job::JobStatus;
use mediagen::domain::keys::Owner;
use mediagen::domain::listing::ListQuery;
use mediagen::domain::quota::QuotaChanges;
use mediagen::entrypoints::{http, sqs};
use mediagen::ports::{JobStore, QuotaStore};
use serde_json::{Value, json};

fn owner() -> Owner {
    Owner::parse(OWNER).unwrap()
}

async fn set_quota(stack: &Stack, changes: QuotaChanges) {
    stack.store().set_quota(&owner(), changes).await.unwrap();
}

fn max_active(limit: u32) -> QuotaChanges {
    QuotaChanges {
        max_active: Some(Some(limit)),
        ..QuotaChanges::default()
    }
}

fn generate(body: Value) -> Request {
    post_generate(body.to_string())
}

async fn usage(stack: &Stack) -> Value {
    let response = http::status::handle(
        &stack.status_api(),
        request(Method::GET, "/media/usage", None, Body::Empty),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    json_of(&response)
}

async fn all_jobs(stack: &Stack) -> Vec<mediagen::domain::job::Job> {
    let query = ListQuery {
        status: None,
        limit: 100,
        after: None,
    };
    stack.store().list(&owner(), &query).await.unwrap().jobs
}

#[tokio::test]
async fn fifty_concurrent_submits_leave_no_more_jobs_active_than_the_owners_limit() {
    let stack = Stack::new().await;
    set_quota(&stack, max_active(5)).await;
    let api = stack.submit_api();
    let answers = futures::future::join_all(
        (0..50).map(|i| http::submit::handle(&api, generate(json!({"prompt": format!("crowd {i}")})))),
    )
    .await;

    let accepted = answers.iter().filter(|a| a.status() == 202).count();
    assert_eq!(accepted, 5);
    for refused in answers.iter().filter(|a| a.status() != 202) {
        let problem = assert_problem(refused, 429);
        assert_eq!(problem["type"], "urn:mediagen:problem:too-many-active-jobs");
        assert!(problem["detail"].as_str().unwrap().contains("5 jobs"), "{problem}");
        assert_eq!(header_of(refused, "retry-after"), Some("5"));
    }
    // A refused submit wrote no job and queued nothing.
    assert_eq!(all_jobs(&stack).await.len(), 5);
    assert_eq!(stack.receive(30).await.len(), 5);
    assert_eq!(
        usage(&stack).await["active_jobs"],
        json!({"used": 5, "limit": 5, "remaining": 0})
    );
}

#[tokio::test]
async fn every_end_of_a_job_gives_its_slot_back() {
    let stack = Stack::new().await;
    set_quota(&stack, max_active(2)).await;
    let api = stack.submit_api();
    let submit = async || {
        let answer = http::submit::handle(&api, generate(json!({"prompt": "one more"}))).await;
        (answer.status(), json_of(&answer)["job_id"].as_str().map(str::to_owned))
    };
    let (_, first) = submit().await;
    let (_, second) = submit().await;
    assert_eq!(submit().await.0, 429);

    // Canceled while queued.
    let cancel = request(
        Method::POST,
        &format!("/media/jobs/{}/cancel", first.unwrap()),
        None,
        Body::Empty,
    );
    assert_eq!(http::submit::handle(&api, cancel).await.status(), 200);
    let (status, third) = submit().await;
    assert_eq!(status, 202);
    assert_eq!(submit().await.0, 429);

    // Succeeded: the worker runs both jobs queued now.
    let generator = stack.generator(LocalModel);
    let messages = stack.receive(30).await;
    let ours: Vec<_> = messages
        .into_iter()
        .filter(|m| {
            let body = m.body.as_deref().unwrap_or_default();
            [&second, &third].iter().any(|id| body.contains(id.as_deref().unwrap()))
        })
        .collect();
    assert_eq!(ours.len(), 2);
    let outcome = sqs::handle(&generator, sqs_event(ours)).await;
    assert!(outcome.batch_item_failures.is_empty());
    let status = |id: &Option<String>| {
        let id = JobId::parse(id.as_deref().unwrap()).unwrap();
        let store = stack.store();
        async move { store.job(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&second).await, JobStatus::Succeeded);
    assert_eq!(usage(&stack).await["active_jobs"]["used"], 0);
    assert_eq!(submit().await.0, 202);
    assert_eq!(submit().await.0, 202);
    assert_eq!(submit().await.0, 429);
}

#[tokio::test]
async fn a_slot_whose_give_back_was_lost_is_reclaimed_at_the_limit() {
    let stack = Stack::new().await;
    set_quota(&stack, max_active(1)).await;
    let api = stack.submit_api();
    let answer = http::submit::handle(&api, generate(json!({"prompt": "ends"}))).await;
    let job_id = JobId::parse(json_of(&answer)["job_id"].as_str().unwrap()).unwrap();
    let generator = stack.generator(LocalModel);
    sqs::handle(&generator, sqs_event(stack.receive(30).await)).await;
    assert_eq!(
        stack.store().job(job_id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    // As if the give-back after the final write had been lost: the ended job holds its slot.
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .update_item()
        .table_name(&stack.resources.table)
        .key("pk", AttributeValue::S(format!("QUOTA#{OWNER}")))
        .update_expression("ADD active :job")
        .expression_attribute_values(":job", AttributeValue::Ss(vec![job_id.to_string()]))
        .send()
        .await
        .unwrap();
    assert_eq!(usage(&stack).await["active_jobs"]["used"], 1);

    let answer = http::submit::handle(&api, generate(json!({"prompt": "next"}))).await;
    assert_eq!(answer.status(), 202, "{}", json_of(&answer));
    assert_eq!(usage(&stack).await["active_jobs"]["used"], 1);
}

#[tokio::test]
async fn a_replay_at_the_limit_answers_its_job_not_a_refusal() {
    let stack = Stack::new().await;
    set_quota(&stack, max_active(1)).await;
    let api = stack.submit_api();
    let keyed = || {
        let mut request = generate(json!({"prompt": "keyed"}));
        request
            .headers_mut()
            .insert("idempotency-key", "replay-at-the-limit".parse().unwrap());
        request
    };
    let first = http::submit::handle(&api, keyed()).await;
    assert_eq!(first.status(), 202);
    let again = http::submit::handle(&api, keyed()).await;
    // 200: a replay, as without a quota (docs/api.md, "Idempotency").
    assert_eq!(again.status(), 200, "{}", json_of(&again));
    assert_eq!(json_of(&again)["job_id"], json_of(&first)["job_id"]);
    assert_eq!(usage(&stack).await["active_jobs"]["used"], 1);
}

#[tokio::test]
async fn a_used_up_budget_is_a_402_and_failed_jobs_are_given_back() {
    let stack = Stack::new().await;
    set_quota(
        &stack,
        QuotaChanges {
            monthly_images: Some(Some(3)),
            ..QuotaChanges::default()
        },
    )
    .await;
    let api = stack.submit_api();
    let two = || generate(json!({"prompt": "pair", "num_outputs": 2}));
    let first = http::submit::handle(&api, two()).await;
    assert_eq!(first.status(), 202);
    // Under the budget when asked (2 of 3), so admitted: the month ends at 4.
    assert_eq!(http::submit::handle(&api, two()).await.status(), 202);
    let refused = http::submit::handle(&api, two()).await;
    let problem = assert_problem(&refused, 402);
    assert_eq!(problem["type"], "urn:mediagen:problem:budget-exhausted");
    assert!(problem["detail"].as_str().unwrap().contains("3 images"), "{problem}");
    assert_eq!(header_of(&refused, "retry-after"), None);
    let seen = usage(&stack).await;
    assert_eq!(seen["images"], json!({"used": 4, "limit": 3, "remaining": 0}));
    assert_eq!(
        seen["spend_usd"],
        json!({"used": "0.00", "limit": null, "remaining": null})
    );

    // A job that fails gives its images back.
    let job_id = JobId::parse(json_of(&first)["job_id"].as_str().unwrap()).unwrap();
    let error = mediagen::domain::job::JobError::new("model_failed", "refused");
    stack
        .store()
        .fail_queued(job_id, &error, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(usage(&stack).await["images"]["used"], 2);
    assert_eq!(http::submit::handle(&api, two()).await.status(), 202);
}

#[tokio::test]
async fn usage_shows_the_defaults_for_an_owner_with_no_quota_set() {
    let stack = Stack::new().await;
    let seen = usage(&stack).await;
    assert_eq!(seen["owner"], OWNER);
    assert_eq!(seen["month"], chrono::Utc::now().format("%Y-%m").to_string());
    assert!(
        seen["resets_at"].as_str().unwrap().ends_with("-01T00:00:00.000Z"),
        "{seen}"
    );
    assert_eq!(seen["active_jobs"], json!({"used": 0, "limit": 100, "remaining": 100}));
    assert_eq!(seen["images"], json!({"used": 0, "limit": null, "remaining": null}));
}
