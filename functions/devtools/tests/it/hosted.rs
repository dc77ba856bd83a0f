//! The hosted functions of the pumps and the gateway: a Lambda runtime API and its processes, as
//! Lambda runs a function. These need no stack: the function is `bare` (it answers its event), or
//! a process that never takes its event; the gateway's functions are all `bare`.

use std::time::{Duration, Instant};

use crate::until;
use bytes::Bytes;
use mediagen_devtools::gateway::{Gateway, bind, serve};
use mediagen_devtools::runtime_api::{FunctionPool, HostedFunction, InvokeError};

fn bare() -> Vec<String> {
    vec![env!("CARGO_BIN_EXE_bare").to_owned()]
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_killed_function_is_started_again_by_the_next_invocation() {
    let function = HostedFunction::new("bare", bare(), Duration::from_secs(10)).unwrap();
    let answer = function.invoke(Bytes::from_static(br#"{"n":1}"#)).await.unwrap();
    assert_eq!(&answer[..], br#"{"n":1}"#);
    let first = function.pid().await.unwrap();
    kill(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let answer = function.invoke(Bytes::from_static(br#"{"n":2}"#)).await.unwrap();
    assert_eq!(&answer[..], br#"{"n":2}"#);
    assert_ne!(function.pid().await.unwrap(), first, "a new process: a cold start");
}

/// An invocation, under way, of a function whose process never takes its event; the process id.
async fn invoking_a_function_that_never_answers(
    timeout: Duration,
) -> (
    std::sync::Arc<HostedFunction>,
    tokio::task::JoinHandle<Result<Bytes, InvokeError>>,
    u32,
) {
    let never_answers = vec!["sleep".to_owned(), "60".to_owned()];
    let function = std::sync::Arc::new(HostedFunction::new("sleepy", never_answers, timeout).unwrap());
    let invoking = tokio::spawn({
        let function = function.clone();
        async move { function.invoke(Bytes::from_static(b"{}")).await }
    });
    loop {
        if let Some(pid) = function.pid().await {
            return (function, invoking, pid);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process dies holding the event: the invocation fails at once, as on Lambda, and is not
/// left waiting for an answer that will never come.
#[tokio::test]
async fn an_invocation_whose_process_dies_fails_at_once() {
    let (_, invoking, pid) = invoking_a_function_that_never_answers(Duration::from_secs(30)).await;
    let started = Instant::now();
    kill(pid);
    let result = invoking.await.unwrap();
    assert!(matches!(result, Err(InvokeError::Exited(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// An invocation still unanswered at its deadline is a timeout, and its process is killed.
#[tokio::test]
async fn an_invocation_past_its_timeout_fails_and_its_process_is_killed() {
    let (function, invoking, pid) = invoking_a_function_that_never_answers(Duration::from_secs(1)).await;
    let result = invoking.await.unwrap();
    assert!(matches!(result, Err(InvokeError::TimedOut(_))), "{result:?}");
    assert_eq!(function.pid().await, None, "the next invocation starts anew");
    let gone = async || !std::path::Path::new(&format!("/proc/{pid}")).exists();
    let every = Duration::from_millis(20);
    until(Duration::from_secs(5), every, "the process outlived its timeout", gone).await;
}

/// `scripts/dev.sh` rebuilds on every edit: the next invocation runs the new build.
#[tokio::test]
async fn the_invocation_after_a_rebuild_starts_the_new_program() {
    let folder = tempfile::tempdir().unwrap();
    let program = folder.path().join("function");
    std::fs::copy(env!("CARGO_BIN_EXE_bare"), &program).unwrap();
    let function = HostedFunction::new(
        "bare",
        vec![program.to_string_lossy().into_owned()],
        Duration::from_secs(10),
    )
    .unwrap();
    function.invoke(Bytes::from_static(b"{}")).await.unwrap();
    let first = function.pid().await.unwrap();
    function.invoke(Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(function.pid().await.unwrap(), first, "no rebuild, the same process");

    // As cargo does: a new file in the old one's place.
    let rebuilt = folder.path().join("function.new");
    std::fs::copy(env!("CARGO_BIN_EXE_bare"), &rebuilt).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&rebuilt)
        .unwrap()
        .set_modified(later)
        .unwrap();
    std::fs::rename(&rebuilt, &program).unwrap();

    let answer = function.invoke(Bytes::from_static(br#"{"n":2}"#)).await.unwrap();
    assert_eq!(&answer[..], br#"{"n":2}"#);
    assert_ne!(
        function.pid().await.unwrap(),
        first,
        "the rebuilt program, in a new process"
    );
}

#[tokio::test]
async fn a_pool_reuses_its_idle_instance() {
    let pool = FunctionPool::new("bare", bare(), Duration::from_secs(10), 3).unwrap();
    for n in 0..5 {
        let event = Bytes::from(format!(r#"{{"n":{n}}}"#));
        assert_eq!(pool.invoke(event.clone()).await.unwrap(), event);
    }
    assert_eq!(pool.pids().await.len(), 1);
}

/// Each instance runs one invocation at a time: two at once take two processes, a third waits.
#[tokio::test]
async fn a_pool_starts_another_instance_only_while_the_others_are_busy() {
    let never_answers = vec!["sleep".to_owned(), "60".to_owned()];
    let pool = std::sync::Arc::new(FunctionPool::new("sleepy", never_answers, Duration::from_secs(2), 2).unwrap());
    let started = Instant::now();
    let invocations: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.invoke(Bytes::from_static(b"{}")).await })
        })
        .collect();
    let two = async || pool.pids().await.len() >= 2;
    let every = Duration::from_millis(20);
    until(
        Duration::from_secs(1),
        every,
        "two invocations at once did not start two instances",
        two,
    )
    .await;
    for invocation in invocations {
        let result = invocation.await.unwrap();
        assert!(matches!(result, Err(InvokeError::TimedOut(_))), "{result:?}");
    }
    // The third ran only after one of the first two had timed out.
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
}

/// A gateway on a free port whose six functions are each `bare`; its address.
async fn gateway_of_bare_functions(folder: &std::path::Path) -> String {
    serve_gateway(folder, |gateway| gateway).await
}

/// A gateway on a free port whose six functions are each `bare`, as `configure` leaves it.
async fn serve_gateway(folder: &std::path::Path, configure: impl FnOnce(Gateway) -> Gateway) -> String {
    for name in ["submit", "status", "content", "generate", "deliver", "sweeper"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bare"), folder.join(name)).unwrap();
    }
    let gateway = std::sync::Arc::new(configure(Gateway::new(folder, 1).unwrap()));
    let (listener, bound) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    tokio::spawn(serve(listener, gateway));
    format!("http://{bound}")
}

/// What `cargo lambda invoke` calls: any function, with the event given.
#[tokio::test]
async fn the_gateway_invokes_a_function_with_an_event() {
    let folder = tempfile::tempdir().unwrap();
    let gateway = gateway_of_bare_functions(folder.path()).await;
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{gateway}/2015-03-31/functions/generate/invocations"))
        .body(r#"{"Records":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), r#"{"Records":[]}"#);

    let unknown = http
        .post(format!("{gateway}/2015-03-31/functions/nothing/invocations"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// A function whose answer is not a proxy answer (`bare` answers the event itself) is API
/// Gateway's 502, never a broken connection.
#[tokio::test]
async fn the_gateway_answers_502_for_an_answer_it_cannot_read() {
    let folder = tempfile::tempdir().unwrap();
    let gateway = gateway_of_bare_functions(folder.path()).await;
    let answer = reqwest::get(format!("{gateway}/media/jobs")).await.unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    assert_eq!(answer.headers()["retry-after"], "5");
    assert_eq!(
        answer.text().await.unwrap(),
        r#"{"type":"urn:mediagen:problem:gateway-error","title":"Gateway error","detail":"Internal server error"}"#
    );
}

/// With a low throttle, as a stage's: the requests past it are answered by the gateway itself,
/// problem+json with Retry-After, as template.yaml's THROTTLED response answers them.
#[tokio::test]
async fn a_throttled_request_is_a_429_problem_with_retry_after() {
    let folder = tempfile::tempdir().unwrap();
    let gateway = serve_gateway(folder.path(), |gateway| gateway.throttled(1.0, 3.0)).await;
    let http = reqwest::Client::new();
    let mut throttled = 0;
    for _ in 0..8 {
        let answer = http.get(format!("{gateway}/health")).send().await.unwrap();
        if answer.status() == 429 {
            throttled += 1;
            assert_eq!(answer.headers()["content-type"], "application/problem+json");
            assert_eq!(answer.headers()["retry-after"], "1");
            let problem: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(problem["type"], "urn:mediagen:problem:throttled");
            assert_eq!(problem["status"], 429);
        }
    }
    // The burst of 3 passed (to `bare`, whose answer is the gateway's 502); the rest did not.
    assert!(throttled >= 4, "{throttled} of 8 throttled");
}
