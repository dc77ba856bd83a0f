//! Contract tests of the Replicate adapter against a local mock of its API: throttling, server
//! errors, slow and failed predictions, bad input, outputs in both shapes, broken downloads.

use std::time::{Duration, Instant};

use mediagen::adapters::image_model::local;
use mediagen::adapters::image_model::replicate::{ReplicateModel, ReplicateSettings};
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::{GenerateRequest, RequestPolicy};
use mediagen::domain::retry::{Backoff, Budget};
use mediagen::domain::secret::Secret;
use mediagen::ports::{ImageModel, ModelError, NoRunLog, RunLog};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "r8_contract_test_token";
const SCHNELL: &str = "/v1/models/black-forest-labs/flux-schnell/predictions";

fn model(server: &MockServer) -> ReplicateModel {
    ReplicateModel::new(ReplicateSettings {
        api_base_url: Url::parse(&format!("{}/v1", server.uri())).unwrap(),
        token: Secret::new(TOKEN),
        allow_local_urls: true,
        max_output_bytes: 10 * 1024 * 1024,
    })
    .unwrap()
}

fn request(num_outputs: u32) -> GenerateRequest {
    let policy = RequestPolicy {
        catalogue: mediagen::domain::catalogue::Catalogue::parse(
            mediagen::domain::catalogue::BUILT_IN,
            &[mediagen::domain::catalogue::Provider::Replicate],
        )
        .unwrap(),
        allow_local_urls: true,
    };
    GenerateRequest::parse(
        &json!({"prompt": "a lighthouse", "width": 512, "height": 256, "num_outputs": num_outputs, "seed": 5}),
        &policy,
    )
    .unwrap()
}

fn prediction(server: &MockServer, id: &str, status: &str, output: Value) -> Value {
    json!({
        "id": id,
        "status": status,
        "output": output,
        "error": null,
        "urls": {
            "get": format!("{}/v1/predictions/{id}", server.uri()),
            "cancel": format!("{}/v1/predictions/{id}/cancel", server.uri()),
        },
    })
}

/// Serves `count` real PNGs at /files/<n>.png and answers their URLs.
async fn outputs(server: &MockServer, count: u32) -> Vec<String> {
    let mut urls = Vec::new();
    for index in 0..count {
        let mut picture = request(1);
        picture.output_format = OutputFormat::Png;
        let png = local::render(&picture, index).unwrap().bytes;
        let file = format!("/files/{index}.png");
        Mock::given(method("GET"))
            .and(path(file.clone()))
            .respond_with(ResponseTemplate::new(200).set_body_raw(png, "image/png"))
            .mount(server)
            .await;
        urls.push(format!("{}{file}", server.uri()));
    }
    urls
}

fn fresh_budget() -> Budget {
    Budget::new(Duration::from_secs(30))
}

/// The retries `generate` wraps around the model, as in production but with short waits.
const RETRIES: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 5);

