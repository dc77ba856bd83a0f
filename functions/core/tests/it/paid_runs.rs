//! The paid runs of a job on Replicate, through `generate` and the sweeper with the real store,
//! queue and bucket, against a stand-in of Replicate's predictions API that keeps its
//! predictions' state (docs/design.md, "Image models", "Failure rules"): a run is never paid for
//! twice, and a job that ends without success leaves no run going.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::helpers::{MAX_RECEIVE_COUNT, OWNER, Stack, json_of, record, request, sqs_event, sqs_event_due_in};
use chrono::Utc;
use lambda_http::http::Method;
use mediagen::adapters::image_model::local;
use mediagen::adapters::image_model::replicate::{ReplicateModel, ReplicateSettings};
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::{GenerateRequest, RequestPolicy};
use mediagen::domain::job::{Job, JobError, JobStatus};
use mediagen::domain::keys::Owner;
use mediagen::domain::retry::Backoff;
use mediagen::domain::secret::Secret;
use mediagen::entrypoints::http;
use mediagen::entrypoints::sqs;
use mediagen::ports::{Cancel, JobQueue, JobStore};
use mediagen::services::generate::{GenerateSettings, Generator};
use serde_json::{Value, json};
use url::Url;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "r8_paid_runs_test_token";
/// An invocation's deadline: 11 s of budget once `generate` keeps its reserve back, just over the
/// Replicate model's least (10 s). An attempt leaves a prediction still running after about 9 s
/// (its create's wait, then its polls).
const INVOCATION: Duration = Duration::from_secs(22);

/// One prediction as Replicate documents its lifecycle: `starting` while the model boots,
/// `processing` while it runs, then `succeeded`; `canceled` if a cancel came before it ended.
struct Prediction {
    input: Value,
    created: Instant,
    canceled: bool,
}

struct Predictions {
    base: OnceLock<String>,
    /// How long a prediction boots (answers `starting`), then runs (answers `processing`).
    boot: Duration,
    run: Duration,
    creates: AtomicUsize,
    all: Mutex<HashMap<String, Prediction>>,
}

impl Predictions {
    fn status(&self, prediction: &Prediction) -> &'static str {
        let age = prediction.created.elapsed();
        if prediction.canceled {
            "canceled"
        } else if age < self.boot {
            "starting"
        } else if age < self.boot + self.run {
            "processing"
        } else {
            "succeeded"
        }
    }

    fn body(&self, id: &str, prediction: &Prediction) -> Value {
        let base = self.base.get().map_or("", String::as_str);
        let status = self.status(prediction);
        let extension = prediction.input["output_format"].as_str().unwrap_or("webp");
        let output = (status == "succeeded").then(|| json!([format!("{base}/files/{id}/0.{extension}")]));
        json!({
            "id": id,
            "status": status,
            "input": prediction.input,
            "output": output,
            "error": null,
            "urls": {
                "get": format!("{base}/v1/predictions/{id}"),
                "cancel": format!("{base}/v1/predictions/{id}/cancel"),
            },
        })
    }
}

/// The stand-in's state, shared with the test that reads it.
#[derive(Clone)]
struct FakeReplicate(Arc<Predictions>);

impl FakeReplicate {
    async fn start(boot: Duration) -> (Self, MockServer) {
        let fake = FakeReplicate(Arc::new(Predictions {
            base: OnceLock::new(),
            boot,
            run: Duration::from_millis(500),
            creates: AtomicUsize::new(0),
            all: Mutex::new(HashMap::new()),
        }));
        let server = MockServer::start().await;
        let _ = fake.0.base.set(server.uri());
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (fake, server)
    }

    fn creates(&self) -> usize {
        self.0.creates.load(Ordering::SeqCst)
    }

    /// Every prediction's status, by id.
    fn statuses(&self) -> HashMap<String, &'static str> {
        let all = self.0.all.lock().unwrap();
        all.iter().map(|(id, p)| (id.clone(), self.0.status(p))).collect()
    }
}

