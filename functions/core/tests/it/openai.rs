//! Contract tests of the OpenAI adapter against a local mock of `POST /v1/images/generations`,
//! answering as OpenAI's API reference shows: base64 images, several in one answer or one a call,
//! sizes fitted, throttling, server errors, timeouts, the content filter, a bad key.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mediagen::adapters::image_model::local;
use mediagen::adapters::image_model::openai::{OpenAiModel, OpenAiSettings};
use mediagen::domain::catalogue::{ModelEntry, Provider};
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::{GenerateRequest, RequestPolicy};
use mediagen::domain::retry::Budget;
use mediagen::domain::secret::Secret;
use mediagen::ports::ModelError;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "sk-proj-contract-test-token";
const GENERATIONS: &str = "/v1/images/generations";

fn model(server: &MockServer, token: &str) -> OpenAiModel {
    OpenAiModel::new(OpenAiSettings {
        api_base_url: Url::parse(&format!("{}/v1", server.uri())).unwrap(),
        token: Secret::new(token),
        allow_local_urls: true,
    })
    .unwrap()
}

fn entry(provider_model: &str, sizes: &[&str], max_outputs: u32) -> ModelEntry {
    ModelEntry {
        name: format!("openai/{provider_model}"),
        provider: Provider::OpenAi,
        provider_model: provider_model.into(),
        sizes: sizes.iter().map(|s| s.parse().unwrap()).collect(),
        formats: vec![OutputFormat::Png, OutputFormat::Jpg, OutputFormat::Webp],
        max_outputs,
        price_per_image: 42_000,
        price_source: "https://openai.com/api/pricing/".into(),
        fallback: Vec::new(),
        rate_per_minute: None,
    }
}

fn gpt_image_1() -> ModelEntry {
    entry("gpt-image-1", &["1024x1024", "1536x1024", "1024x1536"], 10)
}

fn dall_e_3() -> ModelEntry {
    entry("dall-e-3", &["1024x1024", "1792x1024", "1024x1792"], 1)
}

fn request(width: u32, height: u32, num_outputs: u32, format: &str) -> GenerateRequest {
    // Any size and format: the adapter is what holds a request to the model's (its entry's) sizes.
    let policy = RequestPolicy {
        catalogue: crate::helpers::local_catalogue(),
        allow_local_urls: true,
    };
    GenerateRequest::parse(
        &json!({"prompt": "a lighthouse", "width": width, "height": height, "num_outputs": num_outputs, "output_format": format}),
        &policy,
    )
    .unwrap()
}

/// A real image, base64-encoded as `b64_json` carries it (small: the size asked is the mock's
/// concern, not the adapter's, which reads the size from the bytes).
fn b64_image(format: OutputFormat, index: u32) -> String {
    let mut picture = request(256, 256, 1, "png");
    picture.output_format = format;
    STANDARD.encode(local::render(&picture, index).unwrap().bytes)
}

/// An answer as the API reference shows it for a GPT image model.
fn gpt_answer(count: u32, format: OutputFormat) -> Value {
    let data: Vec<Value> = (0..count).map(|n| json!({"b64_json": b64_image(format, n)})).collect();
    json!({
        "created": 1_713_833_628,
        "data": data,
        "background": "opaque",
        "output_format": "png",
        "quality": "high",
        "size": "1024x1024",
        "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
                  "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}},
    })
}

/// An answer as the API reference shows it for `dall-e-3` with `response_format: b64_json`.
fn dall_e_answer() -> Value {
    json!({
        "created": 1_713_833_628,
        "data": [{"b64_json": b64_image(OutputFormat::Png, 0), "revised_prompt": "A tall lighthouse at dusk."}],
    })
}

fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30))
}

fn transient(err: &ModelError) -> bool {
    matches!(err, ModelError::Transient { .. })
}

#[tokio::test]
async fn openai_gpt_image_success_sends_key_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "gpt-image-1", "prompt": "a lighthouse", "n": 1, "size": "1024x1024", "output_format": "png"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(gpt_answer(1, OutputFormat::Png)))
        .expect(1)
        .mount(&server)
        .await;

    let images = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        (images[0].format, images[0].width, images[0].height),
        (OutputFormat::Png, 256, 256)
    );
}

#[tokio::test]
async fn openai_jpg_is_asked_as_jpeg_and_read_from_the_bytes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .and(body_partial_json(json!({"output_format": "jpeg"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(gpt_answer(1, OutputFormat::Jpg)))
        .expect(1)
        .mount(&server)
        .await;
    let images = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "jpg"), &budget())
        .await
        .unwrap();
    assert_eq!(images[0].format, OutputFormat::Jpg);
}

#[tokio::test]
async fn openai_two_images_of_gpt_image_1_are_one_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .and(body_partial_json(json!({"model": "gpt-image-1", "n": 2})))
        .respond_with(ResponseTemplate::new(200).set_body_json(gpt_answer(2, OutputFormat::Png)))
        .expect(1)
        .mount(&server)
        .await;
    let images = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 2, "png"), &budget())
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
    assert_ne!(images[0].bytes, images[1].bytes);
}

