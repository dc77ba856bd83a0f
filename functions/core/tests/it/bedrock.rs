//! Contract tests of the Bedrock adapter against a local stand-in for the Bedrock runtime, called
//! through the real SDK client: the path and headers of `InvokeModel`, one call per image, and
//! how each kind of answer maps onto a `ModelError`.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use base64::Engine;
use mediagen::adapters::aws;
use mediagen::adapters::image_model::bedrock::BedrockModel;
use mediagen::adapters::image_model::local;
use mediagen::domain::catalogue::{ModelEntry, Provider};
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::{GenerateRequest, RequestPolicy};
use mediagen::domain::retry::Budget;
use mediagen::ports::ModelError;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, header_regex, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CORE: &str = "stability.stable-image-core-v1:1";
/// `InvokeModel`'s path for [`CORE`]: the SDK percent-encodes the `:` of the model id.
const CORE_PATH: &str = "/model/stability.stable-image-core-v1%3A1/invoke";

async fn sdk(server: &MockServer) -> SdkConfig {
    aws::loader()
        .http_client(aws::fresh_http_client())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(server.uri())
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDTEST", "secret", None, None, "tests",
        ))
        .load()
        .await
}

async fn model(server: &MockServer) -> BedrockModel {
    BedrockModel::new(&sdk(server).await)
}

fn entry(provider_model: &str) -> ModelEntry {
    ModelEntry {
        name: "stable-image-core".into(),
        provider: Provider::Bedrock,
        provider_model: provider_model.into(),
        sizes: Vec::new(),
        formats: OutputFormat::ALL.to_vec(),
        max_outputs: 1,
        price_per_image: 40_000,
        price_source: "tests".into(),
        fallback: Vec::new(),
        rate_per_minute: None,
    }
}

fn request(num_outputs: u32) -> GenerateRequest {
    let policy = RequestPolicy {
        catalogue: mediagen::domain::catalogue::Catalogue::parse(
            mediagen::domain::catalogue::BUILT_IN,
            &[mediagen::domain::catalogue::Provider::Bedrock],
        )
        .unwrap(),
        allow_local_urls: true,
    };
    GenerateRequest::parse(
        &json!({"model": "stable-image-core", "prompt": "a lighthouse", "width": 1024, "height": 576,
                "num_outputs": num_outputs, "seed": 5, "output_format": "png"}),
        &policy,
    )
    .unwrap()
}

/// A Stability answer carrying a real PNG of `width`×`height`.
fn answer(width: u32, height: u32, seed: u32) -> Value {
    let mut picture = request(1);
    (picture.width, picture.height, picture.output_format) = (width, height, OutputFormat::Png);
    let png = local::render(&picture, seed).unwrap().bytes;
    json!({
        "seeds": [seed],
        "finish_reasons": [null],
        "images": [base64::engine::general_purpose::STANDARD.encode(png)],
    })
}

/// An AWS JSON error answer, as the runtime sends them.
fn aws_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", kind)
        .set_body_raw(json!({ "message": message }).to_string(), "application/json")
}

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30))
}

async fn failure(server: &MockServer, response: ResponseTemplate) -> ModelError {
    Mock::given(method("POST"))
        .and(path(CORE_PATH))
        .respond_with(response)
        .mount(server)
        .await;
    model(server)
        .await
        .generate(&entry(CORE), &request(1), &budget())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn bedrock_success_signs_the_call_and_answers_the_image() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CORE_PATH))
        .and(header("content-type", "application/json"))
        .and(header("accept", "application/json"))
        .and(header_regex(
            "authorization",
            "^AWS4-HMAC-SHA256 Credential=AKIDTEST/[0-9]{8}/us-east-1/bedrock/aws4_request",
        ))
        .and(body_partial_json(json!({
            "prompt": "a lighthouse", "seed": 5, "aspect_ratio": "16:9", "output_format": "png"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(1344, 768, 5)))
        .expect(1)
        .mount(&server)
        .await;

    let images = model(&server)
        .await
        .generate(&entry(CORE), &request(1), &budget())
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].format, OutputFormat::Png);
    assert_eq!((images[0].width, images[0].height), (1344, 768));

    let received = &server.received_requests().await.unwrap()[0];
    assert_eq!(received.url.path(), CORE_PATH, "the model id's `:` is percent-encoded");
    let body: Value = serde_json::from_slice(&received.body).unwrap();
    assert!(body.get("mode").is_none(), "Stable Image Core takes no mode: {body}");
}

