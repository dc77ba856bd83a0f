//! The catalogue's models behind one `ImageModel` (docs/design.md, "Image models", "Fallback"):
//! a job runs on its model's provider, falls back to the next model while that provider is down,
//! never on the model's verdict on its input, and records each model tried and its cost.

use std::time::Duration;

use mediagen::adapters::image_model::replicate::{ReplicateModel, ReplicateSettings};
use mediagen::adapters::image_model::{Models, local::LocalModel};
use mediagen::domain::catalogue::{Catalogue, Provider};
use mediagen::domain::generation::{GenerateRequest, RequestPolicy};
use mediagen::domain::ids::JobId;
use mediagen::domain::job::{Job, JobStatus};
use mediagen::domain::keys::Owner;
use mediagen::domain::retry::Backoff;
use mediagen::domain::secret::Secret;
use mediagen::entrypoints::sqs;
use mediagen::ports::{JobQueue, JobStore};
use mediagen::services::generate::{GenerateSettings, Generator};
use serde_json::json;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{OWNER, Stack, record, sqs_event, sqs_event_due_in};

/// flux-dev on Replicate, falling back to the local model.
const CATALOGUE: &str = r#"
default = "local"

[[models]]
name = "black-forest-labs/flux-dev"
provider = "replicate"
price_usd = 0.025
price_source = "test"
fallback = ["local"]

[[models]]
name = "local"
provider = "local"
price_usd = 0.001
price_source = "test"
"#;

fn catalogue() -> Catalogue {
    Catalogue::parse(CATALOGUE, &[Provider::Local, Provider::Replicate]).unwrap()
}

fn models(server: &MockServer) -> Models {
    let replicate = ReplicateModel::new(ReplicateSettings {
        api_base_url: Url::parse(&format!("{}/v1", server.uri())).unwrap(),
        token: Secret::new("r8_models_test"),
        allow_local_urls: true,
        max_output_bytes: 1024 * 1024,
    })
    .unwrap();
    Models {
        catalogue: catalogue(),
        local: LocalModel,
        replicate: Some(replicate),
        openai: None,
        #[cfg(feature = "bedrock")]
        bedrock: None,
    }
}

fn settings(catalogue: Catalogue) -> GenerateSettings {
    let mut settings = GenerateSettings {
        catalogue,
        ..GenerateSettings::new(3, Duration::from_secs(86_400))
    };
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 2);
    settings.fallback_retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 2);
    settings
}

async fn run(stack: &Stack, server: &MockServer) -> Job {
    let policy = RequestPolicy {
        catalogue: catalogue(),
        allow_local_urls: true,
    };
    let body = json!({"prompt": "a kite", "model": "black-forest-labs/flux-dev", "width": 256, "height": 256});
    let request = GenerateRequest::parse(&body, &policy).unwrap();
    let mut job = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        chrono::Utc::now(),
        Duration::from_secs(86_400),
    );
    job.price_per_image = 25_000;
    stack.store().create(&job, None).await.unwrap();
    stack.queue().enqueue(job.id).await.unwrap();
    let messages = stack.receive(30).await;
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        models(server),
        stack.notifier(),
        settings(catalogue()),
    );
    sqs::handle(&generator, sqs_event(messages)).await;
    stored(stack, job.id).await
}

async fn stored(stack: &Stack, id: JobId) -> Job {
    stack.store().job(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_provider_answering_5xx_falls_back_to_the_next_model_and_the_job_shows_both_attempts() {
    let stack = Stack::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"detail": "down"})))
        .expect(2..)
        .mount(&server)
        .await;

    let job = run(&stack, &server).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let tried: Vec<(&str, &str)> = job
        .model_attempts
        .iter()
        .map(|a| (a.model.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        tried,
        [
            ("black-forest-labs/flux-dev", "model_unavailable"),
            ("local", "succeeded")
        ]
    );
    // The price of the model that made the image, not of the one asked for, plus a small AWS share.
    let cost = job.cost_microdollars.unwrap();
    assert!((1_000..2_000).contains(&cost), "{cost}");
    assert_eq!(job.media_ids.len(), 1);
}