#[tokio::test]
async fn replicate_sync_success_sends_token_input_and_prefer_wait() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header_exists("prefer"))
        .and(body_partial_json(json!({"input": {
            "prompt": "a lighthouse", "aspect_ratio": "16:9", "num_outputs": 1, "seed": 5, "output_format": "png"
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p1", "succeeded", json!(urls))))
        .expect(1)
        .mount(&server)
        .await;
    let model = model(&server);

    let found = model.generate(&request(1), &fresh_budget(), &NoRunLog).await.unwrap();
    assert_eq!(found.len(), 1);
    let image = model.fetch(&request(1), &found[0], &fresh_budget()).await.unwrap();
    assert_eq!(image.format, OutputFormat::Png);
    assert_eq!((image.width, image.height), (512, 256));

    let prefer = server.received_requests().await.unwrap()[0].headers["prefer"]
        .to_str()
        .unwrap()
        .to_owned();
    let wait: u64 = prefer.strip_prefix("wait=").unwrap().parse().unwrap();
    assert!((1..=27).contains(&wait), "wait fitted to the 30 s budget: {prefer}");
}

#[tokio::test]
async fn replicate_success_after_polling() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 2).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p2", "starting", Value::Null)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(&server, "p2", "processing", Value::Null)))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(&server, "p2", "succeeded", json!(urls))))
        .mount(&server)
        .await;

    let found = model(&server)
        .generate(&request(2), &fresh_budget(), &NoRunLog)
        .await
        .unwrap();
    assert_eq!(found.iter().map(Url::as_str).collect::<Vec<_>>(), urls);
}

#[tokio::test]
async fn replicate_429_with_retry_after_then_success() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"detail": "Request was throttled.", "status": 429})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p3", "succeeded", json!(urls[0]))))
        .mount(&server)
        .await;
    let model = model(&server);
    let (one, budget) = (request(1), fresh_budget());

    let first = model
        .generate(&request(1), &fresh_budget(), &NoRunLog)
        .await
        .unwrap_err();
    assert_eq!(
        first,
        ModelError::Transient {
            message: "Replicate throttled the request: Request was throttled.".into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    );
    let started = Instant::now();
    let found = RETRIES
        .retry(&budget, || model.generate(&one, &budget, &NoRunLog))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the second call needs no wait"
    );
}

#[tokio::test]
async fn replicate_429_without_header_uses_the_reset_hint_and_waits() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(
                json!({"detail": "Request was throttled. Your rate limit resets in ~1s.", "status": 429}),
            ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p4", "succeeded", json!(urls))))
        .mount(&server)
        .await;
    let model = model(&server);
    let (one, budget) = (request(1), fresh_budget());

    let started = Instant::now();
    let found = RETRIES
        .retry(&budget, || model.generate(&one, &budget, &NoRunLog))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited the hinted second");
}

#[tokio::test]
async fn replicate_5xx_twice_then_success() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p5", "succeeded", json!(urls))))
        .expect(1)
        .mount(&server)
        .await;
    let model = model(&server);
    let (one, budget) = (request(1), fresh_budget());

    let found = RETRIES
        .retry(&budget, || model.generate(&one, &budget, &NoRunLog))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn replicate_422_is_permanent_and_keeps_the_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "title": "Input validation failed",
            "detail": "- input.num_outputs: Must be less than or equal to 4",
            "status": 422,
        })))
        .expect(1)
        .mount(&server)
        .await;
    let model = model(&server);
    let (one, budget) = (request(1), fresh_budget());

    let err = RETRIES
        .retry(&budget, || model.generate(&one, &budget, &NoRunLog))
        .await
        .unwrap_err();
    let ModelError::Permanent { message, .. } = err else {
        panic!("expected a permanent error, got {err:?}");
    };
    assert!(message.contains("Must be less than or equal to 4"), "{message}");
}

#[tokio::test]
async fn replicate_refused_token_is_a_configuration_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token.", "status": 401})))
        .mount(&server)
        .await;
    let err = model(&server)
        .generate(&request(1), &fresh_budget(), &NoRunLog)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Configuration { ref message } if message.contains("Invalid token")),
        "{err:?}"
    );
    assert!(!err.to_string().contains(TOKEN));
}

#[tokio::test]
async fn replicate_failed_prediction_is_permanent_with_its_error() {
    let server = MockServer::start().await;
    let mut failed = prediction(&server, "p6", "failed", Value::Null);
    failed["error"] = json!("NSFW content detected. Try running it again, or try a different prompt.");
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p6", "processing", Value::Null)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p6"))
        .respond_with(ResponseTemplate::new(200).set_body_json(failed))
        .mount(&server)
        .await;

    let err = model(&server)
        .generate(&request(1), &fresh_budget(), &NoRunLog)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::Permanent {
            code: "model_failed".into(),
            message: "NSFW content detected. Try running it again, or try a different prompt.".into(),
        }
    );
}

