//! The Replicate-compatible routes through the handlers (docs/design.md, "Replicate-compatible
//! API"). The official client itself runs against the local stack in `tests/replicate_client/`.

use std::time::Duration;

use crate::helpers::{OTHER_KEY, Stack, assert_problem, json_of, request, request_as, request_with_query, sqs_event};
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt};
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::entrypoints::{http, sqs};
use serde_json::{Value, json};

const JSON: Option<&str> = Some("application/json");

fn https(mut request: Request) -> Request {
    let headers = request.headers_mut();
    headers.insert("host", "api.example.com".parse().unwrap());
    headers.insert("x-forwarded-proto", "https".parse().unwrap());
    request
}

async fn create(stack: &Stack, path: &str, body: Value) -> (u16, Value) {
    let response = http::submit::handle(
        &stack.submit_api(),
        https(request(Method::POST, path, JSON, body.to_string())),
    )
    .await;
    (response.status().as_u16(), json_of(&response))
}

#[tokio::test]
async fn a_prediction_runs_from_create_to_files_a_plain_client_can_fetch() {
    let stack = Stack::new().await;
    let (status, created) = create(
        &stack,
        "/v1/models/mediagen/local/predictions",
        json!({"input": {"prompt": "a fox", "width": 256, "height": 256, "num_outputs": 2, "go_fast": true}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "starting");
    assert_eq!(created["model"], "mediagen/local");
    assert_eq!(created["output"], Value::Null);
    assert_eq!(created["logs"], "");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["urls"]["get"],
        format!("https://api.example.com/v1/predictions/{id}")
    );

    sqs::handle(&stack.generator(LocalModel), sqs_event(stack.receive(30).await)).await;
    let response = http::status::handle(
        &stack.status_api(),
        https(request(Method::GET, &format!("/v1/predictions/{id}"), None, "")),
    )
    .await;
    let prediction = json_of(&response);
    assert_eq!(prediction["status"], "succeeded", "{prediction}");
    assert!(prediction["metrics"]["predict_time"].is_number());
    let outputs = prediction["output"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);

    // The signed link alone, as a plain HTTP client would fetch it; then with the key alone.
    let link = url::Url::parse(outputs[0].as_str().unwrap()).unwrap();
    assert_eq!(link.scheme(), "https");
    let query: std::collections::HashMap<String, String> = link.query_pairs().into_owned().collect();
    let mut signed = request(Method::GET, link.path(), None, "").with_query_string_parameters(query.clone());
    signed.headers_mut().remove("authorization");
    let content = stack.content_api(Duration::from_secs(60));
    let response = http::content::handle(&content, signed).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let bytes = match response.body() {
        Body::Binary(bytes) => bytes.clone(),
        other => panic!("not bytes: {other:?}"),
    };
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 256);
    let with_key = http::content::handle(&content, request(Method::GET, link.path(), None, "")).await;
    assert_eq!(with_key.status(), 200);
    let theirs = http::content::handle(&content, request_as(OTHER_KEY, Method::GET, link.path(), None, "")).await;
    assert_problem(&theirs, 404);
    let mut forged = query;
    forged.insert("expires".into(), "9999999999".into());
    let mut tampered = request(Method::GET, link.path(), None, "").with_query_string_parameters(forged);
    tampered.headers_mut().remove("authorization");
    assert_problem(&http::content::handle(&content, tampered).await, 401);
}

#[tokio::test]
async fn create_by_version_list_cancel_and_problems() {
    let stack = Stack::new().await;
    let (status, created) = create(
        &stack,
        "/v1/predictions",
        json!({"version": "mediagen/local", "input": {"prompt": "by version"}, "webhook_events_filter": ["completed"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let response = http::submit::handle(
        &stack.submit_api(),
        https(request(Method::POST, &format!("/v1/predictions/{id}/cancel"), None, "")),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(&response)["status"], "canceled");

    // Listing shares its path with creating, so submit serves it.
    let response = http::submit::handle(
        &stack.submit_api(),
        https(request(Method::GET, "/v1/predictions", None, "")),
    )
    .await;
    let page = json_of(&response);
    assert_eq!(page["results"][0]["id"], id.as_str(), "{page}");
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["previous"], Value::Null);

    let (status, problem) = create(
        &stack,
        "/v1/models/acme/nothing/predictions",
        json!({"input": {"prompt": "a"}}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"].as_str().unwrap().contains("acme/nothing"),
        "{problem}"
    );
    let (status, problem) = create(
        &stack,
        "/v1/models/mediagen/local/predictions",
        json!({"input": {"prompt": "a", "width": 100, "steps": 4}}),
    )
    .await;
    assert_eq!(status, 422);
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["input.steps"], "{problem}");
    let (status, problem) = create(
        &stack,
        "/v1/models/mediagen/local/predictions",
        json!({"input": {"prompt": "a", "width": 100}}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "input.width", "{problem}");
}

#[tokio::test]
async fn a_waiting_create_that_runs_out_says_starting() {
    let stack = Stack::new().await;
    let mut waiting = https(request(
        Method::POST,
        "/v1/models/mediagen/local/predictions",
        JSON,
        json!({"input": {"prompt": "nobody runs the queue"}}).to_string(),
    ));
    waiting.headers_mut().insert("prefer", "wait=1".parse().unwrap());
    let response = http::submit::handle(&stack.submit_api(), waiting).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["preference-applied"], "wait");
    assert_eq!(json_of(&response)["status"], "starting");
}

#[tokio::test]
async fn a_filtered_listing_keeps_its_filter_on_the_next_page() {
    let stack = Stack::new().await;
    let mut canceled = Vec::new();
    for n in 0..3 {
        let (status, created) = create(
            &stack,
            "/v1/predictions",
            json!({"version": "mediagen/local", "input": {"prompt": format!("page {n}")}}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        if n != 1 {
            let cancel = https(request(Method::POST, &format!("/v1/predictions/{id}/cancel"), None, ""));
            assert_eq!(http::submit::handle(&stack.submit_api(), cancel).await.status(), 200);
            canceled.push(id);
        }
    }
    let list = |path: &str| https(request_with_query(path));
    let first =
        json_of(&http::submit::handle(&stack.submit_api(), list("/v1/predictions?status=canceled&limit=1")).await);
    assert_eq!(first["results"][0]["id"], canceled[1].as_str(), "{first}");
    let next = first["next"].as_str().expect("a next page");
    let next = next.strip_prefix("https://api.example.com").expect("an absolute link");
    let second = json_of(&http::submit::handle(&stack.submit_api(), list(next)).await);
    let ids: Vec<&str> = second["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [canceled[0].as_str()], "{second}");
}
