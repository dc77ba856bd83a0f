//! The local stand-in for API Gateway in front of `cargo lambda watch`: it forwards every request
//! unchanged, and gives bodies to the functions as the deployed API does (docs/design.md,
//! "HTTP contract"). `cargo lambda watch` turns a JSON or text body into the event's text and
//! answers a body that is not UTF-8 with a 500 of its own before any function runs; the deployed
//! API passes every body through as bytes (`BinaryMediaTypes: */*`), and our functions answer a
//! body that is not UTF-8 with the `malformed-json` problem. Here that answer is the same
//! problem, made by the same code, without the round trip.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mediagen::entrypoints::http::ApiError;
use tokio::net::TcpListener;

use crate::Error;

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Serves on `listener`, forwarding to `upstream` (`http://127.0.0.1:PORT`), until the process ends.
pub async fn serve(listener: TcpListener, upstream: String) -> Result<(), Error> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (http, upstream) = (http.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| forward(http.clone(), upstream.clone(), request));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("gateway: connection ended: {err}");
            }
        });
    }
}

/// Binds `address`; answers the address bound (port 0 picks a free one).
pub async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

async fn forward(
    http: reqwest::Client,
    upstream: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match try_forward(&http, &upstream, request).await {
        Ok(response) => response,
        Err(err) => {
            eprintln!("gateway: {err}");
            let mut response = Response::new(Full::new(Bytes::from_static(b"the local stack did not answer")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    })
}

async fn try_forward(
    http: &reqwest::Client,
    upstream: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let textual = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/") || t.starts_with("application/json"));
    if textual && let Err(err) = std::str::from_utf8(&body) {
        return Ok(problem(ApiError::MalformedJson(format!(
            "the body is not UTF-8: {err}"
        ))));
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = http.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    // The host the client called, for the links the functions make.
    if let Some(host) = parts.headers.get(HOST) {
        outgoing = outgoing.header("x-forwarded-host", host);
    }
    let answer = outgoing.body(body).send().await?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = answer.status();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            response.headers_mut().append(name, value.clone());
        }
    }
    *response.body_mut() = Full::new(answer.bytes().await?);
    Ok(response)
}

/// The problem the functions would answer, rendered by their own code.
fn problem(error: ApiError) -> Response<Full<Bytes>> {
    let rendered = error.problem().into_response();
    let (parts, body) = rendered.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}
