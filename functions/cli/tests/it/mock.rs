//! The CLI against a wiremock stand-in of the HTTP contract (docs/design.md), behind a stage
//! prefix (`/prod`) as on a deployment: what it sends, what it prints, how it exits.

use std::io::Cursor;

use serde_json::{Value, json};
use wiremock::matchers::{bearer_token, body_json, header, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{mediagen, mediagen_in};

const KEY: &str = "mg_test_key";
const JOB: &str = "01a20ce3-6f99-74ab-8cae-1183e9fa1396";
const MEDIA: [&str; 2] = [
    "01a20ce3-da7b-74d9-beb3-b7eaf5d0f5a0",
    "01a20ce3-da81-77cb-a3e3-3a79f9fe5a49",
];

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

fn problem(status: u16, slug: &str, detail: &str) -> ResponseTemplate {
    let body =
        json!({"type": format!("urn:mediagen:problem:{slug}"), "title": slug, "status": status, "detail": detail});
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/problem+json")
}

fn job(status: &str, attempts: u32, media: usize) -> Value {
    let media: Vec<Value> = MEDIA[..media]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"media_id": id, "index": i, "content_type": "image/png", "bytes": 1, "width": 512,
                   "height": 384, "content_url": format!("/prod/media/content/{id}")})
        })
        .collect();
    let mut job = json!({"job_id": JOB, "status": status, "attempts": attempts,
        "created_at": "2026-11-24T09:29:48.806Z", "updated_at": "2026-11-24T09:29:49.100Z",
        "prompt": "a lighthouse at dusk", "negative_prompt": null, "model": "local", "width": 512, "height": 384,
        "num_outputs": media.len().max(1), "seed": 42, "output_format": "png", "media": media});
    if status == "failed" {
        job["error"] = json!({"code": "model_failed", "message": "NSFW content detected.\nTry another prompt."});
    }
    job
}

/// The API at `<mock>/prod` and its storage at `<mock>/s3`.
struct Api {
    server: MockServer,
}

impl Api {
    async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    fn url(&self) -> String {
        format!("{}/prod", self.server.uri())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("MEDIAGEN_API_URL", self.url()), ("MEDIAGEN_API_KEY", KEY.to_owned())]
    }

    async fn run(&self, args: &[&str]) -> crate::Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        mediagen(args, &env, None).await
    }

    async fn accepts(&self) {
        Mock::given(method("POST"))
            .and(path("/prod/media/generate"))
            .and(bearer_token(KEY))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({
                "job_id": JOB, "status": "queued", "created_at": "2026-11-24T09:29:48.806Z",
                "links": {"status": format!("/prod/media/status/{JOB}"), "job": format!("/prod/media/jobs/{JOB}")}})))
            .mount(&self.server)
            .await;
    }

    /// `GET /media/jobs/{id}` answers `job`, honouring `Prefer: wait`.
    async fn job_waits(&self, job: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/prod/media/jobs/{JOB}")))
            .and(bearer_token(KEY))
            .and(header_exists("prefer"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Preference-Applied", "wait")
                    .set_body_json(job),
            )
            .mount(&self.server)
            .await;
    }

    async fn job_is(&self, job: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/prod/media/jobs/{JOB}")))
            .and(bearer_token(KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(job))
            .mount(&self.server)
            .await;
    }

    /// Content links to `<mock>/s3/<id>.png`, which serves a 512×384 PNG to requests without
    /// an Authorization header.
    async fn serves_images(&self) {
        for id in MEDIA {
            Mock::given(method("GET"))
                .and(path(format!("/prod/media/content/{id}")))
                .and(header("accept", "application/json"))
                .and(bearer_token(KEY))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "url": format!("{}/s3/{id}.png?X-Amz-Signature=abc", self.server.uri()),
                    "expires_at": "2026-11-24T09:44:53.895Z", "content_type": "image/png"})))
                .mount(&self.server)
                .await;
            Mock::given(method("GET"))
                .and(path(format!("/s3/{id}.png")))
                .and(|request: &Request| !request.headers.contains_key("authorization"))
                .respond_with(ResponseTemplate::new(200).set_body_raw(png(512, 384), "image/png"))
                .mount(&self.server)
                .await;
        }
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }
}

