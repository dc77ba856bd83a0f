//! A stand-in for the Replicate predictions API, for the end-to-end run of the real `generate`
//! function with `MODEL_PROVIDER=replicate`. It behaves like the real API where `generate`
//! depends on it: a bearer token, predictions that start, run and finish over a few polls,
//! output URLs to real images (drawn by the local renderer), cancel. A prompt containing
//! `[fail]` makes its prediction fail with a content-filter message; `[down]` makes its create
//! answer 503; `[slow:N]` makes it run N seconds (a cold model). `GET /running` answers the
//! prompts of the predictions running now, `GET /canceled` those canceled while they ran. With a rate, it keeps one as Replicate's
//! API does: a create past it answers 429 with `retry-after` and "resets in ~Ns"; `GET /stats`
//! tells how many creates it saw, the most in any minute, and how many it refused.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use mediagen::adapters::image_model::local;
use mediagen::domain::format::OutputFormat;
use mediagen::domain::generation::GenerateRequest;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const FAILURE_MARKER: &str = "[fail]";
pub const DOWN_MARKER: &str = "[down]";
/// `[slow:N]`: the prediction runs N seconds.
pub const SLOW_MARKER: &str = "[slow:";
pub const FAILURE_MESSAGE: &str = "NSFW content detected. Try running it again, or try a different prompt.";
/// Polls a prediction answers `processing` before it finishes.
const POLLS_TO_FINISH: u32 = 2;

#[derive(Debug, Clone)]
struct Prediction {
    input: Value,
    polls: u32,
    canceled: bool,
    created: std::time::Instant,
    /// How long a `[slow:N]` prediction runs.
    runs_for: Option<std::time::Duration>,
}

impl Prediction {
    fn finished(&self) -> bool {
        match self.runs_for {
            Some(runs_for) => self.created.elapsed() >= runs_for,
            None => self.polls >= POLLS_TO_FINISH,
        }
    }
}