#[tokio::test]
async fn bedrock_sd35_is_called_text_to_image_at_its_own_path() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/model/stability.sd3-5-large-v1%3A0/invoke"))
        .and(body_partial_json(
            json!({"mode": "text-to-image", "output_format": "jpeg"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(1024, 1024, 5)))
        .expect(1)
        .mount(&server)
        .await;
    let mut jpeg = request(1);
    jpeg.output_format = OutputFormat::Jpg;
    // The stand-in answers a PNG: the format is read from the bytes, not taken from the request.
    let images = model(&server)
        .await
        .generate(&entry("stability.sd3-5-large-v1:0"), &jpeg, &budget())
        .await
        .unwrap();
    assert_eq!(images[0].format, OutputFormat::Png);
}

#[tokio::test]
async fn bedrock_two_outputs_are_two_calls_with_successive_seeds() {
    let server = MockServer::start().await;
    for seed in [5, 6] {
        Mock::given(method("POST"))
            .and(path(CORE_PATH))
            .and(body_partial_json(json!({ "seed": seed })))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer(256, 256, seed)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let images = model(&server)
        .await
        .generate(&entry(CORE), &request(2), &budget())
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
    assert_ne!(images[0].bytes, images[1].bytes);
}

#[tokio::test]
async fn bedrock_content_filtered_is_permanent_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CORE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "seeds": [5], "finish_reasons": ["Filter reason: prompt"], "images": [null]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = model(&server)
        .await
        .generate(&entry(CORE), &request(2), &budget())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Permanent { ref code, .. } if code == "content_filtered"),
        "{err:?}"
    );
}

#[tokio::test]
async fn bedrock_validation_error_is_permanent() {
    let server = MockServer::start().await;
    let err = failure(
        &server,
        aws_error(400, "ValidationException", "prompt: must not be empty"),
    )
    .await;
    assert!(
        matches!(err, ModelError::Permanent { ref code, ref message } if code == "model_rejected_input" && message.contains("must not be empty")),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bedrock_throttling_is_transient_and_left_to_our_retries() {
    let server = MockServer::start().await;
    let err = failure(&server, aws_error(429, "ThrottlingException", "Too many requests")).await;
    assert!(
        matches!(err, ModelError::Transient { ref message, retry_after: None } if message.contains("ThrottlingException")),
        "{err:?}"
    );
    // The SDK's own retries are off: the generate service retries within its budget.
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bedrock_server_errors_are_transient() {
    for (status, kind) in [
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
        (429, "ServiceQuotaExceededException"),
        (429, "ModelNotReadyException"),
        (502, "BadGateway"),
    ] {
        let server = MockServer::start().await;
        let err = failure(&server, aws_error(status, kind, "try again")).await;
        assert!(matches!(err, ModelError::Transient { .. }), "{kind}: {err:?}");
    }
}

#[tokio::test]
async fn bedrock_access_denied_and_unknown_models_are_configuration() {
    for (status, kind) in [
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (403, "UnrecognizedClientException"),
        (403, "InvalidSignatureException"),
    ] {
        let server = MockServer::start().await;
        let err = failure(&server, aws_error(status, kind, "You don't have access to the model")).await;
        assert!(matches!(err, ModelError::Configuration { .. }), "{kind}: {err:?}");
    }
}

#[tokio::test]
async fn bedrock_malformed_answer_is_transient() {
    for body in ["<html>gateway</html>", r#"{"images": ["%%%"]}"#] {
        let server = MockServer::start().await;
        let err = failure(
            &server,
            ResponseTemplate::new(200).set_body_raw(body, "application/json"),
        )
        .await;
        assert!(
            matches!(err, ModelError::Transient { ref message, .. } if message.contains("malformed")),
            "{body}: {err:?}"
        );
    }
}

#[tokio::test]
async fn bedrock_slow_call_is_cut_at_the_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CORE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer(256, 256, 5))
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&server)
        .await;
    let model = model(&server).await;
    let started = Instant::now();
    // 3 s are kept back: the call has 1.5 s.
    let err = model
        .generate(&entry(CORE), &request(1), &Budget::new(Duration::from_millis(4500)))
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Transient { .. }), "{err:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn bedrock_no_call_without_time_for_one() {
    let server = MockServer::start().await;
    let err = model(&server)
        .await
        .generate(&entry(CORE), &request(1), &Budget::new(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Transient { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn bedrock_webp_from_sd35_is_refused_before_any_call() {
    let server = MockServer::start().await;
    let mut webp = request(1);
    webp.output_format = OutputFormat::Webp;
    let err = model(&server)
        .await
        .generate(&entry("stability.sd3-5-large-v1:0"), &webp, &budget())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Permanent { ref code, .. } if code == "invalid_output_format"),
        "{err:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