#[tokio::test]
async fn generate_submits_waits_downloads_and_prints_the_paths() {
    let api = Api::start().await;
    api.accepts().await;
    api.job_waits(job("succeeded", 1, 2)).await;
    api.serves_images().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("new").join("folder");
    let run = api
        .run(&[
            "generate",
            "a lighthouse at dusk",
            "--width",
            "512",
            "--height",
            "384",
            "-n",
            "2",
            "--seed",
            "42",
            "--format",
            "png",
            "--out",
            dir.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stderr, "", "no progress line when stdout is not a terminal");
    let paths: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(paths.len(), 2, "{run:#?}");
    for (i, printed) in paths.iter().enumerate() {
        assert_eq!(*printed, dir.join(format!("{JOB}-{i}.png")).to_str().unwrap());
        let decoded = image::open(printed).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (512, 384));
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no partial file is left behind"
    );

    let requests = api.requests().await;
    let submit = requests.iter().find(|r| r.method.as_str() == "POST").unwrap();
    assert_eq!(
        submit.body_json::<Value>().unwrap(),
        json!({"prompt": "a lighthouse at dusk", "width": 512, "height": 384, "num_outputs": 2, "seed": 42,
               "output_format": "png"}),
        "absent options are left to the API"
    );
    let waits: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path().starts_with("/prod/media/jobs/"))
        .collect();
    assert_eq!(waits.len(), 1, "one held request is enough for a job already final");
    assert!(waits[0].headers["prefer"].to_str().unwrap().starts_with("wait="));
    assert!(
        requests
            .iter()
            .all(|r| r.url.path().starts_with("/prod/") || r.url.path().starts_with("/s3/")),
        "the stage prefix is kept on every request"
    );
}

#[tokio::test]
async fn generate_follows_the_progress_stream_and_reads_the_job_once_at_its_end() {
    let api = Api::start().await;
    api.accepts().await;
    api.serves_images().await;
    // Broken halfway, as the API ends a stream after some minutes: the CLI resumes after the
    // last event it saw.
    let first = "id: 0\nevent: status\ndata: {\"status\":\"queued\"}\n\n: keep-alive\n\n\
                 id: 1\nevent: status\ndata: {\"status\":\"processing\"}\n\nretry: 1000\n\n";
    let rest = "id: 2\nevent: logs\ndata: generating with local\n\nid: 3\nevent: done\ndata: {}\n\n";
    Mock::given(method("GET"))
        .and(path(format!("/prod/v1/predictions/{JOB}/stream")))
        .and(bearer_token(KEY))
        .and(header("last-event-id", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(rest, "text/event-stream"))
        .with_priority(1)
        .mount(&api.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/prod/v1/predictions/{JOB}/stream")))
        .and(bearer_token(KEY))
        .respond_with(ResponseTemplate::new(200).set_body_raw(first, "text/event-stream"))
        .mount(&api.server)
        .await;
    api.job_is(job("succeeded", 1, 1)).await;
    let out = tempfile::tempdir().unwrap();
    let run = api
        .run(&["generate", "a lighthouse", "--out", out.path().to_str().unwrap()])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    let requests = api.requests().await;
    let streams = requests.iter().filter(|r| r.url.path().ends_with("/stream")).count();
    assert_eq!(streams, 2, "the stream, then its resumption");
    let reads: Vec<&Request> = requests
        .iter()
        .filter(|r| r.url.path().starts_with("/prod/media/jobs/"))
        .collect();
    assert_eq!(reads.len(), 1, "the job is read once, at the stream's end");
    assert!(!reads[0].headers.contains_key("prefer"), "and not held");
}

#[tokio::test]
async fn generate_polls_the_status_when_the_api_does_not_hold_the_answer() {
    let api = Api::start().await;
    api.accepts().await;
    // Preference not applied: the first answer comes at once and says queued.
    Mock::given(method("GET"))
        .and(path(format!("/prod/media/jobs/{JOB}")))
        .and(header_exists("prefer"))
        .respond_with(ResponseTemplate::new(200).set_body_json(job("queued", 0, 0)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/prod/media/status/{JOB}")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Retry-After", "1")
                .set_body_json(
                    json!({"job_id": JOB, "status": "processing", "attempts": 1, "created_at": "x", "updated_at": "y"}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/prod/media/status/{JOB}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"job_id": JOB, "status": "succeeded", "attempts": 1, "created_at": "x", "updated_at": "y"}),
        ))
        .with_priority(2)
        .mount(&api.server)
        .await;
    api.job_is(job("succeeded", 1, 1)).await;
    api.serves_images().await;
    let out = tempfile::tempdir().unwrap();
    let run = api.run(&["generate", "p", "--out", out.path().to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 1);
    let statuses = api
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path().contains("/media/status/"))
        .count();
    assert_eq!(statuses, 2, "polled the light status until it was final");
}

#[tokio::test]
async fn no_wait_prints_the_job_id_and_json_prints_the_answer() {
    let api = Api::start().await;
    api.accepts().await;
    let run = api.run(&["generate", "p", "--no-wait"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, format!("{JOB}\n").as_str(), "")
    );

    let run = api.run(&["generate", "p", "--no-wait", "--json"]).await;
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["job_id"], JOB);
    assert_eq!(answer["links"]["job"], format!("/prod/media/jobs/{JOB}"));
}

