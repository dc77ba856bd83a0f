//! The sample events of `events/` (the ones for `cargo lambda invoke --data-file`), each fed
//! to its handler: the REST API (v1) proxy shape the deployed API Gateway sends, and the SQS
//! batch `generate` receives.

use std::time::Duration;

use crate::helpers::{Stack, assert_problem, header_of, json_of, sqs_event};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use mediagen::adapters::image_model::local::LocalModel;
use mediagen::domain::ids::JobId;
use mediagen::entrypoints::http;
use mediagen::entrypoints::sqs;
use mediagen::ports::JobStore;

const SUBMIT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/submit.json"));
const STATUS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/status.json"));
const JOB: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/job.json"));
const CONTENT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/content.json"));
const GENERATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/generate.json"));

/// The request lambda_http builds from an HTTP event file, which must be of the REST API shape.
fn http_event(name: &str, text: &str) -> Request {
    let mut request =
        lambda_http::request::from_str(text).unwrap_or_else(|e| panic!("{name} is not an HTTP event: {e}"));
    // The sample events carry no key: a caller adds theirs.
    request.headers_mut().insert(
        lambda_http::http::header::AUTHORIZATION,
        format!("Bearer {}", crate::helpers::KEY).parse().unwrap(),
    );
    assert!(
        matches!(request.request_context_ref(), Some(RequestContext::ApiGatewayV1(_))),
        "{name} is not a REST API (v1) proxy event"
    );
    request
}

fn assert_not_found(name: &str, response: &Response<Body>) {
    let problem = assert_problem(response, 404);
    assert_eq!(problem["type"], "urn:mediagen:problem:not-found", "{name}: {problem}");
}

#[tokio::test]
async fn the_submit_event_is_accepted() {
    let stack = Stack::new().await;
    let service = stack.submit_api();
    let response = http::submit::handle(&service, http_event("submit.json", SUBMIT)).await;

    let answer = json_of(&response);
    assert_eq!(response.status(), 202, "{answer}");
    let job_id = answer["job_id"].as_str().expect("a job_id in the answer");
    let job_id = JobId::parse(job_id).unwrap_or_else(|_| panic!("{answer}"));
    // The body came through from the event.
    let job = stack.store().job(job_id).await.unwrap().expect("the job is stored");
    assert_eq!(job.request.prompt, "a lighthouse on a cliff at dusk");
    assert_eq!((job.request.width, job.request.height), (512, 512));
    // Links keep the stage, so they resolve against the deployed API's URL.
    let location = format!("/prod/media/status/{job_id}");
    assert_eq!(header_of(&response, "location"), Some(location.as_str()));
    assert_eq!(answer["links"]["job"], format!("/prod/media/jobs/{job_id}"));
}

/// The job does not exist: a `not-found` (not a `no-route`) shows that the route and the id
/// were read from the REST event.
#[tokio::test]
async fn the_status_and_job_events_reach_the_store() {
    let stack = Stack::new().await;
    for (name, text) in [("status.json", STATUS), ("job.json", JOB)] {
        let response = http::status::handle(&stack.status_api(), http_event(name, text)).await;
        assert_not_found(name, &response);
    }
}

#[tokio::test]
async fn the_content_event_reaches_the_store() {
    let stack = Stack::new().await;
    let service = stack.content_api(Duration::from_secs(900));
    let response = http::content::handle(&service, http_event("content.json", CONTENT)).await;
    assert_not_found("content.json", &response);
}

/// The first record names a job that does not exist and the second is not JSON: both are
/// acknowledged, so nothing comes back to be delivered again.
#[tokio::test]
async fn the_generate_event_is_acknowledged() {
    let stack = Stack::new().await;
    let generator = stack.generator(LocalModel);
    let event: SqsEvent = serde_json::from_str(GENERATE).expect("generate.json is an SQS event");
    assert_eq!(event.records.len(), 2);

    let response = sqs::handle(&generator, sqs_event(event.records)).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
}
