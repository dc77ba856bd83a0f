//! The whole path over HTTP, against the local stack that `scripts/test.sh` starts: submit →
//! `generate` through the SQS stand-in → status until `succeeded` → follow `content` → download
//! → decode. Ignored by a plain `cargo test`, which has no stack to talk to.

use std::time::Duration;

use serde_json::json;

#[tokio::test]
#[ignore = "needs the local stack; scripts/test.sh runs it"]
async fn a_submitted_job_ends_as_downloadable_images_of_the_requested_size() {
    let client = crate::client();
    let accepted = client
        .submit(
            &json!({"prompt": "end to end", "width": 640, "height": 384, "num_outputs": 2, "output_format": "webp"}),
        )
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    assert_eq!(accepted["status"], "queued");

    let mut seen = Vec::new();
    let status = client
        .wait(job_id, Duration::from_secs(120), |s| seen.push(s["status"].clone()))
        .await
        .unwrap();
    assert_eq!(status["status"], "succeeded", "{status}");
    // The pump may pick the job up before the first poll: then it is seen `processing`.
    assert!(
        matches!(seen.first().and_then(|s| s.as_str()), Some("queued" | "processing")),
        "polling starts before the job is done: {seen:?}"
    );

    let job = client.job(job_id).await.unwrap();
    let media = job["media"].as_array().unwrap();
    assert_eq!(media.len(), 2);
    let mut downloads = Vec::new();
    for item in media {
        let downloaded = client.download(item).await.unwrap();
        assert_eq!(
            image::guess_format(&downloaded.bytes).unwrap(),
            image::ImageFormat::WebP
        );
        let decoded = image::load_from_memory(&downloaded.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 384));
        assert_eq!(downloaded.bytes.len() as u64, item["bytes"].as_u64().unwrap());
        downloads.push(downloaded.bytes);
    }
    assert_ne!(downloads[0], downloads[1], "each output is its own image");
}

#[tokio::test]
#[ignore = "needs the local stack; scripts/test.sh runs it"]
async fn bad_input_over_http_is_a_problem_not_a_server_error() {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/media/generate", crate::api_url()))
        .bearer_auth(crate::api_key())
        .json(&json!({"prompt": "a", "width": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "width");

    for (path, status) in [("/no/such/route", 404), ("/media/status/not-an-id", 400)] {
        let response = http
            .get(format!("{}{path}", crate::api_url()))
            .bearer_auth(crate::api_key())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
}

/// `scripts/test.sh` then checks that neither this key nor the stack's own is in the logs.
#[tokio::test]
#[ignore = "needs the local stack; scripts/test.sh runs it"]
async fn a_refused_key_is_401_and_not_echoed() {
    let refused = "mgk_refusedrefusedrefusedrefused1234";
    let response = reqwest::Client::new()
        .post(format!("{}/media/generate", crate::api_url()))
        .bearer_auth(refused)
        .json(&json!({"prompt": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = response.text().await.unwrap();
    assert!(!body.contains(refused), "{body}");
}