#[tokio::test]
async fn generate_json_is_the_job_with_the_files() {
    let api = Api::start().await;
    api.accepts().await;
    api.job_waits(job("succeeded", 1, 1)).await;
    api.serves_images().await;
    let out = tempfile::tempdir().unwrap();
    let run = api
        .run(&["--json", "generate", "p", "-o", out.path().to_str().unwrap()])
        .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["status"], "succeeded");
    assert_eq!(
        answer["files"][0],
        out.path().join(format!("{JOB}-0.png")).to_str().unwrap()
    );
}

#[tokio::test]
async fn a_refused_key_exits_3_and_says_so() {
    let api = Api::start().await;
    Mock::given(method("POST"))
        .respond_with(
            problem(401, "unauthorized", "the API key is not valid").insert_header("WWW-Authenticate", "Bearer"),
        )
        .mount(&api.server)
        .await;
    let run = api.run(&["generate", "p"]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: the API refused the key from MEDIAGEN_API_KEY (401 unauthorized: the API key is not valid)"
    );

    let url = api.url();
    let run = mediagen(&["generate", "p", "--url", &url, "--api-key", "wrong"], &[], None).await;
    assert_eq!(run.code, 3);
    assert!(
        run.error_line().contains("refused the key given with --api-key"),
        "{run:#?}"
    );

    let run = mediagen(&["generate", "p", "--url", &url], &[], None).await;
    assert_eq!(run.code, 3);
    assert!(run.error_line().contains("the API wants a key"), "{run:#?}");
    assert!(run.error_line().contains("MEDIAGEN_API_KEY"), "{run:#?}");
}

#[tokio::test]
async fn a_validation_problem_exits_4_naming_each_field() {
    let api = Api::start().await;
    Mock::given(method("POST"))
        .and(body_json(json!({"prompt": "p", "width": 300})))
        .respond_with(
            ResponseTemplate::new(422).set_body_raw(
                json!({"type": "urn:mediagen:problem:invalid-request", "title": "Invalid request", "status": 422,
                       "detail": "check these fields: width", "errors": [{"field": "width", "message": "must be a multiple of 32"}]})
                .to_string(),
                "application/problem+json",
            ),
        )
        .mount(&api.server)
        .await;
    let run = api.run(&["generate", "p", "--width", "300"]).await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: invalid request: width: must be a multiple of 32"
    );
}

#[tokio::test]
async fn an_unknown_model_exits_4_naming_the_models() {
    let api = Api::start().await;
    Mock::given(method("POST"))
        .and(path("/prod/media/generate"))
        .and(body_json(json!({"prompt": "p", "model": "dall-e"})))
        .respond_with(
            ResponseTemplate::new(422).set_body_raw(
                json!({"type": "urn:mediagen:problem:invalid-request", "title": "Invalid request", "status": 422,
                       "detail": "check these fields: model",
                       "errors": [{"field": "model", "message": "must be one of: local, gpt-image-1"}]})
                .to_string(),
                "application/problem+json",
            ),
        )
        .mount(&api.server)
        .await;
    let run = api.run(&["generate", "p", "--model", "dall-e"]).await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: invalid request: model: must be one of: local, gpt-image-1"
    );
}

