//! A stand-in for the Amazon Bedrock runtime's `InvokeModel` with Stability's models, for the
//! end-to-end run of the real `generate` function against Bedrock (its SDK pointed here by
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). It behaves like the real service where `generate`
//! depends on it: `POST /model/{modelId}/invoke` signed with SigV4 (the header's presence is
//! checked, not the signature), a JSON body in Stability's shape, and an answer with one real
//! image (drawn by the local renderer) at a size of the requested aspect ratio, in the requested
//! format. A prompt containing [`FILTER_MARKER`] is withheld as the content filter withholds
//! one; one containing [`DOWN_MARKER`] fails with a server error, every time.
//! `GET /` answers 200 (health) and `GET /calls` how many invocations it has had.

use std::net::TcpListener;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use mediagen::adapters::image_model::local;
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::GenerateRequest;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A prompt with this is withheld: `finish_reasons: ["Filter reason: prompt"]`.
pub const FILTER_MARKER: &str = "[filtered]";
/// The finish reason a filtered prompt is answered with.
pub const FILTER_REASON: &str = "Filter reason: prompt";
/// A prompt with this is answered 500 `InternalServerException`, every time.
pub const DOWN_MARKER: &str = "[down]";

/// The size the stand-in makes for each of Stability's aspect ratios (about a megapixel, sides
/// multiples of 64, as Stability's models make them).
pub fn size_of(aspect_ratio: &str) -> Option<(u32, u32)> {
    Some(match aspect_ratio {
        "1:1" => (1024, 1024),
        "16:9" => (1344, 768),
        "9:16" => (768, 1344),
        "21:9" => (1536, 640),
        "9:21" => (640, 1536),
        "3:2" => (1216, 832),
        "2:3" => (832, 1216),
        "5:4" => (1088, 896),
        "4:5" => (896, 1088),
        _ => return None,
    })
}

/// An AWS JSON error answer: the error's name in `x-amzn-ErrorType`, its message in the body.
fn aws_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", kind)
        .set_body_raw(json!({ "message": message }).to_string(), "application/json")
}

fn invalid(message: &str) -> ResponseTemplate {
    aws_error(400, "ValidationException", message)
}

#[derive(Debug, PartialEq, Eq)]
enum BedrockPath {
    Health,
    Calls,
    Invoke,
}

static BEDROCK_PATHS: LazyLock<matchit::Router<BedrockPath>> = LazyLock::new(|| {
    crate::path_router(
        "mock-bedrock",
        [
            ("/", BedrockPath::Health),
            ("/calls", BedrockPath::Calls),
            ("/model/{model_id}/invoke", BedrockPath::Invoke),
        ],
    )
});

#[derive(Default)]
struct FakeBedrock {
    invocations: AtomicU64,
}

impl FakeBedrock {
    fn invoke(&self, model_id: &str, request: &Request) -> ResponseTemplate {
        let signed = request
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes().starts_with(b"AWS4-HMAC-SHA256"));
        if !signed {
            return aws_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            );
        }
        self.invocations.fetch_add(1, Ordering::Relaxed);
        // The path's model id is percent-encoded (`stability.sd3-5-large-v1%3A0`).
        let model_id = model_id.replace("%3A", ":").replace("%3a", ":");
        if !model_id.contains("stability.") {
            return invalid("The provided model identifier is invalid.");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return invalid("Malformed input request, please reformat your input and try again.");
        };
        let Some(prompt) = body["prompt"].as_str() else {
            return invalid("Malformed input request: #: required key [prompt] not found");
        };
        if prompt.contains(DOWN_MARKER) {
            return aws_error(500, "InternalServerException", "Internal server error");
        }
        let seed = body["seed"].as_u64().unwrap_or(0);
        if prompt.contains(FILTER_MARKER) {
            return ResponseTemplate::new(200).set_body_json(json!({
                "seeds": [seed],
                "finish_reasons": [FILTER_REASON],
                "images": [null],
            }));
        }
        let format = match body["output_format"].as_str().unwrap_or("png") {
            "png" => OutputFormat::Png,
            "jpeg" => OutputFormat::Jpg,
            "webp" if !model_id.contains("stability.sd3") => OutputFormat::Webp,
            other => return invalid(&format!("output_format: {other} is not a supported format")),
        };
        let Some((width, height)) = size_of(body["aspect_ratio"].as_str().unwrap_or("1:1")) else {
            return invalid("aspect_ratio: must be one of 16:9, 1:1, 21:9, 2:3, 3:2, 4:5, 5:4, 9:16, 9:21");
        };
        let picture = GenerateRequest {
            prompt: prompt.to_owned(),
            negative_prompt: body["negative_prompt"].as_str().map(str::to_owned),
            model: model_id,
            width,
            height,
            num_outputs: 1,
            seed: u32::try_from(seed).unwrap_or(0),
            output_format: format,
            webhook_url: None,
        };
        match local::render(&picture, 0) {
            Ok(image) => ResponseTemplate::new(200).set_body_json(json!({
                "seeds": [seed],
                "finish_reasons": [null],
                "images": [base64::engine::general_purpose::STANDARD.encode(image.bytes)],
            })),
            Err(err) => aws_error(500, "InternalServerException", &err.to_string()),
        }
    }
}

