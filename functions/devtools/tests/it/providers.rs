//! Every provider through the real functions, against their stand-ins (`scripts/providers.sh`):
//! a job per provider ends with that provider's images and its cost, a provider down falls back
//! to the next model, a 120 s model holds no invocation, a cancel reaches the provider, a
//! content filter fails the job once (docs/models.md), and 600 jobs keep to the provider's rate
//! without one failing (docs/design.md, "Provider limits").

use std::time::Duration;

use crate::{client, until};
use futures::StreamExt;
use serde_json::{Value, json};

/// The stand-in's address, set by `scripts/providers.sh`.
fn mock(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: set by scripts/providers.sh"))
}

/// Submits `body` and waits for the job to end; answers the whole job.
async fn run(body: Value, timeout: Duration) -> Value {
    let client = client();
    let accepted = client.submit(&body).await.unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    client.wait(job_id, timeout, |_| {}).await.unwrap();
    client.job(job_id).await.unwrap()
}

/// The job's images, downloaded and decoded: their sizes.
async fn sizes(job: &Value) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for item in job["media"].as_array().unwrap() {
        let downloaded = client().download(item).await.unwrap();
        let decoded = image::load_from_memory(&downloaded.bytes).unwrap();
        sizes.push((decoded.width(), decoded.height()));
    }
    sizes
}