/// The log `generate` keeps on the job, in memory.
#[derive(Default)]
struct MemoryLog(std::sync::Mutex<Vec<String>>);

impl RunLog for MemoryLog {
    fn noted(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    async fn note(&self, ids: Vec<String>) {
        *self.0.lock().unwrap() = ids;
    }
}

fn posts(requests: &[wiremock::Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .count()
}

/// A prediction still running after an attempt's polling is left running, noted, and the model
/// answers `Pending`; the next attempt collects it instead of paying for another.
#[tokio::test]
async fn replicate_prediction_running_past_the_budget_is_collected_by_the_next_attempt() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p7", "starting", Value::Null)))
        .expect(1)
        .mount(&server)
        .await;
    // Running until the first attempt has given up; done by the next.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (running, finished) = (
        prediction(&server, "p7", "processing", Value::Null),
        prediction(&server, "p7", "succeeded", json!(urls)),
    );
    let flag = done.clone();
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p7"))
        .respond_with(move |_: &wiremock::Request| {
            let body = if flag.load(std::sync::atomic::Ordering::SeqCst) {
                &finished
            } else {
                &running
            };
            ResponseTemplate::new(200).set_body_json(body.clone())
        })
        .mount(&server)
        .await;
    Mock::given(path("/v1/predictions/p7/cancel"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let (model, log) = (model(&server), MemoryLog::default());

    let started = Instant::now();
    let err = model
        .generate(&request(1), &Budget::new(Duration::from_secs(10)), &log)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Pending { ref message, check_after } if message.contains("p7") && check_after > Duration::ZERO),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "stopped inside the budget");
    assert_eq!(log.noted(), ["p7"]);

    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let found = model.generate(&request(1), &fresh_budget(), &log).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(log.noted(), ["p7"]);
    // One create in all; the expectations are checked when the server drops.
}

/// The third of three predictions fails to start: the next attempt takes up the first two
/// where they are and starts only the third.
#[tokio::test]
async fn replicate_resumes_the_predictions_of_a_multi_prediction_job() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    let creates = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = server.uri();
    let counter = creates.clone();
    let url = urls[0].clone();
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-1.1-pro/predictions"))
        .respond_with(move |_: &wiremock::Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 2 {
                return ResponseTemplate::new(503).set_body_string("busy");
            }
            let id = format!("p-{n}");
            ResponseTemplate::new(201).set_body_json(json!({
                "id": id, "status": "succeeded", "output": url, "error": null,
                "urls": {"get": format!("{base}/v1/predictions/{id}"), "cancel": format!("{base}/v1/predictions/{id}/cancel")},
            }))
        })
        .mount(&server)
        .await;
    for id in ["p-0", "p-1"] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/predictions/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
                &server,
                id,
                "succeeded",
                json!(urls[0]),
            )))
            .expect(1)
            .mount(&server)
            .await;
    }
    let mut three = request(3);
    three.model = "black-forest-labs/flux-1.1-pro".into();
    let (model, log) = (model(&server), MemoryLog::default());

    let err = model.generate(&three, &fresh_budget(), &log).await.unwrap_err();
    assert!(matches!(err, ModelError::Transient { .. }), "{err:?}");
    assert_eq!(log.noted(), ["p-0", "p-1"]);

    let found = model.generate(&three, &fresh_budget(), &log).await.unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(log.noted(), ["p-0", "p-1", "p-3"]);
    assert_eq!(
        creates.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "two kept, one failed to start, one new"
    );
    let seeds: Vec<u64> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["input"]["seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seeds, [5, 6, 7, 7], "the third keeps its own seed");
}