/// The N of a `[slow:N]` prompt.
fn slow_seconds(prompt: &str) -> Option<u64> {
    let rest = &prompt[prompt.find(SLOW_MARKER)? + SLOW_MARKER.len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// Replicate's limit on creates: a token bucket of `burst` creates, refilled at the rate.
struct Limit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: std::time::Instant,
}

impl Limit {
    /// Takes a create's token, or answers how long until there is one.
    fn take(&mut self) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.per_second).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Every create the mock saw, and the ones it refused.
#[derive(Default)]
struct Creates {
    seen: Vec<std::time::Instant>,
    refused: u32,
}

impl Creates {
    /// The most creates seen in any 60 s.
    fn most_in_a_minute(&self) -> usize {
        let mut most = 0;
        let mut first = 0;
        for (last, at) in self.seen.iter().enumerate() {
            while at.duration_since(self.seen[first]) >= std::time::Duration::from_secs(60) {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }
}

struct FakeReplicate {
    limit: Option<Mutex<Limit>>,
    creates: Mutex<Creates>,
    token: String,
    base: Arc<OnceLock<String>>,
    predictions: Mutex<HashMap<String, Prediction>>,
}

impl FakeReplicate {
    fn base(&self) -> &str {
        self.base.get().map_or("", String::as_str)
    }

    fn body(&self, id: &str, prediction: &Prediction) -> Value {
        let fails = prediction.input["prompt"]
            .as_str()
            .is_some_and(|p| p.contains(FAILURE_MARKER));
        let (status, output, error) = if prediction.canceled {
            ("canceled", Value::Null, Value::Null)
        } else if prediction.polls == 0 && !prediction.finished() {
            ("starting", Value::Null, Value::Null)
        } else if !prediction.finished() {
            ("processing", Value::Null, Value::Null)
        } else if fails {
            ("failed", Value::Null, json!(FAILURE_MESSAGE))
        } else {
            let count = prediction.input["num_outputs"].as_u64().unwrap_or(1);
            let extension = prediction.input["output_format"].as_str().unwrap_or("webp");
            let urls: Vec<String> = (0..count)
                .map(|n| format!("{}/files/{id}/{n}.{extension}", self.base()))
                .collect();
            ("succeeded", json!(urls), Value::Null)
        };
        json!({
            "id": id,
            "status": status,
            "input": prediction.input,
            "output": output,
            "error": error,
            "urls": {
                "get": format!("{}/v1/predictions/{id}", self.base()),
                "cancel": format!("{}/v1/predictions/{id}/cancel", self.base()),
            },
        })
    }

    fn create(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return problem(400, "the body is not JSON");
        };
        let Some(prompt) = body["input"]["prompt"].as_str() else {
            return problem(422, "- input.prompt: prompt is required");
        };
        let mut creates = self.creates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        creates.seen.push(std::time::Instant::now());
        if let Some(limit) = &self.limit {
            let taken = limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            if let Err(wait) = taken {
                creates.refused += 1;
                let seconds = wait.as_secs() + 1;
                return problem(
                    429,
                    &format!("Request was throttled. Your rate limit resets in ~{seconds}s."),
                )
                .insert_header("retry-after", seconds.to_string().as_str());
            }
        }
        drop(creates);
        if prompt.contains(DOWN_MARKER) {
            return problem(503, "Service Unavailable");
        }
        let id = format!("mock{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
        let prediction = Prediction {
            input: body["input"].clone(),
            polls: 0,
            canceled: false,
            created: std::time::Instant::now(),
            runs_for: slow_seconds(prompt).map(std::time::Duration::from_secs),
        };
        let answer = self.body(&id, &prediction);
        self.lock().insert(id, prediction);
        ResponseTemplate::new(201).set_body_json(answer)
    }

    fn poll(&self, id: &str, cancel: bool) -> ResponseTemplate {
        let mut predictions = self.lock();
        let Some(prediction) = predictions.get_mut(id) else {
            return problem(404, "Not found.");
        };
        if cancel {
            // Replicate stops a prediction still starting or processing; one already over stays
            // as it ended (generate cancels every prediction of a job that did not succeed).
            if !prediction.finished() {
                prediction.canceled = true;
            }
        } else {
            prediction.polls += 1;
        }
        let answer = self.body(id, prediction);
        ResponseTemplate::new(200).set_body_json(answer)
    }

    fn file(&self, id: &str, name: &str) -> ResponseTemplate {
        let Some(prediction) = self.lock().get(id).cloned() else {
            return ResponseTemplate::new(404);
        };
        let (index, extension) = name.split_once('.').unwrap_or((name, "webp"));
        let format = OutputFormat::parse(extension).unwrap_or(OutputFormat::Webp);
        let (width, height) = size_of(prediction.input["aspect_ratio"].as_str().unwrap_or("1:1"));
        let picture = GenerateRequest {
            prompt: prediction.input["prompt"].as_str().unwrap_or_default().to_owned(),
            negative_prompt: None,
            model: "mock".into(),
            width,
            height,
            num_outputs: 1,
            seed: prediction.input["seed"].as_u64().unwrap_or(0) as u32,
            output_format: format,
            webhook_url: None,
        };
        match local::render(&picture, index.parse().unwrap_or(0)) {
            Ok(image) => ResponseTemplate::new(200).set_body_raw(image.bytes, format.content_type()),
            Err(err) => problem(500, &err.to_string()),
        }
    }

    /// What the mock saw of the creates.
    fn stats(&self) -> ResponseTemplate {
        let creates = self.creates.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let span = match (creates.seen.first(), creates.seen.last()) {
            (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
            _ => 0.0,
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "creates": creates.seen.len(),
            "refused": creates.refused,
            "most_in_a_minute": creates.most_in_a_minute(),
            "span_seconds": span,
        }))
    }

    /// The prompts of the predictions `which` holds for.
    fn prompts(&self, which: impl Fn(&Prediction) -> bool) -> ResponseTemplate {
        let prompts: Vec<Value> = self
            .lock()
            .values()
            .filter(|p| which(p))
            .map(|p| p.input["prompt"].clone())
            .collect();
        ResponseTemplate::new(200).set_body_json(prompts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Prediction>> {
        self.predictions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A picture of about a quarter megapixel in the given aspect ratio (sides multiples of 16).
pub fn size_of(aspect_ratio: &str) -> (u32, u32) {
    let (w, h) = aspect_ratio
        .split_once(':')
        .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
        .unwrap_or((1.0, 1.0));
    let side = |share: f64| ((512.0 * share / 16.0).round() as u32).max(1) * 16;
    (side((w / h).sqrt()), side((h / w).sqrt()))
}

fn problem(status: u16, detail: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"detail": detail, "status": status}))
}

/// The paths of Replicate's API that the mock serves, and its own file links.
#[derive(Debug, PartialEq, Eq)]
enum ReplicatePath {
    File,
    ModelPredictions,
    Predictions,
    Prediction,
    Cancel,
    /// The mock's own record of the predictions running now, for tests.
    Running,
    /// The mock's own record of the cancels, for tests.
    Canceled,
    /// The mock's own count of the creates, for tests.
    Stats,
}

static REPLICATE_PATHS: LazyLock<matchit::Router<ReplicatePath>> = LazyLock::new(|| {
    crate::path_router(
        "mock-replicate",
        [
            ("/files/{id}/{name}", ReplicatePath::File),
            (
                "/v1/models/{owner}/{model}/predictions",
                ReplicatePath::ModelPredictions,
            ),
            ("/v1/predictions", ReplicatePath::Predictions),
            ("/v1/predictions/{id}", ReplicatePath::Prediction),
            ("/v1/predictions/{id}/cancel", ReplicatePath::Cancel),
            ("/running", ReplicatePath::Running),
            ("/canceled", ReplicatePath::Canceled),
            ("/stats", ReplicatePath::Stats),
        ],
    )
});

impl Respond for FakeReplicate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(matched) = REPLICATE_PATHS.at(request.url.path()) else {
            return problem(404, "Not found.");
        };
        let param = |name: &str| matched.params.get(name).unwrap_or_default();
        match matched.value {
            ReplicatePath::File => return self.file(param("id"), param("name")),
            ReplicatePath::Running => return self.prompts(|p| !p.canceled && !p.finished()),
            ReplicatePath::Canceled => return self.prompts(|p| p.canceled),
            ReplicatePath::Stats => return self.stats(),
            _ => {}
        }
        let expected = format!("Bearer {}", self.token);
        let authorized = request
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !authorized {
            return problem(401, "Invalid token.");
        }
        match (request.method.as_str(), matched.value) {
            ("POST", ReplicatePath::ModelPredictions | ReplicatePath::Predictions) => self.create(request),
            ("GET", ReplicatePath::Prediction) => self.poll(param("id"), false),
            ("POST", ReplicatePath::Cancel) => self.poll(param("id"), true),
            _ => problem(404, "Not found."),
        }
    }
}

/// Serves the fake API on `listener` until the returned server is dropped; with `limit` (creates a
/// minute, burst) it keeps that rate.
pub async fn serve(listener: TcpListener, token: String, limit: Option<(u32, u32)>) -> MockServer {
    let base = Arc::new(OnceLock::new());
    let fake = FakeReplicate {
        limit: limit.map(|(per_minute, burst)| {
            Mutex::new(Limit {
                per_second: f64::from(per_minute) / 60.0,
                burst: f64::from(burst.max(1)),
                tokens: f64::from(burst.max(1)),
                refilled: std::time::Instant::now(),
            })
        }),
        creates: Mutex::new(Creates::default()),
        token,
        base: base.clone(),
        predictions: Mutex::new(HashMap::new()),
    };
    let server = MockServer::builder().listener(listener).start().await;
    let _ = base.set(server.uri());
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
    fn sizes_follow_the_aspect_ratio() {
        assert_eq!(size_of("1:1"), (512, 512));
        let (w, h) = size_of("16:9");
        assert!(w > h && w % 16 == 0 && h % 16 == 0);
        assert_eq!(size_of("nonsense"), (512, 512));
    }

    #[test]
    fn a_slow_prompt_names_its_seconds() {
        assert_eq!(slow_seconds("a cold model [slow:120]"), Some(120));
        assert_eq!(slow_seconds("a quick one"), None);
        assert_eq!(slow_seconds("[slow:x]"), None);
    }
}