impl Respond for FakeReplicate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path: Vec<&str> = request.url.path().trim_matches('/').split('/').collect();
        if let ["files", id, name] = path[..] {
            let all = self.0.all.lock().unwrap();
            let Some(prediction) = all.get(id) else {
                return ResponseTemplate::new(404);
            };
            let extension = name.rsplit('.').next().unwrap_or("webp");
            let format = OutputFormat::parse(extension).unwrap_or(OutputFormat::Webp);
            let picture = GenerateRequest {
                prompt: prediction.input["prompt"].as_str().unwrap_or_default().to_owned(),
                negative_prompt: None,
                model: "fake".into(),
                width: 256,
                height: 256,
                num_outputs: 1,
                seed: 1,
                output_format: format,
                webhook_url: None,
            };
            let image = local::render(&picture, 0).unwrap();
            return ResponseTemplate::new(200).set_body_raw(image.bytes, format.content_type());
        }
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
        if !authorized {
            return ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token.", "status": 401}));
        }
        let mut all = self.0.all.lock().unwrap();
        match (request.method.as_str(), &path[..]) {
            ("POST", ["v1", "models", _, _, "predictions"]) => {
                let input = serde_json::from_slice::<Value>(&request.body).unwrap()["input"].clone();
                let n = self.0.creates.fetch_add(1, Ordering::SeqCst);
                let id = format!("fake{n:04}");
                let prediction = Prediction {
                    input,
                    created: Instant::now(),
                    canceled: false,
                };
                let body = self.0.body(&id, &prediction);
                all.insert(id, prediction);
                ResponseTemplate::new(201).set_body_json(body)
            }
            ("GET", ["v1", "predictions", id]) => match all.get(*id) {
                Some(prediction) => ResponseTemplate::new(200).set_body_json(self.0.body(id, prediction)),
                None => ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found.", "status": 404})),
            },
            ("POST", ["v1", "predictions", id, "cancel"]) => match all.get_mut(*id) {
                Some(prediction) => {
                    // A prediction already over stays as it ended.
                    if matches!(self.0.status(prediction), "starting" | "processing") {
                        prediction.canceled = true;
                    }
                    ResponseTemplate::new(200).set_body_json(self.0.body(id, prediction))
                }
                None => ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found.", "status": 404})),
            },
            _ => ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found.", "status": 404})),
        }
    }
}

fn model(server: &MockServer) -> ReplicateModel {
    ReplicateModel::new(ReplicateSettings {
        api_base_url: Url::parse(&format!("{}/v1", server.uri())).unwrap(),
        token: Secret::new(TOKEN),
        allow_local_urls: true,
        max_output_bytes: 10 * 1024 * 1024,
    })
    .unwrap()
}

/// A flux-schnell job written and queued as `submit` leaves it.
async fn queued(stack: &Stack) -> Job {
    let policy = RequestPolicy {
        catalogue: mediagen::domain::catalogue::Catalogue::parse(
            mediagen::domain::catalogue::BUILT_IN,
            &[mediagen::domain::catalogue::Provider::Replicate],
        )
        .unwrap(),
        allow_local_urls: true,
    };
    let body = json!({"prompt": "a lighthouse", "width": 512, "height": 512, "output_format": "png"});
    let request = GenerateRequest::parse(&body, &policy).unwrap();
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

/// One delivery of the job's message, as its `receive`th receive, to an invocation with
/// [`INVOCATION`] left: whether it was reported for another try. No delivery may hold its
/// invocation for a slow model (docs/design.md, "Slow models").
async fn deliver_with(stack: &Stack, server: &MockServer, job: &Job, receive: u32, settings: GenerateSettings) -> bool {
    let body = json!({"job_id": job.id.to_string()}).to_string();
    deliver_records(stack, server, vec![record("m", &body, receive)], settings).await
}

/// The same for records as the queue gave them out.
async fn deliver_records(
    stack: &Stack,
    server: &MockServer,
    records: Vec<aws_lambda_events::sqs::SqsMessage>,
    settings: GenerateSettings,
) -> bool {
    let event = sqs_event_due_in(records, INVOCATION);
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        model(server),
        stack.notifier(),
        settings,
    );
    let began = Instant::now();
    let response = sqs::handle(&generator, event).await;
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "a delivery held its invocation {:?}",
        began.elapsed()
    );
    !response.batch_item_failures.is_empty()
}

fn settings() -> GenerateSettings {
    let mut settings = GenerateSettings::new(MAX_RECEIVE_COUNT, Duration::from_secs(86_400));
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 3);
    settings
}

async fn deliver(stack: &Stack, server: &MockServer, job: &Job, receive: u32) -> bool {
    deliver_with(stack, server, job, receive, settings()).await
}

/// Waits out the lease of a job left `processing` while its model runs, as its next look's
/// delayed message does.
async fn until_looked_at_again(stack: &Stack, queued: &Job) {
    let lease = job(stack, queued).await.lease_until.unwrap();
    let wait = (lease - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
}

async fn job(stack: &Stack, job: &Job) -> Job {
    stack.store().job(job.id).await.unwrap().unwrap()
}

/// A model whose cold boot outlasts an attempt's polling: the attempt leaves the prediction
/// running, noted on the job, which stays `processing` with a message to look again; a later
/// attempt collects it. One prediction is paid for, and no receive is spent on the wait.
#[tokio::test]
async fn a_prediction_booting_longer_than_an_attempt_ends_succeeded_paid_once() {
    let stack = Stack::new().await;
    let (fake, server) = FakeReplicate::start(Duration::from_secs(13)).await;
    let queued = queued(&stack).await;

    assert!(
        !deliver(&stack, &server, &queued, 1).await,
        "the message is done with: a delayed one looks again"
    );
    let waiting = job(&stack, &queued).await;
    assert_eq!(waiting.status, JobStatus::Processing);
    assert_eq!(waiting.predictions.len(), 1);
    assert_eq!(fake.statuses()[&waiting.predictions[0]], "starting");

    let mut looks = 1;
    while job(&stack, &queued).await.status == JobStatus::Processing {
        assert!(looks < 6, "the job never ended");
        until_looked_at_again(&stack, &queued).await;
        assert!(!deliver(&stack, &server, &queued, 1).await);
        looks += 1;
    }
    let done = job(&stack, &queued).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.predictions, waiting.predictions);
    assert_eq!(fake.creates(), 1, "each look resumed the first one's prediction");
    assert_eq!(stack.object_keys(&format!("media/{}/", queued.id)).await.len(), 1);
}

