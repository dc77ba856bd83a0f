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
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{OWNER, Stack, sqs_event};

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
    let mut settings = GenerateSettings {
        catalogue: catalogue(),
        ..GenerateSettings::new(3, Duration::from_secs(86_400))
    };
    settings.retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 2);
    settings.fallback_retries = Backoff::new(Duration::from_millis(1), Duration::from_millis(5), 2);
    let generator = Generator::new(
        stack.store(),
        stack.queue(),
        stack.media(),
        models(server),
        stack.notifier(),
        settings,
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
