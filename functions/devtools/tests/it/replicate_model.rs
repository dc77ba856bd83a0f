//! The whole path with `MODEL_PROVIDER=replicate`, through the real `generate` function, against
//! the stand-in Replicate API (`mediagen-dev mock-replicate`) that `scripts/test.sh` starts.

use std::time::Duration;

use crate::client;
use mediagen_devtools::mock_replicate::{FAILURE_MARKER, FAILURE_MESSAGE, size_of};
use serde_json::json;

#[tokio::test]
#[ignore = "needs the local stack with the Replicate model; scripts/test.sh runs it"]
async fn replicate_job_ends_succeeded_with_its_images_copied_to_our_bucket() {
    let client = client();
    let accepted = client
        .submit(&json!({"prompt": "a red fox, replicate", "width": 768, "height": 512, "num_outputs": 2, "output_format": "webp"}))
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    let mut seen = Vec::new();
    let status = client
        .wait(job_id, Duration::from_secs(120), |s| seen.push(s["status"].clone()))
        .await
        .unwrap();
    assert_eq!(status["status"], "succeeded", "{status}");

    let job = client.job(job_id).await.unwrap();
    assert_eq!(job["model"], "black-forest-labs/flux-schnell");
    let media = job["media"].as_array().unwrap();
    assert_eq!(media.len(), 2);
    // 768×512 maps to the 3:2 aspect ratio; the model decides the pixels.
    let (width, height) = size_of("3:2");
    for item in media {
        assert_eq!(item["content_type"], "image/webp");
        let downloaded = client.download(item).await.unwrap();
        let decoded = image::load_from_memory(&downloaded.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (width, height));
        assert_eq!(
            (item["width"].as_u64(), item["height"].as_u64()),
            (Some(width.into()), Some(height.into()))
        );
    }
}

#[tokio::test]
#[ignore = "needs the local stack with the Replicate model; scripts/test.sh runs it"]
async fn replicate_failed_prediction_fails_the_job_with_the_models_reason() {
    let client = client();
    let accepted = client
        .submit(&json!({"prompt": format!("a forbidden picture {FAILURE_MARKER}"), "width": 512, "height": 512}))
        .await
        .unwrap();
    let job_id = accepted["job_id"].as_str().unwrap();
    let status = client.wait(job_id, Duration::from_secs(120), |_| {}).await.unwrap();
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["code"], "model_failed");
    assert_eq!(status["error"]["message"], FAILURE_MESSAGE);
    assert_eq!(status["attempts"], 1, "a permanent failure is not retried");
}
