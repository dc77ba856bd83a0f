//! A stand-in for OpenAI's Images API, for the end-to-end run of the real `generate` function
//! with OpenAI models in the catalogue. It behaves like the real API where the adapter
//! (mediagen's adapters/image_model/openai.rs) depends on it: a bearer key, `POST
//! /v1/images/generations` answering `n` real images (drawn by the local renderer) at the size
//! and format asked, base64-encoded, the sizes and parameters each model family takes, errors in
//! OpenAI's shape. A prompt containing [`FILTERED_MARKER`] is refused by the content filter; one
//! containing [`DOWN_MARKER`] gets a 500 every time. `GET /` answers 200 (health) and `GET /calls`
//! counts the generation calls that passed the key check.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mediagen::adapters::image_model::local;
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::GenerateRequest;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const FILTERED_MARKER: &str = "[filtered]";
pub const FILTERED_MESSAGE: &str = "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.";
pub const DOWN_MARKER: &str = "[down]";
pub const DOWN_MESSAGE: &str = "The server had an error while processing your request. Sorry about that!";
pub const GENERATIONS_PATH: &str = "/v1/images/generations";
pub const CALLS_PATH: &str = "/calls";

/// The sizes a model family makes, as OpenAI's API reference lists them; `None` for a model the
/// mock does not know, which may ask any size.
fn sizes_of(model: &str) -> Option<&'static [&'static str]> {
    if model.starts_with("gpt-image") {
        Some(&["1024x1024", "1536x1024", "1024x1536"])
    } else if model == "dall-e-3" {
        Some(&["1024x1024", "1792x1024", "1024x1792"])
    } else if model == "dall-e-2" {
        Some(&["256x256", "512x512", "1024x1024"])
    } else {
        None
    }
}

fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"message": message, "type": kind, "param": param, "code": code}}))
}

fn invalid(message: &str, param: &str) -> ResponseTemplate {
    error(
        400,
        message,
        "invalid_request_error",
        Some(param),
        Some("invalid_value"),
    )
}

/// A key as OpenAI's 401 shows it: its first and last few characters.
fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "***".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// A `WxH` size, or `auto` (1024x1024).
fn parse_size(raw: &str) -> Option<(u32, u32)> {
    if raw == "auto" {
        return Some((1024, 1024));
    }
    let (w, h) = raw.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    ((64..=4096).contains(&w) && (64..=4096).contains(&h)).then_some((w, h))
}

struct FakeOpenAi {
    token: String,
    generations: AtomicU64,
}