/// A noted prediction that was canceled, or whose files Replicate has deleted, is started again.
#[tokio::test]
async fn replicate_starts_again_a_noted_prediction_that_cannot_give_its_outputs() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    let mut removed = prediction(&server, "old", "succeeded", json!(urls));
    removed["data_removed"] = json!(true);
    Mock::given(method("GET"))
        .and(path("/v1/predictions/old"))
        .respond_with(ResponseTemplate::new(200).set_body_json(removed))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "new", "succeeded", json!(urls))))
        .expect(1)
        .mount(&server)
        .await;
    let log = MemoryLog(std::sync::Mutex::new(vec!["old".into()]));
    let found = model(&server)
        .generate(&request(1), &fresh_budget(), &log)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(log.noted(), ["new"]);
}

/// Replicate holds its answer for `Prefer: wait` seconds and answers at their end: the client
/// must still be waiting then, or the prediction's id is lost and a retry pays for another.
#[tokio::test]
async fn replicate_create_answered_at_the_end_of_the_wait_is_not_lost() {
    let server = MockServer::start().await;
    let body = prediction(&server, "p-slow", "starting", Value::Null);
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(move |request: &wiremock::Request| {
            let wait: u64 = request.headers["prefer"]
                .to_str()
                .ok()
                .and_then(|prefer| prefer.strip_prefix("wait="))
                .and_then(|seconds| seconds.parse().ok())
                .unwrap_or(0);
            ResponseTemplate::new(201)
                .set_body_json(body.clone())
                .set_delay(Duration::from_secs(wait) + Duration::from_millis(1500))
        })
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p-slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
            &server,
            "p-slow",
            "processing",
            Value::Null,
        )))
        .mount(&server)
        .await;
    let log = MemoryLog::default();
    let err = model(&server)
        .generate(&request(1), &Budget::new(Duration::from_secs(11)), &log)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Pending { .. }), "{err:?}");
    assert_eq!(log.noted(), ["p-slow"], "the prediction's id was kept: {err:?}");
}

/// An answer naming `urls.get` on another host does not get the token sent there.
#[tokio::test]
async fn replicate_sends_the_token_to_its_own_origin_only() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let urls = outputs(&server, 1).await;
    let mut created = prediction(&server, "p-off", "starting", Value::Null);
    created["urls"] = json!({
        "get": format!("{}/v1/predictions/p-off", elsewhere.uri()),
        "cancel": format!("{}/v1/predictions/p-off/cancel", elsewhere.uri()),
    });
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p-off"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(&server, "p-off", "succeeded", json!(urls))))
        .expect(1..)
        .mount(&server)
        .await;
    let found = model(&server)
        .generate(&request(1), &fresh_budget(), &MemoryLog::default())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(posts(&elsewhere.received_requests().await.unwrap()) == 0);
}

#[test]
fn replicate_refuses_a_plain_http_api_outside_local_runs() {
    let settings = |allow_local_urls| ReplicateSettings {
        api_base_url: Url::parse("http://api.replicate.com/v1").unwrap(),
        token: Secret::new(TOKEN),
        allow_local_urls,
        max_output_bytes: 1,
    };
    assert!(ReplicateModel::new(settings(false)).is_err());
    assert!(ReplicateModel::new(settings(true)).is_ok());
}

#[tokio::test]
async fn replicate_output_as_a_single_string() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p8", "succeeded", json!(urls[0]))))
        .mount(&server)
        .await;
    let model = model(&server);
    let found = model.generate(&request(1), &fresh_budget(), &NoRunLog).await.unwrap();
    assert_eq!(found, vec![Url::parse(&urls[0]).unwrap()]);
    assert!(model.fetch(&request(1), &found[0], &fresh_budget()).await.is_ok());
}

#[tokio::test]
async fn replicate_output_as_a_list_of_several_urls() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 4).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p9", "succeeded", json!(urls))))
        .mount(&server)
        .await;
    let model = model(&server);
    let found = model.generate(&request(4), &fresh_budget(), &NoRunLog).await.unwrap();
    assert_eq!(found.len(), 4);
    let mut pictures = Vec::new();
    for output in &found {
        pictures.push(model.fetch(&request(4), output, &fresh_budget()).await.unwrap().bytes);
    }
    pictures.dedup();
    assert_eq!(pictures.len(), 4, "four distinct images");
}