#[tokio::test]
async fn openai_two_images_of_dall_e_3_are_two_calls_of_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .and(body_json(json!({
            "model": "dall-e-3", "prompt": "a lighthouse", "n": 1, "size": "1024x1024", "response_format": "b64_json"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(dall_e_answer()))
        .expect(2)
        .mount(&server)
        .await;
    let images = model(&server, TOKEN)
        .generate(&dall_e_3(), &request(1024, 1024, 2, "png"), &budget())
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
}

#[tokio::test]
async fn openai_a_size_is_mapped_to_the_nearest_the_model_makes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .and(body_partial_json(json!({"size": "1536x1024"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(gpt_answer(1, OutputFormat::Png)))
        .expect(1)
        .mount(&server)
        .await;
    model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1440, 960, 1, "png"), &budget())
        .await
        .unwrap();

    // A shape the model does not make is refused before any call.
    let err = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1440, 512, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Permanent { ref code, .. } if code == "invalid_size"),
        "{err:?}"
    );
}

#[tokio::test]
async fn openai_a_rejected_request_is_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(ResponseTemplate::new(400).set_body_json(openai_error(
            "Invalid value: '1536x1024'. Supported values are: '1024x1024', '1024x1792', and '1792x1024'.",
            "invalid_request_error",
            Some("invalid_value"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let err = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    match err {
        ModelError::Permanent { code, message } => {
            assert_eq!(code, "model_rejected_input");
            assert!(message.contains("Supported values"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn openai_the_content_filter_is_permanent_with_openais_message() {
    let server = MockServer::start().await;
    let filtered = "Your request was rejected as a result of our safety system.";
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(ResponseTemplate::new(400).set_body_json(openai_error(
            filtered,
            "image_generation_user_error",
            Some("content_policy_violation"),
        )))
        .mount(&server)
        .await;
    let err = model(&server, TOKEN)
        .generate(&dall_e_3(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::Permanent {
            code: "content_filtered".into(),
            message: filtered.into()
        }
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(ResponseTemplate::new(400).set_body_json(openai_error(
            "Your request was rejected by the safety system.",
            "image_generation_user_error",
            Some("moderation_blocked"),
        )))
        .mount(&server)
        .await;
    let err = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Permanent { ref code, .. } if code == "content_filtered"),
        "{err:?}"
    );
}

#[tokio::test]
async fn openai_throttling_is_transient_with_the_delay_asked() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "20")
                .set_body_json(openai_error(
                    "Rate limit reached for gpt-image-1 on images per minute (IPM): Limit 5, Used 5.",
                    "requests",
                    Some("rate_limit_exceeded"),
                )),
        )
        .mount(&server)
        .await;
    let err = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert!(transient(&err), "{err:?}");
    assert_eq!(
        mediagen::domain::retry::Transient::retry_after(&err),
        Some(Duration::from_secs(20))
    );
}

#[tokio::test]
async fn openai_server_errors_are_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(ResponseTemplate::new(500).set_body_json(openai_error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )))
        .mount(&server)
        .await;
    let err = model(&server, TOKEN)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert!(transient(&err), "{err:?}");
}

#[tokio::test]
async fn openai_a_call_is_cut_off_by_the_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(gpt_answer(1, OutputFormat::Png))
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = model(&server, TOKEN)
        .generate(
            &gpt_image_1(),
            &request(1024, 1024, 1, "png"),
            &Budget::new(Duration::from_secs(4)),
        )
        .await
        .unwrap_err();
    assert!(transient(&err), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // Too little budget to try: transient at once, no call made.
    let calls = server.received_requests().await.unwrap().len();
    let err = model(&server, TOKEN)
        .generate(
            &gpt_image_1(),
            &request(1024, 1024, 1, "png"),
            &Budget::new(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(transient(&err), "{err:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), calls);
}

#[tokio::test]
async fn openai_a_malformed_answer_is_transient() {
    for body in [
        ResponseTemplate::new(200).set_body_string("<html>upstream</html>"),
        ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": []})),
        ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": [{"url": "https://example.com/a.png"}]})),
        ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": [{"b64_json": "not base64!"}]})),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(GENERATIONS))
            .respond_with(body)
            .mount(&server)
            .await;
        let err = model(&server, TOKEN)
            .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
            .await
            .unwrap_err();
        assert!(transient(&err), "{err:?}");
    }
}

#[tokio::test]
async fn openai_a_bad_key_is_configuration_and_never_echoed() {
    let server = MockServer::start().await;
    let wrong = "sk-proj-wrong-key-abcd";
    Mock::given(method("POST"))
        .and(path(GENERATIONS))
        .respond_with(ResponseTemplate::new(401).set_body_json(openai_error(
            &format!(
                "Incorrect API key provided: {wrong}. Also sk-proj*************abcd. You can find your API key at https://platform.openai.com/account/api-keys."
            ),
            "invalid_request_error",
            Some("invalid_api_key"),
        )))
        .mount(&server)
        .await;
    let err = model(&server, wrong)
        .generate(&gpt_image_1(), &request(1024, 1024, 1, "png"), &budget())
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Configuration { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong) && !text.contains("abcd"), "{text}");
}