#[tokio::test]
async fn a_models_verdict_on_the_input_is_final_and_never_falls_back() {
    let stack = Stack::new().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"detail": "prompt refused"})))
        .expect(1)
        .mount(&server)
        .await;

    let job = run(&stack, &server).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 1);
    assert!(
        job.model_attempts.is_empty(),
        "a failed job records no attempts: {:?}",
        job.model_attempts
    );
    assert!(job.error.unwrap().message.contains("prompt refused"));
}

/// flux-dev falling back to flux-schnell, both on Replicate.
const TWO_REPLICATE_MODELS: &str = r#"
[[models]]
name = "black-forest-labs/flux-dev"
provider = "replicate"
price_usd = 0.025
price_source = "test"
fallback = ["black-forest-labs/flux-schnell"]

[[models]]
name = "black-forest-labs/flux-schnell"
provider = "replicate"
price_usd = 0.003
price_source = "test"
"#;

/// A fallback's prediction still running at the end of a look is taken up by that fallback at
/// the next look: the job's own model is not asked again, nor another prediction paid for.
#[tokio::test]
async fn a_fallbacks_running_prediction_is_collected_by_the_fallback_at_the_next_look() {
    let stack = Stack::new().await;
    let server = MockServer::start().await;
    let catalogue = Catalogue::parse(TWO_REPLICATE_MODELS, &[Provider::Replicate]).unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-dev/predictions"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"detail": "down"})))
        .expect(2)
        .mount(&server)
        .await;
    let prediction = |status: &str, output: serde_json::Value| {
        json!({"id": "p1", "status": status, "output": output, "error": null, "urls": {
            "get": format!("{}/v1/predictions/p1", server.uri()),
            "cancel": format!("{}/v1/predictions/p1/cancel", server.uri())}})
    };
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-schnell/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("starting", serde_json::Value::Null)))
        .expect(1)
        .mount(&server)
        .await;
    // Running for the first look's polls, done by the second look.
    let started = std::time::Instant::now();
    let (running, done) = (
        prediction("processing", serde_json::Value::Null),
        prediction("succeeded", json!([format!("{}/files/0.png", server.uri())])),
    );
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(move |_: &wiremock::Request| {
            let body = if started.elapsed() < Duration::from_secs(7) {
                &running
            } else {
                &done
            };
            ResponseTemplate::new(200).set_body_json(body.clone())
        })
        .mount(&server)
        .await;
    let mut picture = GenerateRequest::parse(
        &json!({"prompt": "x", "width": 256, "height": 256}),
        &RequestPolicy {
            catalogue: crate::helpers::local_catalogue(),
            allow_local_urls: true,
        },
    )
    .unwrap();
    picture.output_format = mediagen::domain::format::OutputFormat::Png;
    let png = mediagen::adapters::image_model::local::render(&picture, 0)
        .unwrap()
        .bytes;
    Mock::given(method("GET"))
        .and(path("/files/0.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png, "image/png"))
        .mount(&server)
        .await;

    let policy = RequestPolicy {
        catalogue: catalogue.clone(),
        allow_local_urls: true,
    };
    let body = json!({"prompt": "a kite", "model": "black-forest-labs/flux-dev", "width": 256, "height": 256});
    let request = GenerateRequest::parse(&body, &policy).unwrap();
    let job = Job::new(
        Owner::parse(OWNER).unwrap(),
        request,
        chrono::Utc::now(),
        Duration::from_secs(86_400),
    );
    stack.store().create(&job, None).await.unwrap();
    let mut models = models(&server);
    models.catalogue = catalogue.clone();
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        models,
        stack.notifier(),
        settings(catalogue),
    );
    let message = json!({"job_id": job.id.to_string()}).to_string();
    let deliver = || {
        sqs::handle(
            &generator,
            sqs_event_due_in(vec![record("m", &message, 1)], Duration::from_secs(22)),
        )
    };

    assert!(deliver().await.batch_item_failures.is_empty());
    let waiting = stored(&stack, job.id).await;
    assert_eq!(waiting.status, JobStatus::Processing);
    assert_eq!(waiting.runs_model.as_deref(), Some("black-forest-labs/flux-schnell"));
    let lease = waiting.lease_until.unwrap();
    tokio::time::sleep((lease - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200)).await;
    while started.elapsed() < Duration::from_secs(7) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(deliver().await.batch_item_failures.is_empty());
    let done = stored(&stack, job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    // Both looks' models, each once: the second look did not ask flux-dev again.
    let tried: Vec<(&str, &str)> = done
        .model_attempts
        .iter()
        .map(|a| (a.model.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        tried,
        [
            ("black-forest-labs/flux-dev", "model_unavailable"),
            ("black-forest-labs/flux-schnell", "succeeded")
        ]
    );
}

/// The local model, limited to 60 creates a minute: a slot a second.
const LIMITED_LOCAL: &str = r#"
[providers.local]
rate_per_minute = 60

[[models]]
name = "local"
provider = "local"
price_usd = 0.0
price_source = "test"
"#;

/// Reservations at once get slots spaced at the rate, the first now; a pause moves the next past it.
#[tokio::test]
async fn a_providers_slots_are_spaced_at_its_rate_across_workers_and_a_pause_holds_them() {
    use mediagen::domain::catalogue::ProviderLimit;
    use mediagen::ports::ProviderGate;
    let stack = Stack::new().await;
    let store = stack.store();
    let limit = ProviderLimit { rate_per_minute: 120 };
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap();
    let reservations = (0..10).map(|_| store.reserve("replicate", limit, 1, now));
    let mut slots: Vec<i64> = futures::future::join_all(reservations)
        .await
        .into_iter()
        .map(|slot| (slot.unwrap() - now).num_milliseconds())
        .collect();
    slots.sort_unstable();
    assert_eq!(
        slots,
        (0..10).map(|k| k * 500).collect::<Vec<_>>(),
        "half a second apart, the first now"
    );

    let until = now + chrono::Duration::seconds(30);
    store.pause("replicate", until).await.unwrap();
    let next = store.reserve("replicate", limit, 2, now).await.unwrap();
    assert_eq!(next, until);
    let after = store.reserve("replicate", limit, 1, now).await.unwrap();
    assert_eq!((after - until).num_milliseconds(), 1000, "two creates take two slots");
}

/// Jobs past the provider's rate wait for their slots without holding a worker or spending a
/// receive, and then run.
#[tokio::test]
async fn jobs_past_a_providers_rate_wait_for_their_slots_and_then_run() {
    let stack = Stack::new().await;
    let catalogue = Catalogue::parse(LIMITED_LOCAL, &[Provider::Local]).unwrap();
    let policy = RequestPolicy {
        catalogue: catalogue.clone(),
        allow_local_urls: true,
    };
    let mut jobs = Vec::new();
    for prompt in ["one", "two", "three"] {
        let request = GenerateRequest::parse(&json!({"prompt": prompt, "width": 256, "height": 256}), &policy).unwrap();
        let job = Job::new(
            Owner::parse(OWNER).unwrap(),
            request,
            chrono::Utc::now(),
            Duration::from_secs(86_400),
        );
        stack.store().create(&job, None).await.unwrap();
        jobs.push(job);
    }
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        LocalModel,
        stack.notifier(),
        settings(catalogue),
    )
    .with_gate(stack.store());
    let records: Vec<_> = jobs
        .iter()
        .map(|job| {
            record(
                &job.id.to_string(),
                &json!({"job_id": job.id.to_string()}).to_string(),
                1,
            )
        })
        .collect();
    let answer = sqs::handle(&generator, sqs_event(records)).await;
    assert!(answer.batch_item_failures.is_empty(), "no receive is spent waiting");

    let mut waiting = 0;
    for job in &jobs {
        let job = stored(&stack, job.id).await;
        match job.status {
            JobStatus::Succeeded => assert!(job.provider_slot.is_none()),
            JobStatus::Processing => {
                waiting += 1;
                let slot = job.provider_slot.unwrap();
                assert_eq!(slot.model, "local");
                let lease = job.lease_until.unwrap();
                assert!(
                    (lease - slot.at).num_milliseconds().abs() < 1_500,
                    "its lease ends near its slot"
                );
            }
            other => panic!("job {} is {other}", job.id),
        }
    }
    assert!(waiting >= 1, "three creates in a second, at one a second: some wait");
    // Each waiting job's message comes back at its slot.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let messages = stack.receive(30).await;
        if !messages.is_empty() {
            sqs::handle(&generator, sqs_event(messages)).await;
        }
        let mut done = 0;
        for job in &jobs {
            done += usize::from(stored(&stack, job.id).await.status == JobStatus::Succeeded);
        }
        if done == jobs.len() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the waiting jobs never ran");
}

/// A model of its own rate, 6 a minute: a slot every 10 s.
const LIMITED_MODEL: &str = r#"
[[models]]
name = "local-limited"
provider = "local"
model = "local"
rate_per_minute = 6
price_usd = 0.0
price_source = "test"
"#;

/// Past the longest wait, a submit is refused with 429 and Retry-After, and writes nothing; an
/// admitted job carries its estimated start.
#[tokio::test]
async fn a_submit_past_the_longest_wait_at_the_provider_is_refused_and_writes_nothing() {
    use mediagen::entrypoints::http;
    let stack = Stack::new().await;
    let catalogue = Catalogue::parse(LIMITED_MODEL, &[Provider::Local]).unwrap();
    let mut api = stack.submit_api();
    api.submit = mediagen::services::submit::SubmitService::new(
        stack.store(),
        stack.queue(),
        stack.notifier(),
        RequestPolicy {
            catalogue,
            allow_local_urls: true,
        },
        Duration::from_secs(86_400),
        Default::default(),
    )
    .with_longest_wait(Duration::from_secs(30));
    let (mut admitted, mut refused) = (Vec::new(), 0);
    for n in 0..8 {
        let body = json!({"prompt": format!("admission {n}"), "width": 256, "height": 256}).to_string();
        let response = http::submit::handle(&api, crate::helpers::post_generate(body)).await;
        match response.status().as_u16() {
            202 => admitted.push(
                crate::helpers::json_of(&response)["job_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            429 => {
                let problem = crate::helpers::assert_problem(&response, 429);
                assert!(
                    problem["type"].as_str().unwrap().ends_with("provider-backlog"),
                    "{problem}"
                );
                let retry_after: u64 = crate::helpers::header_of(&response, "retry-after")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=10).contains(&retry_after), "{retry_after}");
                refused += 1;
            }
            other => panic!("submit answered {other}"),
        }
    }
    // Slots at 0, 10, 20 and 30 s are within the 30 s; the fifth would start at 40 s.
    assert_eq!((admitted.len(), refused), (4, 4));
    let page = stack
        .store()
        .list(
            &Owner::parse(OWNER).unwrap(),
            &mediagen::domain::listing::ListQuery::parse([]).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 4, "the refused submits wrote no job");
    let last = stack
        .store()
        .job(JobId::parse(&admitted[3]).unwrap())
        .await
        .unwrap()
        .unwrap();
    let slot = last.provider_slot.unwrap();
    let ahead = (slot.at - last.created_at).num_seconds();
    assert!(
        (28..=31).contains(&ahead),
        "the fourth job starts about 30 s on: {ahead}"
    );
}