fn model(id: &str, owned_by: &str, default: bool, sizes: &[&str], price: f64) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owned_by, "provider_model": id,
           "default": default, "sizes": sizes, "formats": ["png", "webp", "jpg"],
           "price_per_image_usd": price, "price_source": "models.toml", "fallback": []})
}

#[tokio::test]
async fn models_lists_one_aligned_line_each_with_the_default_marked() {
    let api = Api::start().await;
    let list = json!({"object": "list", "data": [
        model("local", "local", true, &[], 0.0),
        model("black-forest-labs/flux-schnell", "replicate", false, &[], 0.003),
        model("gpt-image-1", "openai", false, &["1024x1024", "1536x1024", "1024x1536"], 0.042),
    ]});
    Mock::given(method("GET"))
        .and(path("/prod/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(list.clone()))
        .mount(&api.server)
        .await;

    let run = api.run(&["models"]).await;
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "MODEL                           PROVIDER   PRICE/IMAGE  SIZES",
            "local (default)                 local           $0.000  any size",
            "black-forest-labs/flux-schnell  replicate       $0.003  any size",
            "gpt-image-1                     openai          $0.042  1024x1024, 1536x1024, 1024x1536",
        ],
        "{}",
        run.stdout
    );
    let requests = api.requests().await;
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {KEY}"),
        "a key is sent when there is one"
    );

    let run = api.run(&["models", "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).unwrap(), list);

    // Public: no key is needed.
    let url = api.url();
    let run = mediagen(&["models"], &[("MEDIAGEN_API_URL", url.as_str())], None).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 4, "{run:#?}");
}

#[tokio::test]
async fn models_from_an_api_without_the_route_exits_7() {
    let api = Api::start().await;
    Mock::given(method("GET"))
        .and(path("/prod/v1/models"))
        .respond_with(problem(404, "no-route", "no route for GET /v1/models"))
        .mount(&api.server)
        .await;
    let run = api.run(&["models"]).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert!(run.error_line().contains("has no route for GET /v1/models"), "{run:#?}");
}

#[tokio::test]
async fn a_failed_job_exits_5_with_its_code_and_message() {
    let api = Api::start().await;
    api.accepts().await;
    api.job_waits(job("failed", 1, 0)).await;
    let run = api.run(&["generate", "p"]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!("error: job {JOB} failed: model_failed: NSFW content detected. Try another prompt.")
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test]
async fn a_canceled_job_exits_5() {
    let api = Api::start().await;
    api.accepts().await;
    api.job_waits(job("canceled", 0, 0)).await;
    let run = api.run(&["generate", "p"]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert_eq!(run.error_line(), format!("error: job {JOB} was canceled"));
}

#[tokio::test]
async fn an_unreachable_api_exits_7() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = mediagen(&["generate", "p", "--url", &url], &[], None).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!("error: cannot reach the API at {url} (connection refused); check --url or MEDIAGEN_API_URL")
    );
}