/// A succeeded job's cost: the model's price for its images, and a share of AWS under a cent.
fn assert_cost(job: &Value, price_per_image: f64) {
    let images = job["media"].as_array().unwrap().len() as f64;
    let cost = job["metrics"]["cost_usd"].as_f64().unwrap();
    assert!(
        cost >= price_per_image * images && cost < price_per_image * images + 0.01,
        "cost {cost} for {images} images at {price_per_image}: {job}"
    );
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn the_catalogue_lists_every_model_with_its_provider_and_price() {
    let models = client().models().await.unwrap();
    assert_eq!(models["object"], "list");
    let listed: Vec<(&str, &str)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["owned_by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("local", "local"),
            ("black-forest-labs/flux-schnell", "replicate"),
            ("flux-schnell-limited", "replicate"),
            ("local-limited", "local"),
            ("black-forest-labs/flux-dev", "replicate"),
            ("gpt-image-1", "openai"),
            ("stable-image-core", "bedrock"),
        ]
    );
    assert_eq!(models["data"][5]["price_per_image_usd"], 0.042);
    assert_eq!(models["data"][4]["fallback"], json!(["local"]));
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn each_provider_makes_the_jobs_images_at_its_price() {
    let local = run(
        json!({"prompt": "a lighthouse, locally", "model": "local", "width": 256, "height": 256}),
        Duration::from_secs(60),
    );
    let replicate = run(
        json!({"prompt": "a lighthouse, on replicate", "model": "black-forest-labs/flux-schnell", "num_outputs": 2}),
        Duration::from_secs(120),
    );
    let openai = run(
        json!({"prompt": "a lighthouse, by openai", "model": "gpt-image-1", "width": 1440, "height": 960, "num_outputs": 2, "output_format": "jpg"}),
        Duration::from_secs(120),
    );
    let bedrock = run(
        json!({"prompt": "a lighthouse, on bedrock", "model": "stable-image-core", "width": 1024, "height": 1024}),
        Duration::from_secs(120),
    );
    let (local, replicate, openai, bedrock) = tokio::join!(local, replicate, openai, bedrock);
    for job in [&local, &replicate, &openai, &bedrock] {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["model_attempts"].as_array().unwrap().len(), 1, "{job}");
    }
    assert_cost(&local, 0.0);
    assert_cost(&replicate, 0.003);
    assert_cost(&openai, 0.042);
    assert_cost(&bedrock, 0.04);
    // Each provider's own pictures: the sizes its stand-in makes, as the real API does.
    assert_eq!(sizes(&local).await, [(256, 256)]);
    assert_eq!(sizes(&replicate).await.len(), 2);
    assert_eq!(
        sizes(&openai).await,
        [(1536, 1024), (1536, 1024)],
        "1440x960 made at the nearest size gpt-image-1 makes"
    );
    assert_eq!(openai["media"][0]["content_type"], "image/jpeg");
    assert_eq!(sizes(&bedrock).await.len(), 1);
    for job in [&replicate, &openai, &bedrock] {
        assert_eq!(job["model_attempts"][0]["outcome"], "succeeded");
    }
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_provider_answering_5xx_falls_back_to_the_next_model() {
    let job = run(
        json!({"prompt": "a kite [down]", "model": "black-forest-labs/flux-dev", "width": 256, "height": 256}),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let tried: Vec<(&str, &str)> = job["model_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["model"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tried,
        [
            ("black-forest-labs/flux-dev", "model_unavailable"),
            ("local", "succeeded")
        ]
    );
    assert_cost(&job, 0.0);
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_model_running_120_s_ends_succeeded_and_no_invocation_lasts_over_10_s() {
    let job = run(
        json!({"prompt": "a cold model [slow:120]", "model": "black-forest-labs/flux-schnell"}),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let log = std::fs::read_to_string(mock("MEDIAGEN_PUMP_LOG")).unwrap();
    let durations: Vec<u64> = log
        .lines()
        .filter_map(|line| line.split("invocation ").nth(1)?.strip_suffix(" ms")?.parse().ok())
        .collect();
    assert!(
        durations.len() > 10,
        "the job was looked at again and again: {durations:?}"
    );
    let longest = durations.iter().max().copied().unwrap_or_default();
    assert!(longest <= 10_000, "an invocation of generate lasted {longest} ms");
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn canceling_a_processing_job_cancels_its_prediction_at_the_provider() {
    let client = client();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prompt = format!("a long one to cancel {stamp} [slow:600]");
    let accepted = client
        .submit(&json!({"prompt": prompt, "model": "black-forest-labs/flux-schnell"}))
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    let at_mock = async |list: &str| {
        let url = format!("{}/{list}", mock("REPLICATE_MOCK_URL"));
        let prompts: Vec<String> = reqwest::get(url).await.unwrap().json().await.unwrap();
        prompts.contains(&prompt)
    };
    // Canceled once its prediction runs. That can take minutes: beside the 600 jobs at the
    // stand-in's rate, its create waits for room at Replicate like any other.
    let every = Duration::from_millis(250);
    until(
        Duration::from_secs(400),
        every,
        "the job's prediction never ran",
        async || at_mock("running").await,
    )
    .await;
    client.cancel(job_id).await.unwrap();
    let status = client.wait(job_id, Duration::from_secs(60), |_| {}).await.unwrap();
    assert_eq!(status["status"], "canceled", "{status}");
    // The run is stopped just after the job's final write, which the wait may see first.
    until(
        Duration::from_secs(30),
        every,
        "the mock saw no cancel of the job's prediction",
        async || at_mock("canceled").await,
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_content_filtered_bedrock_answer_fails_the_job_once() {
    let job = run(
        json!({"prompt": "something forbidden [filtered]", "model": "stable-image-core"}),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "content_filtered", "{job}");
    assert_eq!(job["attempts"], 1, "a content filter is not retried");
}

/// The rate the stand-in Replicate keeps, and its burst (scripts/providers.sh).
const REPLICATE_RATE_PER_MINUTE: f64 = 120.0;
const REPLICATE_BURST: u64 = 20;

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn six_hundred_jobs_against_the_providers_rate_all_succeed_at_its_pace() {
    let client = client();
    let jobs: Vec<String> = futures::stream::iter(0..600)
        .map(|n| {
            let client = &client;
            async move {
                let body = json!({"prompt": format!("burst {n}"), "model": "flux-schnell-limited", "width": 256, "height": 256});
                client.submit(&body).await.unwrap()["job_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let mut ended = std::collections::HashMap::new();
    // Five minutes at the rate, and time for the last jobs to finish.
    let deadline = std::time::Instant::now() + Duration::from_secs(480);
    while ended.len() < jobs.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 600 jobs ended in time",
            ended.len()
        );
        let open: Vec<&String> = jobs.iter().filter(|id| !ended.contains_key(*id)).collect();
        for id in open {
            let status = client.status(id).await.unwrap();
            if let Some(final_status @ ("succeeded" | "failed" | "canceled")) = status["status"].as_str() {
                ended.insert(id.clone(), (final_status.to_owned(), status["error"].clone()));
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let failed: Vec<_> = ended.values().filter(|(status, _)| status != "succeeded").collect();
    assert!(failed.is_empty(), "none fails nor is dead-lettered: {failed:?}");

    let stats: Value = reqwest::get(format!("{}/stats", mock("REPLICATE_MOCK_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let most = stats["most_in_a_minute"].as_u64().unwrap();
    assert!(
        most <= REPLICATE_RATE_PER_MINUTE as u64 + REPLICATE_BURST,
        "the provider saw {most} creates in a minute: {stats}"
    );
    assert_eq!(stats["refused"], 0, "no create was refused: {stats}");
    let creates = stats["creates"].as_f64().unwrap();
    let span = stats["span_seconds"].as_f64().unwrap();
    let drain_per_minute = (creates - 1.0) / span * 60.0;
    assert!(
        drain_per_minute >= 0.9 * REPLICATE_RATE_PER_MINUTE,
        "drained at {drain_per_minute:.0} creates a minute: {stats}"
    );
    let report = json!({"stats": stats, "drain_per_minute": drain_per_minute});
    std::fs::write(mock("MEDIAGEN_RATE_REPORT"), report.to_string()).unwrap();
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn submits_past_the_longest_wait_at_the_provider_get_429_and_write_nothing() {
    let client = client();
    let http = reqwest::Client::new();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (mut admitted, mut refused) = (Vec::new(), 0);
    for n in 0..40 {
        let body =
            json!({"prompt": format!("admission {stamp} {n}"), "model": "local-limited", "width": 256, "height": 256});
        let response = http
            .post(format!("{}/media/generate", crate::api_url()))
            .bearer_auth(crate::api_key())
            .json(&body)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => {
                let job: Value = response.json().await.unwrap();
                admitted.push(job["job_id"].as_str().unwrap().to_owned());
            }
            429 => {
                let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry_after >= 1);
                let problem: Value = response.json().await.unwrap();
                assert!(
                    problem["type"].as_str().unwrap().ends_with("provider-backlog"),
                    "{problem}"
                );
                refused += 1;
            }
            other => panic!("submit answered {other}"),
        }
    }
    assert!(
        !admitted.is_empty() && refused > 0,
        "{} admitted, {refused} refused",
        admitted.len()
    );
    // Every admitted job is written and shows when it starts; the refused ones wrote nothing.
    let job = client.job(admitted.last().unwrap()).await.unwrap();
    assert!(job["estimated_start"].is_string(), "{job}");
    let mut written = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("{}/media/jobs?limit=100&cursor={cursor}", crate::api_url()),
            None => format!("{}/media/jobs?limit=100", crate::api_url()),
        };
        let page: Value = http
            .get(path)
            .bearer_auth(crate::api_key())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        written += page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|job| {
                job["prompt"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("admission {stamp} ")))
            })
            .count();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(written, admitted.len(), "jobs written equal the 202s");
}
