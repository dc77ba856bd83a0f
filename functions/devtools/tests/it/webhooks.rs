//! A webhook over the whole local stack: submit with a `webhook_url` → `generate` → the
//! deliveries queue → `deliver` through the second SQS stand-in → a receiver in this test, which
//! checks the signature with the owner's secret, as `mediagen-dev webhooks secret` gives it.
//! Ignored by a plain `cargo test`, which has no stack to talk to.

use std::time::{Duration, Instant};

use mediagen::domain::keys::Owner;
use mediagen::domain::secret::Secret;
use mediagen::domain::webhook::{MasterKey, SigningKey};
use mediagen::services::webhooks::SigningKeys;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
#[ignore = "needs the local stack; scripts/test.sh runs it"]
async fn a_finished_job_posts_a_signed_webhook() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let client = crate::client();
    let webhook_url = format!("{}/hook", receiver.uri());
    let accepted = client
        .submit(&json!({"prompt": "a signed heron", "width": 256, "height": 256, "webhook_url": webhook_url}))
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();

    let started = Instant::now();
    let post = loop {
        if let Some(post) = receiver.received_requests().await.unwrap().pop() {
            break post;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no webhook within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(
        (body["job_id"].as_str(), body["event"].as_str()),
        (Some(job_id), Some("completed"))
    );
    assert_eq!(body["status"], "succeeded");

    // What the owner's receiver does with the secret they were given.
    let master = std::env::var("WEBHOOK_SECRET").expect("WEBHOOK_SECRET: the local stack's, from scripts/local.env");
    let owner = std::env::var("MEDIAGEN_OWNER").unwrap_or_else(|_| "local".into());
    // The test run's owner is fresh (scripts/test.sh): never rotated, at generation 0.
    let given = SigningKeys::new(MasterKey::parse(&Secret::new(master)).unwrap())
        .signing_secret(&Owner::parse(&owner).unwrap(), 0);
    let header = |name: &str| post.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = SigningKey::parse(&given).unwrap().sign(
        header("webhook-id"),
        header("webhook-timestamp").parse().unwrap(),
        &post.body,
    );
    assert_eq!(header("webhook-signature"), expected);
}
