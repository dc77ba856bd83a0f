//! The pump's hosted function: a Lambda runtime API and its process, as Lambda runs a function.
//! These need no stack: the function is `bare` (it answers its event), or a process that never
//! takes its event.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mediagen_devtools::runtime_api::{HostedFunction, InvokeError};

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

/// The process dies holding the event: the invocation fails at once, as on Lambda, and is not
/// left waiting for an answer that will never come.
#[tokio::test]
async fn an_invocation_whose_process_dies_fails_at_once() {
    let never_answers = vec!["sleep".to_owned(), "60".to_owned()];
    let function = std::sync::Arc::new(HostedFunction::new("sleepy", never_answers, Duration::from_secs(30)).unwrap());
    let invoking = tokio::spawn({
        let function = function.clone();
        async move { function.invoke(Bytes::from_static(b"{}")).await }
    });
    let pid = loop {
        if let Some(pid) = function.pid().await {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let started = Instant::now();
    kill(pid);
    let result = invoking.await.unwrap();
    assert!(matches!(result, Err(InvokeError::Exited(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// An invocation still unanswered at its deadline is a timeout, and its process is killed.
#[tokio::test]
async fn an_invocation_past_its_timeout_fails_and_its_process_is_killed() {
    let never_answers = vec!["sleep".to_owned(), "60".to_owned()];
    let function = HostedFunction::new("sleepy", never_answers, Duration::from_secs(1)).unwrap();
    let result = function.invoke(Bytes::from_static(b"{}")).await;
    assert!(matches!(result, Err(InvokeError::TimedOut(_))), "{result:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while function.pid().await.is_some() {
        assert!(Instant::now() < deadline, "the process outlived its timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
