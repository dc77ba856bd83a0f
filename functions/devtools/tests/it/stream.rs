//! A job's progress stream over plain HTTP, as any SSE client reads it (docs/design.md, "Progress
//! stream"), through the local gateway, which passes a streamed answer on as it comes:
//! `scripts/providers.sh` runs it with the stand-in Replicate's slow model, so that the job is
//! still running while the stream is read, and a heartbeat of 2 s (`STREAM_HEARTBEAT_SECONDS`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{api_key, api_url, until};

/// One SSE event as a client parses it; a comment is an event of no name.
#[derive(Debug, Clone)]
struct Event {
    id: Option<usize>,
    name: String,
    data: String,
    comment: bool,
}

/// An open stream, read a block at a time.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(url: &str, last_event_id: Option<usize>) -> Stream {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event or comment; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("nothing from the stream in 30 s")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn parse(block: &str) -> Event {
    let mut event = Event {
        id: None,
        name: String::new(),
        data: String::new(),
        comment: false,
    };
    for line in block.lines() {
        match line.split_once(": ") {
            Some(("id", id)) => event.id = id.parse().ok(),
            Some(("event", name)) => event.name = name.to_owned(),
            Some(("data", data)) => event.data.push_str(data),
            _ if line.starts_with(':') => event.comment = true,
            _ => {}
        }
    }
    event
}

/// A prediction of the stand-in's model that takes `seconds`.
async fn slow_prediction(seconds: u32) -> Value {
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/predictions", api_url()))
        .bearer_auth(api_key())
        .json(&json!({
            "version": "black-forest-labs/flux-schnell",
            "input": {"prompt": format!("a lighthouse [slow:{seconds}]")},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    answer.json().await.unwrap()
}

async fn prediction_status(id: &str) -> String {
    let prediction: Value = reqwest::Client::new()
        .get(format!("{}/v1/predictions/{id}", api_url()))
        .bearer_auth(api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    prediction["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_stream_shows_a_running_job_resumes_after_the_last_event_seen_and_keeps_alive() {
    let prediction = slow_prediction(12).await;
    let id = prediction["id"].as_str().unwrap();
    // No key: the link is signed, as Replicate's clients send none.
    let url = prediction["urls"]["stream"].as_str().unwrap();
    assert!(url.contains("signature="), "{url}");

    let opened = Instant::now();
    let mut stream = Stream::open(url, None).await;
    let first = stream.next().await.unwrap();
    assert_eq!((first.id, first.name.as_str()), (Some(0), "status"), "{first:?}");
    assert_eq!(first.data, r#"{"status":"queued"}"#);
    let status = prediction_status(id).await;
    assert!(
        matches!(status.as_str(), "starting" | "processing"),
        "the first event came before the job was final: it is {status}"
    );
    // Up to the model's start, then the connection drops.
    let mut seen = vec![first];
    while seen.last().is_some_and(|event| event.id != Some(2)) {
        let event = stream.next().await.unwrap();
        if !event.comment {
            seen.push(event);
        }
    }
    drop(stream);
    assert_eq!(
        seen.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["status", "status", "logs"]
    );
    assert!(opened.elapsed() < Duration::from_secs(10), "{:?}", opened.elapsed());

    let mut resumed = Stream::open(url, Some(2)).await;
    let (mut heartbeats, mut events) = (0, Vec::new());
    while let Some(event) = resumed.next().await {
        match event.comment {
            true => heartbeats += 1,
            false => events.push(event),
        }
    }
    let ids: Vec<usize> = events.iter().filter_map(|e| e.id).collect();
    assert_eq!(
        ids,
        (3..3 + events.len()).collect::<Vec<_>>(),
        "no event twice, none missed: {events:?}"
    );
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["logs", "output", "status", "done"], "{events:?}");
    assert_eq!(events[2].data, r#"{"status":"succeeded"}"#);
    assert_eq!(events[3].data, "{}");
    assert!(heartbeats >= 2, "{heartbeats} heartbeats while a 12 s model ran");
    let image = reqwest::get(&events[1].data).await.unwrap();
    assert_eq!(image.status(), 200, "the output's link downloads without a key");
    assert!(!image.bytes().await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_stream_needs_a_valid_signature_or_the_owners_key() {
    let prediction = slow_prediction(1).await;
    let id = prediction["id"].as_str().unwrap();
    let stream = format!("{}/v1/predictions/{id}/stream", api_url());
    let client = reqwest::Client::new();
    let unsigned = client.get(&stream).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(unsigned.headers()["content-type"], "application/problem+json");
    let forged = client
        .get(format!("{stream}?expires=9999999999&signature=00"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let keyed = client.get(&stream).bearer_auth(api_key()).send().await.unwrap();
    assert_eq!(keyed.status(), 200);
    let unknown = client
        .get(format!("{}/v1/predictions/{}/stream", api_url(), uuid_v7_unknown()))
        .bearer_auth(api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
#[ignore = "needs the providers' stack; scripts/providers.sh runs it"]
async fn a_signed_link_holds_no_more_streams_open_than_a_key_may() {
    let prediction = slow_prediction(30).await;
    let url = prediction["urls"]["stream"].as_str().unwrap();
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(Stream::open(url, None).await);
    }
    let refused = reqwest::get(url).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:mediagen:problem:too-many-streams");
    // A stream the client left ends at its next write (a heartbeat, every 2 s here), and gives
    // its place back.
    open.pop();
    let came_back = async || {
        let again = reqwest::get(url).await.unwrap();
        if again.status() != 200 {
            assert_eq!(again.status(), 429);
        }
        again.status() == 200
    };
    let every = Duration::from_millis(500);
    until(
        Duration::from_secs(15),
        every,
        "the place of a closed stream never came back",
        came_back,
    )
    .await;
}

/// A well-formed id no job has.
fn uuid_v7_unknown() -> &'static str {
    "01a24fbe-3bef-7466-9352-000000000000"
}
