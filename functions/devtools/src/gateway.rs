//! The local stand-in for API Gateway in front of `cargo lambda watch`: it forwards every request
//! unchanged, and gives bodies to the functions as the deployed API does (docs/design.md,
//! "HTTP contract"). `cargo lambda watch` turns a JSON or text body into the event's text and
//! answers a body that is not UTF-8 with a 500 of its own before any function runs; the deployed
//! API passes every body through as bytes (`BinaryMediaTypes: */*`), and our functions answer a
//! body that is not UTF-8 with the `malformed-json` problem. Here that answer is the same
//! problem, made by the same code, without the round trip. A request without effects whose
//! answer `cargo lambda watch` lost is sent again (`is_emulator_fault`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mediagen::entrypoints::http::ApiError;
use tokio::net::TcpListener;

use crate::Error;

/// The problem type of `cargo lambda watch`'s own 500 (see `is_emulator_fault`).
const EMULATOR_FAULT_TYPE: &str = "https://httpstatuses.com/500";
/// How often a request without effects is sent again after that 500.
const EMULATOR_FAULT_RESENDS: usize = 3;

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
    let send = || {
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
        outgoing.body(body.clone()).send()
    };
    let without_effects = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut resends = 0;
    let (status, headers, bytes) = loop {
        let answer = send().await?;
        let (status, headers) = (answer.status(), answer.headers().clone());
        let bytes = answer.bytes().await?;
        if without_effects && resends < EMULATOR_FAULT_RESENDS && is_emulator_fault(status, &bytes) {
            resends += 1;
            eprintln!(
                "gateway: cargo lambda watch lost the answer to {} {path}; sending it again",
                parts.method
            );
            continue;
        }
        break (status, headers, bytes);
    };
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
}

/// Whether `cargo lambda watch` answered a 500 of its own rather than the function's answer: it
/// now and then fails to read a function's answer of more than about 10 KB while another request
/// waits for the same function (docs/design.md, "Local stack"). Our functions' problems are never
/// of this type.
fn is_emulator_fault(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::INTERNAL_SERVER_ERROR
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|problem| problem["type"] == EMULATOR_FAULT_TYPE)
}

/// The problem the functions would answer, rendered by their own code.
fn problem(error: ApiError) -> Response<Full<Bytes>> {
    let rendered = error.problem().into_response();
    let (parts, body) = rendered.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const FAULT: &str = r#"{"type":"https://httpstatuses.com/500","status":500,"title":"Internal Server Error"}"#;

    /// An upstream that answers the emulator's 500 to its first `faults` requests, then 200.
    async fn upstream(faults: usize) -> Result<(String, Arc<AtomicUsize>), Error> {
        let (listener, bound) = bind(([127, 0, 0, 1], 0).into()).await?;
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let service = service_fn(move |_: Request<Incoming>| {
                    let faulty = counter.fetch_add(1, Ordering::SeqCst) < faults;
                    let (status, body) = match faulty {
                        true => (StatusCode::INTERNAL_SERVER_ERROR, FAULT),
                        false => (StatusCode::OK, "answered"),
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *response.status_mut() = status;
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Ok((format!("http://{bound}"), seen))
    }

    async fn gateway_before(upstream: String) -> Result<String, Error> {
        let (listener, bound) = bind(([127, 0, 0, 1], 0).into()).await?;
        tokio::spawn(serve(listener, upstream));
        Ok(format!("http://{bound}"))
    }

    #[tokio::test]
    async fn a_lost_answer_to_a_request_without_effects_is_asked_again() -> Result<(), Error> {
        let (upstream, seen) = upstream(2).await?;
        let gateway = gateway_before(upstream).await?;
        let answer = reqwest::get(format!("{gateway}/playground")).await?;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.text().await?, "answered");
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_request_with_effects_is_sent_once() -> Result<(), Error> {
        let (upstream, seen) = upstream(1).await?;
        let gateway = gateway_before(upstream).await?;
        let answer = reqwest::Client::new()
            .post(format!("{gateway}/v1/predictions"))
            .send()
            .await?;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_emulator_that_keeps_failing_is_answered_as_it_came() -> Result<(), Error> {
        let (upstream, seen) = upstream(usize::MAX).await?;
        let gateway = gateway_before(upstream).await?;
        let answer = reqwest::get(format!("{gateway}/openapi.json")).await?;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.text().await?, FAULT);
        assert_eq!(seen.load(Ordering::SeqCst), 1 + EMULATOR_FAULT_RESENDS);
        Ok(())
    }
}