#[tokio::test]
async fn replicate_download_failure_of_one_output_is_transient() {
    let server = MockServer::start().await;
    let mut urls = outputs(&server, 1).await;
    urls.push(format!("{}/files/broken.png", server.uri()));
    Mock::given(method("GET"))
        .and(path("/files/broken.png"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p10", "succeeded", json!(urls))))
        .mount(&server)
        .await;
    let model = model(&server);
    let found = model.generate(&request(2), &fresh_budget(), &NoRunLog).await.unwrap();
    assert!(model.fetch(&request(2), &found[0], &fresh_budget()).await.is_ok());
    let err = model.fetch(&request(2), &found[1], &fresh_budget()).await.unwrap_err();
    assert!(matches!(err, ModelError::Transient { .. }), "{err:?}");
}

#[tokio::test]
async fn replicate_pinned_versions_use_the_predictions_endpoint() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .and(body_partial_json(
            json!({"version": "7762fd07", "input": {"width": 512, "height": 256}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p11", "succeeded", json!(urls))))
        .expect(1)
        .mount(&server)
        .await;
    let mut pinned = request(1);
    pinned.model = "stability-ai/sdxl:7762fd07".into();
    assert_eq!(
        model(&server)
            .generate(&pinned, &fresh_budget(), &NoRunLog)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn replicate_single_output_models_run_one_prediction_per_image() {
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-1.1-pro/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p12", "succeeded", json!(urls[0]))))
        .expect(3)
        .mount(&server)
        .await;
    let mut three = request(3);
    three.model = "black-forest-labs/flux-1.1-pro".into();
    assert_eq!(
        model(&server)
            .generate(&three, &fresh_budget(), &NoRunLog)
            .await
            .unwrap()
            .len(),
        3
    );
    let seeds: Vec<u64> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["input"]["seed"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seeds, [5, 6, 7], "each prediction its own seed");
}

/// Deployed, the token is a SecureString in SSM Parameter Store, read once at cold start; it is
/// never a plain environment variable of the function.
#[tokio::test]
async fn replicate_token_is_read_from_its_ssm_parameter() {
    use mediagen::runtime::{bootstrap, config::Config};
    let sdk = crate::helpers::sdk_config().await;
    let name = format!(
        "/mediagen-test/{:012x}/replicate-api-token",
        fastrand::u64(..) & 0xffff_ffff_ffff
    );
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let server = MockServer::start().await;
    let urls = outputs(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(SCHNELL))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(&server, "p-ssm", "succeeded", json!(urls))))
        .expect(1)
        .mount(&server)
        .await;
    let settings = |parameter: &str| {
        let vars: std::collections::HashMap<String, String> = [
            ("JOBS_TABLE", "jobs"),
            ("JOBS_QUEUE_URL", "http://queue"),
            ("MEDIA_BUCKET", "media"),
            ("MODEL_PROVIDER", "replicate"),
            ("ALLOW_LOCAL_URLS", "true"),
            ("REPLICATE_API_TOKEN_PARAMETER", parameter),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("REPLICATE_API_BASE_URL".to_owned(), format!("{}/v1", server.uri()))])
        .collect();
        Config::from_map(&vars).unwrap()
    };

    let model = bootstrap::image_model(&settings(&name), &sdk).await.unwrap();
    assert_eq!(
        model
            .generate(&request(1), &fresh_budget(), &NoRunLog)
            .await
            .unwrap()
            .len(),
        1
    );

    let err = bootstrap::image_model(&settings("/mediagen-test/none"), &sdk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("REPLICATE_API_TOKEN_PARAMETER"), "{err}");
    assert!(err.contains("ParameterNotFound"), "SSM's own reason is kept: {err}");
    assert!(!err.contains(TOKEN), "{err}");
}
