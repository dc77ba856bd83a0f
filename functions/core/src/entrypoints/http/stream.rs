//! The `stream` function: `GET /v1/predictions/{prediction_id}/stream`, a job's progress as
//! Server-Sent Events (docs/design.md, "Progress stream"), the `urls.stream` of a prediction.
//! It answers as Lambda streams a response, so the client has each event as it happens; its
//! errors come before the stream, as problems.

use chrono::Utc;
use lambda_http::http::{HeaderValue, header};
use lambda_http::lambda_runtime::streaming::{Body as StreamBody, Sender};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use tracing::Instrument;

use super::problem::{Problem, stamp};
use super::routes::{self, Endpoint};
use super::{ApiError, OnFirstUse, admitted, api_root, link_signature, respond};
use crate::domain::ids::JobId;
use crate::domain::keys::KeyHash;
use crate::domain::stream::{self, StreamEvent};
use crate::entrypoints::views::{FileLinks, file_url};
use crate::ports::{JobStore, KeyStore};
use crate::services::auth::Authenticator;
use crate::services::stream::{ClientGone, EventSink, LINK_STREAMS, StreamService};

/// What the `stream` function serves. It lives as long as its process: each stream is followed
/// by a task of its own, which the function's runtime waits for as it sends the body.
pub struct StreamApi<S> {
    pub auth: Authenticator<S>,
    pub streams: StreamService<S>,
    /// Made at the first request that checks a stream link or hands out a file link.
    pub links: OnFirstUse<FileLinks>,
}

pub async fn handle<S: JobStore + KeyStore + Sync + 'static>(
    api: &'static StreamApi<S>,
    request: Request,
) -> Response<StreamBody> {
    let span = tracing::info_span!("stream", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async {
        // Boxed: the stream's future type is deep enough otherwise to overflow the compiler's
        // query depth where the runtime's service types wrap it.
        match Box::pin(answer(api, &request)).await {
            Ok(response) => response,
            Err(err) => whole(respond(&request, Err(err))),
        }
    }
    .instrument(span)
    .await
}

/// A job's progress as Server-Sent Events.
#[utoipa::path(get, path = "/v1/predictions/{prediction_id}/stream", operation_id = "stream_prediction", tag = "replicate",
    params(
        ("prediction_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The prediction's (the job's) id"),
        ("expires" = Option<i64>, Query, description = "A signed stream link's expiry, epoch seconds"),
        ("signature" = Option<String>, Query, description = "A signed stream link's signature"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event the client saw: the stream resumes after it"),
    ),
    responses(
        (status = 200, description = "The job's events as Server-Sent Events: `status`, `logs`, `output` (an image's URL), `error`, `done`; a `: keep-alive` comment at least every 15 s", content_type = "text/event-stream", body = String),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key and no valid signature, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The key (or the signed link) holds as many streams and held requests open as it may", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn answer<S: JobStore + KeyStore + Sync + 'static>(
    api: &'static StreamApi<S>,
    request: &Request,
) -> Result<Response<StreamBody>, ApiError> {
    let (endpoint, matched) = routes::endpoint(request)?;
    if endpoint != Endpoint::Stream {
        return Err(ApiError::NoRoute(routes::request_path(request).to_owned()));
    }
    let id =
        JobId::parse(matched.param("prediction_id")).map_err(|_| ApiError::MalformedId { param: "prediction_id" })?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let links = api.links.get().await?;
    // A signed link needs no key, so it counts against no key's rate; its open streams are
    // counted against the link itself.
    let (job, holder, limit, allowance) = match signature(links, id, request) {
        Some(signature) => (
            api.streams.job(None, id).await?,
            KeyHash::from_hex(format!("link.{signature}")),
            LINK_STREAMS,
            None,
        ),
        None => {
            let (caller, allowance) = admitted(&api.auth, request, endpoint.class()).await?;
            let job = api.streams.job(Some(&caller), id).await?;
            (job, caller.key, caller.limits.concurrent_waits, Some(allowance))
        }
    };
    let job = job.ok_or(ApiError::NotFound { what: "prediction" })?;
    if !api.streams.open(&holder, limit).await? {
        return Err(ApiError::TooManyStreams { limit });
    }
    let first = stream::first_unseen(request.headers().get("last-event-id").and_then(|v| v.to_str().ok()));
    let root = api_root(request);
    let (sender, body) = StreamBody::channel();
    tokio::spawn(
        async move {
            let render =
                move |index: usize, event: &StreamEvent| stream::frame(index, event.name(), &data(event, &root, links));
            let opened = std::time::Instant::now();
            let followed = api.streams.follow(job, first, render, &mut ToClient(sender)).await;
            api.streams.close(&holder).await;
            tracing::info!(
                end = ?followed.end,
                reads = followed.reads,
                open_ms = opened.elapsed().as_millis() as u64,
                "the stream ended"
            );
        }
        .in_current_span(),
    );
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx, for one) pass the events on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(allowance) = &allowance {
        stamp(&mut response, allowance);
    }
    Ok(response)
}

/// The request's signature of this job's stream link, if it carries a valid one.
fn signature(links: &FileLinks, id: JobId, request: &Request) -> Option<String> {
    let (expires, signature) = link_signature(request)?;
    let signer = links.signer.as_ref()?;
    signer
        .verify_stream(id, expires, &signature, Utc::now().timestamp())
        .then_some(signature)
}

/// An event's data: the JSON of a status, the text of logs and errors, an image's URL, and
/// Replicate's `{}` at the end (with the reason when the job was canceled).
fn data(event: &StreamEvent, root: &str, links: &FileLinks) -> String {
    match event {
        StreamEvent::Status(status) => json!({ "status": status }).to_string(),
        StreamEvent::Logs(text) | StreamEvent::Error(text) => text.clone(),
        StreamEvent::Output(media) => {
            let expires = Utc::now().timestamp() + links.ttl.as_secs() as i64;
            file_url(root, *media, links, expires)
        }
        StreamEvent::Done { canceled: false } => "{}".to_owned(),
        StreamEvent::Done { canceled: true } => json!({"reason": "canceled"}).to_string(),
    }
}

/// The response body's sending half.
struct ToClient(Sender);

impl EventSink for ToClient {
    async fn send(&mut self, text: String) -> Result<(), ClientGone> {
        self.0.send_data(text.into()).await.map_err(|_| ClientGone)
    }
}

/// An answer made whole (a problem) as a streamed response's body.
fn whole(response: Response<Body>) -> Response<StreamBody> {
    response.map(|body| match body {
        Body::Empty => StreamBody::empty(),
        Body::Text(text) => StreamBody::from(text),
        Body::Binary(bytes) => StreamBody::from(bytes),
        _ => StreamBody::empty(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::ids::MediaId;
    use crate::domain::job::JobStatus;

    #[test]
    fn each_event_carries_the_data_a_replicate_client_reads() {
        let links = FileLinks {
            signer: None,
            ttl: Duration::from_secs(60),
        };
        let media = MediaId::new();
        let status = StreamEvent::Status(JobStatus::Processing);
        assert_eq!(data(&status, "http://h", &links), r#"{"status":"processing"}"#);
        assert_eq!(
            data(&StreamEvent::Output(media), "http://h", &links),
            format!("http://h/v1/files/{media}")
        );
        assert_eq!(data(&StreamEvent::Done { canceled: false }, "", &links), "{}");
        assert_eq!(
            data(&StreamEvent::Done { canceled: true }, "", &links),
            r#"{"reason":"canceled"}"#
        );
    }
}