/// A cancel while the model runs: the next look ends the job `canceled` and cancels its
/// prediction at Replicate, which stops running (and billing).
#[tokio::test]
async fn a_canceled_job_has_its_running_prediction_canceled() {
    let stack = Stack::new().await;
    let (fake, server) = FakeReplicate::start(Duration::from_secs(600)).await;
    let queued = queued(&stack).await;

    assert!(!deliver(&stack, &server, &queued, 1).await);
    let answer = stack.store().cancel(queued.id, Utc::now()).await.unwrap();
    assert!(matches!(answer, Cancel::Requested(_)), "{answer:?}");
    let predictions = job(&stack, &queued).await.predictions;
    assert_eq!(fake.statuses()[&predictions[0]], "starting");

    until_looked_at_again(&stack, &queued).await;
    assert!(!deliver(&stack, &server, &queued, 1).await);
    assert_eq!(job(&stack, &queued).await.status, JobStatus::Canceled);
    assert_eq!(fake.statuses()[&predictions[0]], "canceled");
    assert_eq!(fake.creates(), 1);
}

/// A job canceled while it waits in the queue, with a prediction an earlier attempt left running
/// (that attempt then failed transiently): the cancel sends the job a message at once, whose
/// delivery finds it final and cancels the prediction, rather than leaving it to run and bill
/// until the job's own delayed message comes back.
#[tokio::test]
async fn a_job_canceled_while_queued_has_its_running_prediction_canceled_at_once() {
    let stack = Stack::new().await;
    let (fake, server) = FakeReplicate::start(Duration::from_secs(600)).await;
    let queued = queued(&stack).await;
    assert_eq!(stack.receive(60).await.len(), 1, "the job's first message");
    assert!(!deliver(&stack, &server, &queued, 1).await);
    let running = job(&stack, &queued).await;
    let released = stack
        .store()
        .release(
            &running,
            &JobError::new("transient_error", "storage was briefly unavailable"),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(released, mediagen::ports::Transition::Applied);
    assert!(stack.receive(0).await.is_empty(), "the job's own message is held back");

    let cancel = request(Method::POST, &format!("/media/jobs/{}/cancel", queued.id), None, "");
    let response = http::submit::handle(&stack.submit_api(), cancel).await;
    assert_eq!(response.status(), 200, "{}", json_of(&response));
    assert_eq!(fake.statuses()[&running.predictions[0]], "starting");

    let sent = stack.receive(60).await;
    assert_eq!(sent.len(), 1, "one message, at once");
    let named: Value = serde_json::from_str(sent[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(named["job_id"], queued.id.to_string());
    assert!(!deliver_records(&stack, &server, sent, settings()).await);
    assert_eq!(fake.statuses()[&running.predictions[0]], "canceled");
}

/// A model that runs past the job's longest model time: the job fails `model_timeout`, and its
/// prediction is canceled rather than left to run for nobody.
#[tokio::test]
async fn a_model_running_past_its_time_fails_the_job_and_its_prediction_is_canceled() {
    let stack = Stack::new().await;
    let (fake, server) = FakeReplicate::start(Duration::from_secs(600)).await;
    let queued = queued(&stack).await;

    let mut settings = settings();
    settings.max_model_time = Duration::ZERO;
    assert!(!deliver_with(&stack, &server, &queued, 1, settings).await);
    let failed = job(&stack, &queued).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "model_timeout");
    assert_eq!(failed.predictions.len(), 1);
    assert_eq!(fake.statuses()[&failed.predictions[0]], "canceled");
}

/// A job whose message reached the dead-letter queue with a prediction still running (its last
/// receive found no worker to run it): the sweeper fails it and cancels the prediction.
#[tokio::test]
async fn a_stranded_job_failed_by_the_sweeper_has_its_prediction_canceled() {
    let stack = Stack::new().await;
    let (fake, server) = FakeReplicate::start(Duration::from_secs(600)).await;
    let queued = queued(&stack).await;
    assert!(!deliver(&stack, &server, &queued, 1).await);
    let predictions = job(&stack, &queued).await.predictions;
    assert_eq!(fake.statuses()[&predictions[0]], "starting");

    let dead = stack.exhaust_to_dead_letters().await;
    until_looked_at_again(&stack, &queued).await;
    let response = sqs::dead_letters(&stack.sweeper_with(model(&server)), sqs_event(dead)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(job(&stack, &queued).await.status, JobStatus::Failed);
    assert_eq!(fake.statuses()[&predictions[0]], "canceled");
}