impl FakeOpenAi {
    fn generate(&self, request: &Request) -> ResponseTemplate {
        let call = self.generations.fetch_add(1, Ordering::SeqCst);
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
                None,
            );
        };
        let Some(model) = body["model"].as_str() else {
            return invalid("you must provide a model parameter", "model");
        };
        let Some(prompt) = body["prompt"].as_str().filter(|p| !p.is_empty()) else {
            return invalid("Missing required parameter: 'prompt'.", "prompt");
        };
        if prompt.contains(DOWN_MARKER) {
            return error(500, DOWN_MESSAGE, "server_error", None, None);
        }
        let dall_e = model.starts_with("dall-e");
        let n = match &body["n"] {
            Value::Null => 1,
            value => match value.as_u64().filter(|n| (1..=10).contains(n)) {
                Some(n) => n as u32,
                None => return invalid("Invalid 'n': must be between 1 and 10.", "n"),
            },
        };
        if model == "dall-e-3" && n != 1 {
            return invalid("You must provide n=1 for this model.", "n");
        }
        let size = body["size"]
            .as_str()
            .unwrap_or(if dall_e { "1024x1024" } else { "auto" });
        let allowed = sizes_of(model);
        let known = (size == "auto" && !dall_e) || allowed.is_none_or(|sizes| sizes.contains(&size));
        let Some((width, height)) = parse_size(size).filter(|_| known) else {
            let supported = allowed.map(|s| s.join("', '")).unwrap_or_default();
            return invalid(
                &format!("Invalid value: '{size}'. Supported values are: '{supported}'."),
                "size",
            );
        };
        let format = if dall_e {
            if !body["output_format"].is_null() {
                return invalid("Unknown parameter: 'output_format'.", "output_format");
            }
            if body["response_format"].as_str() != Some("b64_json") {
                return invalid(
                    "This mock answers only response_format 'b64_json' for dall-e models.",
                    "response_format",
                );
            }
            OutputFormat::Png
        } else {
            if !body["response_format"].is_null() {
                return invalid("Unknown parameter: 'response_format'.", "response_format");
            }
            match body["output_format"].as_str().unwrap_or("png") {
                "png" => OutputFormat::Png,
                "jpeg" => OutputFormat::Jpg,
                "webp" => OutputFormat::Webp,
                other => {
                    return invalid(
                        &format!("Invalid value: '{other}'. Supported values are: 'png', 'jpeg', and 'webp'."),
                        "output_format",
                    );
                }
            }
        };
        if prompt.contains(FILTERED_MARKER) {
            let code = if dall_e {
                "content_policy_violation"
            } else {
                "moderation_blocked"
            };
            return error(400, FILTERED_MESSAGE, "image_generation_user_error", None, Some(code));
        }
        let picture = GenerateRequest {
            prompt: prompt.to_owned(),
            negative_prompt: None,
            model: model.to_owned(),
            width,
            height,
            num_outputs: n,
            // Calls differ, as the real model's pictures do.
            seed: call as u32,
            output_format: format,
            webhook_url: None,
        };
        let mut data = Vec::new();
        for index in 0..n {
            match local::render(&picture, index) {
                Ok(image) => {
                    let mut datum = json!({"b64_json": STANDARD.encode(image.bytes)});
                    if model == "dall-e-3" {
                        datum["revised_prompt"] = json!(prompt);
                    }
                    data.push(datum);
                }
                Err(err) => return error(500, &err.to_string(), "server_error", None, None),
            }
        }
        let created = chrono::Utc::now().timestamp();
        let answer = if dall_e {
            json!({"created": created, "data": data})
        } else {
            json!({
                "created": created,
                "data": data,
                "background": "opaque",
                "output_format": body["output_format"].as_str().unwrap_or("png"),
                "quality": "medium",
                "size": format!("{width}x{height}"),
                "usage": {"input_tokens": 10, "output_tokens": 1056 * n, "total_tokens": 10 + 1056 * n,
                          "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}},
            })
        };
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

impl Respond for FakeOpenAi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match (request.method.as_str(), request.url.path()) {
            ("GET", "/") => return ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
            ("GET", CALLS_PATH) => {
                let count = self.generations.load(Ordering::SeqCst);
                return ResponseTemplate::new(200).set_body_json(json!({"generations": count}));
            }
            _ => {}
        }
        let presented = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(key) if key == self.token => {}
            Some(key) => {
                return error(
                    401,
                    &format!(
                        "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                        masked(key)
                    ),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                );
            }
            None => {
                return error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                    None,
                );
            }
        }
        match (request.method.as_str(), request.url.path()) {
            ("POST", GENERATIONS_PATH) => self.generate(request),
            (method, path) => error(
                404,
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
        }
    }
}

/// Serves the fake API on `listener` until the returned server is dropped.
pub async fn serve(listener: TcpListener, token: String) -> MockServer {
    let fake = FakeOpenAi {
        token,
        generations: AtomicU64::new(0),
    };
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(fake)
        .mount(&server)
        .await;
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_keys() {
        assert_eq!(parse_size("1536x1024"), Some((1536, 1024)));
        assert_eq!(parse_size("auto"), Some((1024, 1024)));
        assert_eq!(parse_size("0x5"), None);
        assert_eq!(parse_size("big"), None);
        assert_eq!(masked("sk-proj-abcdefgh1234"), "sk-p************1234");
        assert_eq!(masked("short"), "***");
    }

    async fn post(server: &MockServer, token: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{GENERATIONS_PATH}", server.uri()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn answers_real_images_filters_fails_and_counts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = serve(listener, "sk-mock".into()).await;
        let (status, answer) = post(
            &server,
            "sk-mock",
            json!({"model": "gpt-image-1", "prompt": "a fox", "n": 2, "size": "1536x1024", "output_format": "jpeg"}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let data = answer["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        let bytes = STANDARD.decode(data[0]["b64_json"].as_str().unwrap()).unwrap();
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (1536, 1024));

        let (status, answer) = post(
            &server,
            "sk-mock",
            json!({"model": "dall-e-3", "prompt": "a fox", "n": 2, "size": "1024x1024", "response_format": "b64_json"}),
        )
        .await;
        assert_eq!((status, answer["error"]["param"].as_str()), (400, Some("n")));

        let (status, answer) = post(
            &server,
            "sk-mock",
            json!({"model": "dall-e-3", "prompt": "a [filtered] fox", "size": "1024x1024", "response_format": "b64_json"}),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("content_policy_violation"))
        );
        let (status, _) = post(&server, "sk-mock", json!({"model": "gpt-image-1", "prompt": "[down]"})).await;
        assert_eq!(status, 500);

        let (status, answer) = post(
            &server,
            "sk-wrong-key-0000",
            json!({"model": "gpt-image-1", "prompt": "x"}),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("invalid_api_key"))
        );

        let calls: Value = reqwest::get(format!("{}{CALLS_PATH}", server.uri()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(calls, json!({"generations": 4}));
        let health = reqwest::get(server.uri()).await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
    }
}