impl Respond for FakeBedrock {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(matched) = BEDROCK_PATHS.at(request.url.path()) else {
            return aws_error(404, "UnknownOperationException", "Not found");
        };
        match (request.method.as_str(), matched.value) {
            ("GET", BedrockPath::Health) => ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})),
            ("GET", BedrockPath::Calls) => ResponseTemplate::new(200)
                .set_body_json(json!({"invocations": self.invocations.load(Ordering::Relaxed)})),
            ("POST", BedrockPath::Invoke) => self.invoke(matched.params.get("model_id").unwrap_or_default(), request),
            _ => aws_error(404, "UnknownOperationException", "Not found"),
        }
    }
}

/// Serves the stand-in on `listener` until the returned server is dropped.
pub async fn serve(listener: TcpListener) -> MockServer {
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(FakeBedrock::default())
        .mount(&server)
        .await;
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00";

    async fn started() -> MockServer {
        serve(TcpListener::bind(("127.0.0.1", 0)).unwrap()).await
    }

    async fn invoke(server: &MockServer, model: &str, body: Value) -> (u16, Option<String>, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/model/{model}/invoke", server.uri()))
            .header("authorization", SIGNED)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, kind, response.json().await.unwrap())
    }

    fn decoded(answer: &Value) -> image::DynamicImage {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer["images"][0].as_str().unwrap())
            .unwrap();
        image::load_from_memory(&bytes).unwrap()
    }

    #[test]
    fn every_ratio_has_a_size_of_its_shape() {
        for ratio in ["16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"] {
            let (w, h) = size_of(ratio).unwrap();
            let (rw, rh) = ratio.split_once(':').unwrap();
            let wanted = rw.parse::<f64>().unwrap() / rh.parse::<f64>().unwrap();
            assert!(
                (f64::from(w) / f64::from(h) / wanted - 1.0).abs() < 0.1,
                "{ratio}: {w}x{h}"
            );
        }
        assert_eq!(size_of("4:3"), None);
    }

    #[tokio::test]
    async fn answers_an_image_of_the_ratio_in_the_format() {
        let server = started().await;
        let (status, _, answer) = invoke(
            &server,
            "stability.stable-image-core-v1%3A1",
            json!({"prompt": "a fox", "seed": 4, "aspect_ratio": "16:9", "output_format": "jpeg"}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["seeds"], json!([4]));
        assert_eq!(answer["finish_reasons"], json!([null]));
        let picture = decoded(&answer);
        assert_eq!((picture.width(), picture.height()), (1344, 768));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer["images"][0].as_str().unwrap())
            .unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Jpeg);

        let (status, kind, _) = invoke(
            &server,
            "stability.sd3-5-large-v1%3A0",
            json!({"prompt": "a fox", "output_format": "webp", "mode": "text-to-image"}),
        )
        .await;
        assert_eq!((status, kind.as_deref()), (400, Some("ValidationException")));
    }

    #[tokio::test]
    async fn markers_filter_or_fail_and_calls_are_counted() {
        let server = started().await;
        let (status, _, answer) = invoke(
            &server,
            "stability.stable-image-ultra-v1%3A1",
            json!({"prompt": format!("a fox {FILTER_MARKER}")}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["finish_reasons"], json!([FILTER_REASON]));
        assert_eq!(answer["images"], json!([null]));
        for _ in 0..2 {
            let (status, kind, _) = invoke(
                &server,
                "stability.stable-image-ultra-v1%3A1",
                json!({"prompt": format!("a fox {DOWN_MARKER}")}),
            )
            .await;
            assert_eq!((status, kind.as_deref()), (500, Some("InternalServerException")));
        }
        let calls: Value = reqwest::get(format!("{}/calls", server.uri()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(calls, json!({"invocations": 3}));
    }

    #[tokio::test]
    async fn unsigned_calls_are_refused_and_health_answers() {
        let server = started().await;
        let response = reqwest::Client::new()
            .post(format!(
                "{}/model/stability.stable-image-core-v1%3A1/invoke",
                server.uri()
            ))
            .json(&json!({"prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
        let health = reqwest::get(format!("{}/", server.uri())).await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
        let calls: Value = reqwest::get(format!("{}/calls", server.uri()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(calls["invocations"], 0);
    }
}