#[tokio::test]
async fn a_url_that_is_not_our_api_exits_7() {
    let other = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_raw("<html>nope</html>", "text/html"))
        .mount(&other)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>hello</html>", "text/html"))
        .mount(&other)
        .await;
    let url = other.uri();
    let run = mediagen(&["generate", "p", "--url", &url], &[], None).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "error: {url} does not look like the mediagen API: POST /media/generate answered 404 Not Found (text/html); \
             check --url or MEDIAGEN_API_URL"
        )
    );
    let run = mediagen(&["status", JOB, "--url", &url], &[], None).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert!(
        run.error_line().contains("answered 200 OK with text/html, not JSON"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn an_unknown_job_exits_6() {
    let api = Api::start().await;
    Mock::given(method("GET"))
        .respond_with(problem(404, "not-found", "no job with this id"))
        .mount(&api.server)
        .await;
    let run = api.run(&["status", JOB]).await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert_eq!(run.error_line(), format!("error: no job {JOB} (404 not-found)"));
}

#[tokio::test]
async fn a_busy_api_exits_1_and_says_when_to_try_again() {
    let api = Api::start().await;
    Mock::given(method("POST"))
        .respond_with(
            problem(503, "queue-unavailable", "the job could not be queued").insert_header("Retry-After", "5"),
        )
        .mount(&api.server)
        .await;
    let run = api.run(&["generate", "p"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: the API failed to answer POST /media/generate (503 queue-unavailable: the job could not be queued); \
         try again in 5s"
    );
}

#[tokio::test]
async fn waiting_gives_up_after_the_timeout_and_names_the_job() {
    let api = Api::start().await;
    api.accepts().await;
    api.job_waits(job("queued", 0, 0)).await;
    let run = api.run(&["generate", "p", "--timeout", "1"]).await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!("error: job {JOB} is still queued after 1s; `mediagen status {JOB}` follows it")
    );
}

#[tokio::test]
async fn status_shows_the_job() {
    let api = Api::start().await;
    api.job_is(job("failed", 2, 0)).await;
    let run = api.run(&["status", JOB]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        run.stdout,
        format!(
            "job       {JOB}\nstatus    failed (attempt 2)\nerror     model_failed: NSFW content detected. Try another prompt.\n\
             prompt    a lighthouse at dusk\nrequest   local, 512×384, 1 image, png, seed 42\n\
             created   2026-11-24T09:29:48.806Z\nupdated   2026-11-24T09:29:49.100Z\n"
        )
    );
    let run = api.run(&["status", JOB, "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&run.stdout).unwrap()["error"]["code"],
        "model_failed"
    );
}

#[tokio::test]
async fn jobs_lists_a_page_and_says_how_to_get_the_next() {
    let api = Api::start().await;
    let mut first = job("succeeded", 1, 1);
    first.as_object_mut().unwrap().remove("media");
    let mut second = job("processing", 1, 0);
    second["job_id"] = json!("01a20ce3-0000-7000-8000-000000000000");
    second["prompt"] = json!("a very long prompt that goes on and on, well past what fits on one line of a table");
    Mock::given(method("GET"))
        .and(path("/prod/media/jobs"))
        .and(query_param("status", "succeeded"))
        .and(query_param("limit", "2"))
        .and(bearer_token(KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"jobs": [first, second], "next_cursor": "abc"})))
        .mount(&api.server)
        .await;
    let run = api.run(&["jobs", "--status", "succeeded", "--limit", "2"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:#?}");
    assert!(lines[0].starts_with("JOB "), "{lines:?}");
    assert!(lines[1].starts_with(&format!("{JOB}  succeeded ")), "{lines:?}");
    assert!(
        lines[1].contains("512×384") && lines[1].ends_with("a lighthouse at dusk"),
        "{lines:?}"
    );
    assert!(
        lines[2].ends_with("a very long prompt that goes on and on, well pa…"),
        "{lines:?}"
    );
    assert_eq!(run.stderr, "more: mediagen jobs --cursor abc\n");

    let run = api.run(&["jobs", "--limit", "0"]).await;
    assert_eq!(run.code, 2, "a limit out of range is a usage error");
}

#[tokio::test]
async fn cancel_answers_canceled_requested_or_conflict() {
    let api = Api::start().await;
    let cancel = format!("/prod/media/jobs/{JOB}/cancel");
    Mock::given(method("POST"))
        .and(path(&cancel))
        .respond_with(ResponseTemplate::new(200).set_body_json(job("canceled", 0, 0)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api.server)
        .await;
    let mut running = job("processing", 1, 0);
    running["cancel_requested"] = json!(true);
    Mock::given(method("POST"))
        .and(path(&cancel))
        .respond_with(ResponseTemplate::new(202).set_body_json(running))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&api.server)
        .await;
    Mock::given(method("POST"))
        .and(path(&cancel))
        .respond_with(problem(409, "job-final", "the job is already succeeded"))
        .with_priority(3)
        .mount(&api.server)
        .await;
    let run = api.run(&["cancel", JOB]).await;
    assert_eq!((run.code, run.stdout), (0, format!("job {JOB} canceled\n")));
    let run = api.run(&["cancel", JOB]).await;
    assert_eq!(
        (run.code, run.stdout),
        (
            0,
            format!("job {JOB}: cancel requested; it is processing and stops at its next step\n")
        )
    );
    let run = api.run(&["cancel", JOB]).await;
    assert_eq!(run.code, 8, "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!("error: cannot cancel job {JOB} (409 job-final: the job is already succeeded)")
    );
}

#[tokio::test]
async fn open_downloads_or_prints_the_urls() {
    let api = Api::start().await;
    api.job_is(job("succeeded", 1, 2)).await;
    api.serves_images().await;
    let run = api.run(&["open", JOB, "--print-urls"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let expected: String = MEDIA
        .iter()
        .map(|id| format!("{}/s3/{id}.png?X-Amz-Signature=abc\n", api.server.uri()))
        .collect();
    assert_eq!(run.stdout, expected);

    let out = tempfile::tempdir().unwrap();
    let run = api.run(&["open", JOB, "--out", out.path().to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout.lines().count(), 2);
    for line in run.stdout.lines() {
        assert_eq!(image::open(line).unwrap().width(), 512);
    }
}

#[tokio::test]
async fn open_follows_a_redirect_when_the_api_ignores_accept() {
    let api = Api::start().await;
    api.job_is(job("succeeded", 1, 1)).await;
    Mock::given(method("GET"))
        .and(path(format!("/prod/media/content/{}", MEDIA[0])))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", format!("/s3/{}.png", MEDIA[0])))
        .mount(&api.server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/s3/{}.png", MEDIA[0])))
        .and(|request: &Request| !request.headers.contains_key("authorization"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png(512, 384), "image/png"))
        .mount(&api.server)
        .await;
    let out = tempfile::tempdir().unwrap();
    let run = api.run(&["open", JOB, "-o", out.path().to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run:#?}");
}

#[tokio::test]
async fn the_config_file_gives_url_and_key_when_flags_and_environment_do_not() {
    let api = Api::start().await;
    api.job_is(job("succeeded", 1, 0)).await;
    let config = format!("url = \"{}\"\napi_key = \"{KEY}\"\n", api.url());
    let run = mediagen(&["status", JOB], &[], Some(&config)).await;
    assert_eq!(run.code, 0, "{run:#?}");

    // The environment wins over the file: this key is refused.
    Mock::given(method("GET"))
        .and(bearer_token("env-key"))
        .respond_with(problem(401, "unauthorized", "the API key is not valid"))
        .with_priority(1)
        .mount(&api.server)
        .await;
    let run = mediagen(&["status", JOB], &[("MEDIAGEN_API_KEY", "env-key")], Some(&config)).await;
    assert_eq!(run.code, 3, "{run:#?}");

    // A key from the file is named as such when refused.
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("elsewhere.toml");
    std::fs::write(&file, format!("url = \"{}\"\napi_key = \"env-key\"\n", api.url())).unwrap();
    let run = mediagen_in(home.path(), &["status", JOB, "--config", file.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.error_line()
            .contains(&format!("refused the key from {}", file.display())),
        "{run:#?}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let run = mediagen(&["status", JOB], &[], None).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(
        run.error_line()
            .starts_with("error: no API URL: pass --url or set MEDIAGEN_API_URL"),
        "{run:#?}"
    );

    let run = mediagen(&["status", JOB, "--url", "127.0.0.1:9000"], &[], None).await;
    assert_eq!(run.code, 2, "{run:#?}");

    let run = mediagen(&["generate"], &[], None).await;
    assert_eq!(run.code, 2, "a missing prompt is clap's usage error");
    let run = mediagen(&["generate", "p", "--width", "wide"], &[], None).await;
    assert_eq!(run.code, 2);
}

#[tokio::test]
async fn every_command_has_help() {
    for command in ["generate", "status", "jobs", "cancel", "open", "models"] {
        let run = mediagen(&[command, "--help"], &[], None).await;
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(run.stdout.contains("Usage: mediagen"), "{command}: {run:#?}");
        assert!(run.stdout.contains("Exit codes:"), "{command}: {run:#?}");
    }
    let run = mediagen(&["generate", "--help"], &[], None).await;
    for option in [
        "--width",
        "--height",
        "--num-outputs",
        "--seed",
        "--format",
        "--model",
        "--out",
        "--no-wait",
        "--json",
    ] {
        assert!(run.stdout.contains(option), "{option}: {}", run.stdout);
    }
    assert!(
        run.stdout.contains("--model gpt-image-1"),
        "an example names a model: {}",
        run.stdout
    );
}
