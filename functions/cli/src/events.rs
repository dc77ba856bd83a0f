//! A job's progress stream (`GET /v1/predictions/{id}/stream`, docs/api.md): Server-Sent Events
//! read as they come. The stream's events are the few lines of the SSE format this API writes
//! (`id`, `event`, `data`, comments), parsed here rather than by a crate: the SSE crates of
//! reqwest's ecosystem need its `stream` feature, and the parser is the function below.

use reqwest::StatusCode;

use crate::api::{Api, Subject};
use crate::error::Error;

/// One event; comments (the heartbeats) are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<usize>,
    pub name: String,
    pub data: String,
}

/// An open stream.
pub struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Opens the job's stream, after the event `last_seen` if the client saw some.
    pub async fn open(api: &Api, job_id: &str, last_seen: Option<usize>) -> Result<Events, Error> {
        let path = format!("/v1/predictions/{job_id}/stream");
        let mut request = api.streaming_request(&path);
        if let Some(id) = last_seen {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.map_err(|e| api.transport_error(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            return Err(api.status_error(
                &format!("GET {path}"),
                &Subject::Job(job_id.into()),
                status,
                &headers,
                &body,
            ));
        }
        Ok(Events {
            response,
            buffer: String::new(),
        })
    }

    /// The next event; `None` once the server has ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, Error> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Ok(Some(event));
                }
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return Ok(None),
                Err(err) => return Err(Error::Protocol(format!("the progress stream broke: {err}"))),
            }
        }
    }
}

/// One block of lines; `None` for a block of comments only.
fn parse(block: &str) -> Option<Event> {
    let mut event = Event {
        id: None,
        name: "message".to_owned(),
        data: String::new(),
    };
    let mut fields = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => continue,
            "id" => event.id = value.parse().ok(),
            "event" => event.name = value.to_owned(),
            "data" if event.data.is_empty() => event.data = value.to_owned(),
            "data" => {
                event.data.push('\n');
                event.data.push_str(value);
            }
            _ => continue,
        }
        fields = true;
    }
    fields.then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_an_event_and_a_comment_is_none() {
        assert_eq!(
            parse("id: 3\nevent: logs\ndata: one\ndata: two\n\n"),
            Some(Event {
                id: Some(3),
                name: "logs".into(),
                data: "one\ntwo".into(),
            })
        );
        assert_eq!(parse(": keep-alive\n\n"), None);
        assert_eq!(parse("retry: 1000\n: reconnect\n\n"), None);
        assert_eq!(
            parse("data:{}\n\n").map(|e| (e.name, e.data)),
            Some(("message".into(), "{}".into()))
        );
    }
}
