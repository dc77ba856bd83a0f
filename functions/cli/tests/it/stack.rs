//! The CLI against a running stack (`scripts/dev.sh`'s, or the one `scripts/test-clients.sh` is
//! given): `MEDIAGEN_API_URL` and `MEDIAGEN_API_KEY`. Ignored by a plain `cargo test`:
//!
//! ```sh
//! MEDIAGEN_API_URL=http://127.0.0.1:9000 MEDIAGEN_API_KEY=... \
//!   cargo test -p mediagen-cli --test it -- --ignored stack::
//! ```
//!
//! A failed job cannot be provoked with the `local` model; against a stack whose model is the
//! mock Replicate API, `MEDIAGEN_FAILURE_PROMPT='[fail] x'` makes `a_failed_job_...` run.

use serde_json::Value;

use crate::{Run, mediagen};

fn stack_env() -> Vec<(&'static str, String)> {
    let url = std::env::var("MEDIAGEN_API_URL").expect("MEDIAGEN_API_URL: the stack's URL");
    let mut env = vec![("MEDIAGEN_API_URL", url)];
    if let Ok(key) = std::env::var("MEDIAGEN_API_KEY") {
        env.push(("MEDIAGEN_API_KEY", key));
    }
    env
}

async fn run(args: &[&str], extra: &[(&'static str, String)]) -> Run {
    let mut env = stack_env();
    env.extend(extra.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    mediagen(args, &env, None).await
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn generate_writes_images_of_the_asked_size() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("out");
    let run = run(
        &[
            "generate",
            "a lighthouse at dusk",
            "--width",
            "512",
            "--height",
            "384",
            "--num-outputs",
            "2",
            "--format",
            "webp",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let paths: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(paths.len(), 2, "{run:#?}");
    for path in &paths {
        assert!(path.ends_with(".webp"), "{path}");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::WebP);
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (512, 384), "{path}");
    }

    // The job is listed, its status says succeeded, and open finds the same images.
    let job_id = std::path::Path::new(paths[0])
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0
        .to_owned();
    let listed = self::run(&["jobs", "--limit", "10", "--json"], &[]).await;
    assert_eq!(listed.code, 0, "{listed:#?}");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == job_id.as_str()),
        "{listed}"
    );
    let status = self::run(&["status", &job_id], &[]).await;
    assert_eq!(status.code, 0, "{status:#?}");
    assert!(status.stdout.contains("status    succeeded"), "{status:#?}");
    let urls = self::run(&["open", &job_id, "--print-urls"], &[]).await;
    assert_eq!((urls.code, urls.stdout.lines().count()), (0, 2), "{urls:#?}");

    // A finished job cannot be canceled.
    let cancel = self::run(&["cancel", &job_id], &[]).await;
    assert_eq!(cancel.code, 8, "{cancel:#?}");
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn models_lists_local_as_the_default() {
    let run = run(&["models"], &[]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.starts_with("MODEL "), "{run:#?}");
    assert!(
        run.stdout.lines().any(|line| line.starts_with("local (default) ")),
        "{run:#?}"
    );

    let listed = self::run(&["models", "--json"], &[]).await;
    assert_eq!(listed.code, 0, "{listed:#?}");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let defaults: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["default"] == true)
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(defaults, ["local"], "{listed}");
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn a_refused_key_exits_3() {
    let run = run(&["jobs"], &[("MEDIAGEN_API_KEY", "mg_not_a_key".to_owned())]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.error_line()
            .starts_with("error: the API refused the key from MEDIAGEN_API_KEY (401"),
        "{run:#?}"
    );
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn a_wrong_url_exits_7() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = run(&["generate", "x"], &[("MEDIAGEN_API_URL", url.clone())]).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert!(
        run.error_line()
            .contains(&format!("cannot reach the API at {url} (connection refused)")),
        "{run:#?}"
    );

    // The right host with a path that is not the API's.
    let base = std::env::var("MEDIAGEN_API_URL").unwrap();
    let run = self::run(&["generate", "x"], &[("MEDIAGEN_API_URL", format!("{base}/nope"))]).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert!(run.error_line().contains("check --url or MEDIAGEN_API_URL"), "{run:#?}");
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn an_invalid_width_exits_4_naming_the_field() {
    let run = run(&["generate", "x", "--width", "300"], &[]).await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: invalid request: width: must be a multiple of 32"
    );
}

#[tokio::test]
#[ignore = "needs a running stack: scripts/test-clients.sh"]
async fn an_unknown_job_exits_6() {
    let run = run(&["status", "01a20ce3-6f99-74ab-8cae-1183e9fa1396"], &[]).await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert_eq!(
        run.error_line(),
        "error: no job 01a20ce3-6f99-74ab-8cae-1183e9fa1396 (404 not-found)"
    );
}

#[tokio::test]
#[ignore = "needs a running stack whose model can fail: MEDIAGEN_FAILURE_PROMPT"]
async fn a_failed_job_exits_5_with_its_code_and_message() {
    let Ok(prompt) = std::env::var("MEDIAGEN_FAILURE_PROMPT") else {
        eprintln!("skipped: MEDIAGEN_FAILURE_PROMPT is not set (the local model never fails)");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let run = run(
        &[
            "generate",
            &prompt,
            "--width",
            "256",
            "--height",
            "256",
            "-o",
            out.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.error_line().contains(" failed: model_failed: "), "{run:#?}");
    assert_eq!(run.stdout, "");
}
