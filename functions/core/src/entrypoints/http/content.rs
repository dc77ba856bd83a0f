//! The `content` function: `GET /media/content/{media_id}`, a redirect to a presigned URL or the
//! URL as JSON; and `GET /v1/files/{media_id}`, the image's bytes for the Replicate-compatible
//! API.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use super::problem::Problem;
use super::replicate;
use super::routes::{self, ContentEndpoint, Endpoint};
use super::{ApiError, OnFirstUse, accepts_json, json_response, respond, with_caller};
use crate::domain::ids::MediaId;
use crate::domain::timestamp;
use crate::entrypoints::views::{ContentLinkView, FileLinks};
use crate::ports::{JobStore, KeyStore, MediaError, MediaReader};
use crate::services::auth::{Authenticator, Caller};
use crate::services::content::{ContentError, ContentService};

/// What the `content` function serves.
pub struct ContentApi<S, M> {
    pub auth: Authenticator<S>,
    pub content: ContentService<S, M>,
    /// Made at the first request that hands out or checks a file link.
    pub links: OnFirstUse<FileLinks>,
}

pub async fn handle<S: JobStore + KeyStore, M: MediaReader>(
    api: &ContentApi<S, M>,
    request: Request,
) -> Response<Body> {
    let span =
        tracing::info_span!("content", request_id = %super::request_id(&request), job_id = tracing::field::Empty);
    async { respond(&request, answer(api, &request).await) }
        .instrument(span)
        .await
}

async fn answer<S: JobStore + KeyStore, M: MediaReader>(
    api: &ContentApi<S, M>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let (endpoint, matched) = routes::endpoint(request)?;
    let raw_id = matched.param("media_id");
    match endpoint {
        Endpoint::Content(ContentEndpoint::Content) => {
            with_caller(&api.auth, request, endpoint.class(), async |caller| {
                content(api, caller, raw_id, request).await
            })
            .await
        }
        Endpoint::Content(ContentEndpoint::File) => {
            let id = MediaId::parse(raw_id).map_err(|_| ApiError::MalformedId { param: "media_id" })?;
            // A signed link needs no key, so it counts against none.
            if replicate::signed(api.links.get().await?, id, request) {
                return replicate::file(&api.content, None, id).await;
            }
            with_caller(&api.auth, request, endpoint.class(), async |caller| {
                replicate::file(&api.content, Some(caller), id).await
            })
            .await
        }
        Endpoint::Submit(_) | Endpoint::Status(_) | Endpoint::Public(_) | Endpoint::Stream => {
            Err(ApiError::NoRoute(routes::request_path(request).to_owned()))
        }
    }
}

/// A short-lived link to an image: a redirect, or with `Accept: application/json` the link.
#[utoipa::path(get, path = "/media/content/{media_id}", tag = "jobs",
    params(("media_id" = String, Path, format = "uuid", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The image's id")),
    responses(
        (status = 302, description = "To a presigned link"),
        (status = 200, description = "The link, with Accept: application/json", body = ContentLinkView),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No key, or not a key of ours", body = Problem, content_type = "application/problem+json"), (status = 404, description = "None of the caller's has this id", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn content<S: JobStore + KeyStore, M: MediaReader>(
    api: &ContentApi<S, M>,
    caller: &Caller,
    raw_id: &str,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let service = &api.content;
    let id = MediaId::parse(raw_id).map_err(|_| ApiError::MalformedId { param: "media_id" })?;
    let (item, link) = service
        .link(caller, id)
        .await?
        .ok_or(ApiError::NotFound { what: "media" })?;

    let mut response = if accepts_json(request) {
        json_response(
            StatusCode::OK,
            &ContentLinkView {
                url: link.url,
                expires_at: timestamp::render(link.expires_at),
                content_type: item.content_type,
            },
        )
    } else {
        let mut redirect = Response::new(Body::Empty);
        *redirect.status_mut() = StatusCode::FOUND;
        let location =
            HeaderValue::from_str(&link.url).map_err(|e| ContentError::Media(MediaError::Presign(e.to_string())))?;
        redirect.headers_mut().insert(header::LOCATION, location);
        redirect
    };
    // Caches may keep the answer a little less long than the URL lives (its credentials may end it early).
    let lives = (link.expires_at - chrono::Utc::now()).num_seconds().max(0) as u64;
    let max_age = lives.saturating_sub(lives / 10 + 5);
    if let Ok(value) = HeaderValue::from_str(&format!("private, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}
