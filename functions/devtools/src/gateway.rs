//! The local stand-in for API Gateway's REST API and the Lambda functions behind it
//! (docs/design.md, "Local stack"). Each request goes by its path to a function, by the one route
//! table of the API (`mediagen::entrypoints::http::routes`), as the REST API's proxy event; a
//! path no route takes goes where template.yaml's `/{proxy+}` sends it. The function runs as
//! Lambda runs it (`runtime_api.rs`), up to a number of instances at once, each its own process
//! serving one invocation at a time; its proxy answer becomes the HTTP answer. As the deployed
//! API (`BinaryMediaTypes: */*`) does, every body reaches the function as base64 bytes, so a body
//! that is not UTF-8 meets the function's own `malformed-json` problem. Lambda's Invoke API
//! (`POST /2015-03-31/functions/NAME/invocations`, what `cargo lambda invoke` calls) runs any of
//! the functions with the event given. A function that streams its answer (the `stream`
//! function, `responseTransferMode: STREAM` in template.yaml) has it passed on as it comes: its
//! metadata prelude becomes the status and headers, and each chunk after the delimiter is sent on
//! at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use mediagen::entrypoints::http::routes::{self, Function};

use crate::Error;
use crate::runtime_api::{FunctionPool, InvokeError, Reply, Streamed};

/// What the gateway answers with: a whole body, or a streamed one.
type GatewayBody = BoxBody<Bytes, Infallible>;

/// What separates a streamed answer's metadata prelude from its body: eight NUL bytes.
const PRELUDE_DELIMITER: &[u8] = &[0; 8];

/// Lambda's Invoke API, served besides the API's routes.
static INVOKE_API: LazyLock<matchit::Router<()>> =
    LazyLock::new(|| crate::path_router("gateway", [("/2015-03-31/functions/{function}/invocations", ())]));

/// The functions and their timeouts (see the file's `about`).
const LAMBDA: &str = include_str!("../lambda.json");

#[derive(Deserialize)]
struct Lambda {
    functions: HashMap<String, FunctionSettings>,
}

#[derive(Deserialize)]
struct FunctionSettings {
    timeout_seconds: u64,
    /// The fewest instances of it that may run at once, whatever the gateway is given.
    #[serde(default)]
    least_instances: usize,
}

/// Where a request leads: the REST API's resource (`/media/status/{job_id}`), the function
/// behind it, and the path's parameters.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    resource: String,
    function: Function,
    parameters: HashMap<String, String>,
}

/// The route of `path`: the table's, or template.yaml's `/` and greedy `/{proxy+}` to the
/// fallback function.
fn route(path: &str) -> Route {
    match routes::route(path) {
        Some(matched) => Route {
            resource: matched.route.path.to_owned(),
            function: matched.route.function(),
            parameters: matched
                .params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        },
        None => match path.trim_matches('/') {
            "" => Route {
                resource: "/".to_owned(),
                function: routes::FALLBACK,
                parameters: HashMap::new(),
            },
            proxy => Route {
                resource: "/{proxy+}".to_owned(),
                function: routes::FALLBACK,
                parameters: HashMap::from([("proxy".to_owned(), proxy.to_owned())]),
            },
        },
    }
}

/// The functions behind the routes.
pub struct Gateway {
    functions: HashMap<String, FunctionPool>,
    throttle: Option<Throttle>,
}

/// API Gateway's stage throttle: a bucket of `burst` requests, refilled at `rate` a second; a
/// request that finds it empty is answered `THROTTLED` and reaches no function.
struct Throttle {
    rate: f64,
    burst: f64,
    /// The requests the bucket holds, and when it was last refilled.
    bucket: std::sync::Mutex<(f64, Instant)>,
}

impl Throttle {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            bucket: std::sync::Mutex::new((burst, Instant::now())),
        }
    }

    fn admit(&self) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return true;
        };
        let (tokens, refilled) = *bucket;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(refilled).as_secs_f64() * self.rate).min(self.burst);
        let admitted = tokens >= 1.0;
        *bucket = (if admitted { tokens - 1.0 } else { tokens }, now);
        admitted
    }
}

/// API Gateway's own answers, as template.yaml's `GatewayResponses` shape them: problem+json,
/// `Retry-After` where another try may succeed. `$context.error.messageString` is API Gateway's
/// message, quoted; a unit test holds template.yaml to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatewayAnswer {
    Throttled,
    IntegrationTimeout,
    Default5xx,
}

impl GatewayAnswer {
    fn template(self) -> &'static str {
        match self {
            GatewayAnswer::Throttled => {
                r#"{"type":"urn:mediagen:problem:throttled","title":"Too many requests","status":429,"detail":"requests to the API are over its rate limit; try again after Retry-After"}"#
            }
            GatewayAnswer::IntegrationTimeout => {
                r#"{"type":"urn:mediagen:problem:gateway-timeout","title":"Gateway timeout","status":504,"detail":"the function did not answer in time; try again after Retry-After"}"#
            }
            GatewayAnswer::Default5xx => {
                r#"{"type":"urn:mediagen:problem:gateway-error","title":"Gateway error","detail":$context.error.messageString}"#
            }
        }
    }

    fn status(self) -> StatusCode {
        match self {
            GatewayAnswer::Throttled => StatusCode::TOO_MANY_REQUESTS,
            GatewayAnswer::IntegrationTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayAnswer::Default5xx => StatusCode::BAD_GATEWAY,
        }
    }

    fn retry_after(self) -> &'static str {
        match self {
            GatewayAnswer::Throttled => "1",
            GatewayAnswer::IntegrationTimeout | GatewayAnswer::Default5xx => "5",
        }
    }

    /// The answer, with API Gateway's `message` where the template takes it.
    fn answer(self, message: &str) -> Response<Full<Bytes>> {
        let body = self
            .template()
            .replace("$context.error.messageString", &Value::from(message).to_string());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static(self.retry_after()));
        response
    }
}

impl Gateway {
    /// Runs each function of `lambda.json` from the binary of its name in `binaries`, up to
    /// `instances` of each at once (or its `least_instances`). Nothing starts before its first
    /// request.
    pub fn new(binaries: &Path, instances: usize) -> Result<Self, Error> {
        let api: Lambda = serde_json::from_str(LAMBDA)?;
        let mut functions = HashMap::new();
        for (name, settings) in &api.functions {
            let program = binaries.join(name).to_string_lossy().into_owned();
            let timeout = Duration::from_secs(settings.timeout_seconds);
            functions.insert(
                name.clone(),
                FunctionPool::new(name, vec![program], timeout, instances.max(settings.least_instances))?,
            );
        }
        for route in routes::ROUTES {
            let function = route.function().name();
            if !functions.contains_key(function) {
                return Err(format!("{} routes to {function}, which is not a function", route.path).into());
            }
        }
        Ok(Self {
            functions,
            throttle: None,
        })
    }

    /// Throttles the API's requests as a REST API's stage does: `rate` a second, `burst` at once.
    /// Lambda's Invoke API is not throttled.
    pub fn throttled(mut self, rate: f64, burst: f64) -> Self {
        self.throttle = Some(Throttle::new(rate, burst));
        self
    }

    /// Runs `function` with `payload`; `None` if there is no such function. As on Lambda, the
    /// invocation runs to its end even if the client goes away meanwhile; a streamed answer is
    /// handed over as it begins.
    async fn run(self: &Arc<Self>, function: &str, payload: Bytes) -> Option<Result<Reply, InvokeError>> {
        if !self.functions.contains_key(function) {
            return None;
        }
        let (gateway, function) = (self.clone(), function.to_owned());
        let (first, reply) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Some(pool) = gateway.functions.get(&function) {
                pool.serve(payload, first).await;
            }
        });
        Some(
            reply
                .await
                .unwrap_or_else(|_| Err(InvokeError::Exited("the invocation was dropped".into()))),
        )
    }

    /// Lambda's Invoke API: the function's answer as it gave it; its error with
    /// `X-Amz-Function-Error`, as Lambda reports one.
    async fn invoke_api(self: &Arc<Self>, function: &str, event: Bytes) -> Response<Full<Bytes>> {
        match self.run(function, event).await {
            Some(Ok(answer)) => Response::new(Full::new(answer.into_bytes().await)),
            Some(Err(InvokeError::Failed(error))) => {
                let mut response = Response::new(Full::new(Bytes::from(error)));
                response
                    .headers_mut()
                    .insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
                response
            }
            Some(Err(err)) => message(StatusCode::BAD_GATEWAY, &err.to_string()),
            None => message(StatusCode::NOT_FOUND, &format!("Function not found: {function}")),
        }
    }

    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Response<GatewayBody> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                return boxed(message(
                    StatusCode::BAD_REQUEST,
                    &format!("the body did not arrive: {err}"),
                ));
            }
        };
        let path = parts.uri.path();
        if parts.method == Method::POST
            && let Ok(invoke) = INVOKE_API.at(path)
        {
            return boxed(
                self.invoke_api(invoke.params.get("function").unwrap_or_default(), body)
                    .await,
            );
        }
        if self.throttle.as_ref().is_some_and(|throttle| !throttle.admit()) {
            return boxed(GatewayAnswer::Throttled.answer("Too Many Requests"));
        }
        let route = route(path);
        let event = proxy_event(&parts, &body, &route.resource, &route.parameters);
        let function = route.function.name();
        let failure = match self.run(function, Bytes::from(event.to_string())).await {
            Some(Ok(Reply::Whole(answer))) => match proxy_answer(&answer) {
                Ok(response) => return boxed(response),
                Err(err) => format!("the function's answer is not a proxy answer: {err}"),
            },
            Some(Ok(Reply::Streamed(streamed))) => match streamed_answer(streamed).await {
                Ok(response) => return response,
                Err(err) => format!("the function's streamed answer has no metadata prelude: {err}"),
            },
            Some(Err(InvokeError::TimedOut(after))) => {
                eprintln!("gateway: {} {path}: timed out after {after:?}", parts.method);
                return boxed(GatewayAnswer::IntegrationTimeout.answer("Endpoint request timed out"));
            }
            Some(Err(err)) => err.to_string(),
            None => format!("no function {function}"),
        };
        eprintln!("gateway: {} {path}: {failure}", parts.method);
        boxed(GatewayAnswer::Default5xx.answer("Internal server error"))
    }
}

/// Serves `gateway` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) -> Result<(), Error> {
    loop {
        let (stream, _) = listener.accept().await?;
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.answer(request).await) }
            });
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

/// The REST API's proxy event for a request (the shape of `events/submit.json`). It names no
/// stage: the client's path has none locally, and the links the functions make keep to it.
fn proxy_event(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    resource: &str,
    parameters: &HashMap<String, String>,
) -> Value {
    let (headers, multi_value_headers) = single_and_multi(
        parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned())),
    );
    let (query, multi_value_query) = single_and_multi(
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into(), v.into())),
    );
    let nullable = |map: Value| match map.as_object().is_some_and(Map::is_empty) {
        true => Value::Null,
        false => map,
    };
    let path = parts.uri.path();
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": parts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "queryStringParameters": nullable(query),
        "multiValueQueryStringParameters": nullable(multi_value_query),
        "pathParameters": nullable(json!(parameters)),
        "stageVariables": null,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": parts.method.as_str(),
            "path": path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "requestId": format!("{:032x}", fastrand::u128(..)),
            "requestTimeEpoch": crate::runtime_api::epoch_ms(),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": match body.is_empty() {
            true => Value::Null,
            false => json!(BASE64.encode(body)),
        },
        "isBase64Encoded": !body.is_empty(),
    })
}

/// The REST API's two forms of name-value pairs (headers, a query): the last value of each
/// name, and every value of each name.
fn single_and_multi(pairs: impl Iterator<Item = (String, String)>) -> (Value, Value) {
    let (mut single, mut multi) = (HashMap::new(), HashMap::<String, Vec<String>>::new());
    for (name, value) in pairs {
        multi.entry(name.clone()).or_default().push(value.clone());
        single.insert(name, value);
    }
    (json!(single), json!(multi))
}

/// A function's proxy answer (`lambda_http` writes it for a REST event).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyAnswer {
    status_code: u16,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    multi_value_headers: HashMap<String, Vec<String>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

fn proxy_answer(answer: &[u8]) -> Result<Response<Full<Bytes>>, Error> {
    let answer: ProxyAnswer = serde_json::from_slice(answer)?;
    let body = match (answer.body, answer.is_base64_encoded) {
        (None, _) => Bytes::new(),
        (Some(body), true) => Bytes::from(BASE64.decode(body)?),
        (Some(body), false) => Bytes::from(body),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(answer.status_code)?;
    let headers = response.headers_mut();
    for (name, values) in &answer.multi_value_headers {
        let name = HeaderName::from_bytes(name.as_bytes())?;
        for value in values {
            headers.append(name.clone(), HeaderValue::from_str(value)?);
        }
    }
    for (name, value) in &answer.headers {
        let name = HeaderName::from_bytes(name.as_bytes())?;
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_str(value)?);
        }
    }
    // The body's length is the server's to say.
    headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(response)
}

fn boxed(response: Response<Full<Bytes>>) -> Response<GatewayBody> {
    response.map(|body| body.boxed())
}

/// A streamed answer's metadata prelude (`lambda_http` writes it): the status and headers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prelude {
    status_code: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    cookies: Vec<String>,
}

/// The HTTP answer of a streamed one: its prelude's status and headers once they have come,
/// then each chunk of its body as it comes.
async fn streamed_answer(mut streamed: Streamed) -> Result<Response<GatewayBody>, Error> {
    let mut head = Vec::new();
    let split = loop {
        if let Some(at) = head
            .windows(PRELUDE_DELIMITER.len())
            .position(|w| w == PRELUDE_DELIMITER)
        {
            break at;
        }
        match streamed.chunks.recv().await {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => return Err("the answer ended before its prelude's delimiter".into()),
        }
    };
    let prelude: Prelude = serde_json::from_slice(&head[..split])?;
    let first = Bytes::copy_from_slice(&head[split + PRELUDE_DELIMITER.len()..]);
    let rest = futures::stream::unfold(streamed.chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let chunks = futures::stream::iter((!first.is_empty()).then_some(first))
        .chain(rest)
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    *response.status_mut() = StatusCode::from_u16(prelude.status_code)?;
    let headers = response.headers_mut();
    for (name, value) in &prelude.headers {
        let name = HeaderName::from_bytes(name.as_bytes())?;
        let values = match value {
            Value::Array(values) => values.iter().filter_map(Value::as_str).collect(),
            value => value.as_str().into_iter().collect::<Vec<_>>(),
        };
        for value in values {
            headers.append(name.clone(), HeaderValue::from_str(value)?);
        }
    }
    for cookie in &prelude.cookies {
        headers.append(hyper::header::SET_COOKIE, HeaderValue::from_str(cookie)?);
    }
    Ok(response)
}

/// Lambda's Invoke API's own answers: a JSON object with a message.
fn message(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(json!({ "message": text }).to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(path: &str) -> (Function, String, Vec<(String, String)>) {
        let route = route(path);
        let mut parameters: Vec<_> = route.parameters.into_iter().collect();
        parameters.sort();
        (route.function, route.resource, parameters)
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_path_reaches_the_function_of_its_route() {
        assert_eq!(
            routed("/media/generate"),
            (Function::Submit, "/media/generate".into(), vec![])
        );
        assert_eq!(
            routed("/media/jobs/abc/cancel"),
            (
                Function::Submit,
                "/media/jobs/{job_id}/cancel".into(),
                pairs(&[("job_id", "abc")])
            )
        );
        assert_eq!(
            routed("/media/jobs/abc/"),
            (
                Function::Status,
                "/media/jobs/{job_id}".into(),
                pairs(&[("job_id", "abc")])
            )
        );
        assert_eq!(
            routed("/v1/models/acme/painter/predictions"),
            (
                Function::Submit,
                "/v1/models/{owner}/{name}/predictions".into(),
                pairs(&[("name", "painter"), ("owner", "acme")])
            )
        );
        assert_eq!(
            routed("/v1/files/m1"),
            (
                Function::Content,
                "/v1/files/{media_id}".into(),
                pairs(&[("media_id", "m1")])
            )
        );
        assert_eq!(routed("/"), (Function::Status, "/".into(), vec![]));
    }

    #[test]
    fn a_path_no_route_takes_goes_to_the_greedy_route() {
        assert_eq!(
            routed("/no/such/path"),
            (
                Function::Status,
                "/{proxy+}".into(),
                pairs(&[("proxy", "no/such/path")])
            )
        );
        assert_eq!(
            routed("/media/jobs/abc/cancel/more"),
            (
                Function::Status,
                "/{proxy+}".into(),
                pairs(&[("proxy", "media/jobs/abc/cancel/more")])
            )
        );
    }

    #[test]
    fn the_router_of_cargo_lambda_watch_is_the_route_table() {
        let manifest: toml::Table = toml::from_str(include_str!("../../../Cargo.toml")).unwrap();
        let router = &manifest["workspace"]["metadata"]["lambda"]["watch"]["router"];
        let watch: HashMap<String, String> = router.clone().try_into().unwrap();
        let mut expected: HashMap<String, String> = routes::ROUTES
            .iter()
            .map(|route| (route.path.to_owned(), route.function().name().to_owned()))
            .collect();
        for fallback in ["/", "/{*proxy}"] {
            expected.insert(fallback.to_owned(), routes::FALLBACK.name().to_owned());
        }
        assert_eq!(watch, expected);
    }

    #[test]
    fn the_gateways_own_answers_are_template_yamls() {
        let template = include_str!("../../../template.yaml");
        for answer in [
            GatewayAnswer::Throttled,
            GatewayAnswer::IntegrationTimeout,
            GatewayAnswer::Default5xx,
        ] {
            let body = format!("application/json: '{}'", answer.template());
            assert!(template.contains(&body), "template.yaml has no {answer:?} of {body}");
            let retry_after = format!("Retry-After: \"'{}'\"", answer.retry_after());
            assert!(template.contains(&retry_after), "{retry_after}");
        }
        let answered = GatewayAnswer::Default5xx.answer("Internal server error");
        assert_eq!(answered.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn the_throttle_admits_its_burst_then_its_rate() {
        let throttle = Throttle::new(10.0, 3.0);
        assert_eq!((0..5).filter(|_| throttle.admit()).count(), 3);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!((0..5).filter(|_| throttle.admit()).count(), 2);
    }

    #[test]
    fn every_function_of_the_table_has_a_timeout() {
        let api: Lambda = serde_json::from_str(LAMBDA).unwrap();
        for route in routes::ROUTES {
            assert!(api.functions.contains_key(route.function().name()), "{}", route.path);
        }
        assert!(api.functions.values().all(|f| f.timeout_seconds > 0));
    }

    #[test]
    fn the_event_carries_the_request_as_the_rest_api_sends_it() {
        let request = Request::post("/v1/predictions?a=1&a=two%20words&b=")
            .header("content-type", "application/json")
            .header("x-many", "one")
            .header("x-many", "two")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let event = proxy_event(&parts, b"{\"x\":1}", "/v1/predictions", &HashMap::new());
        assert_eq!(event["httpMethod"], "POST");
        assert_eq!(event["path"], "/v1/predictions");
        assert_eq!(event["requestContext"]["resourcePath"], "/v1/predictions");
        assert_eq!(event["queryStringParameters"], json!({"a": "two words", "b": ""}));
        assert_eq!(event["multiValueQueryStringParameters"]["a"], json!(["1", "two words"]));
        assert_eq!(event["multiValueHeaders"]["x-many"], json!(["one", "two"]));
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(BASE64.decode(event["body"].as_str().unwrap()).unwrap(), b"{\"x\":1}");
    }

    #[test]
    fn a_request_without_a_body_has_none_in_its_event() {
        let (parts, ()) = Request::get("/media/jobs").body(()).unwrap().into_parts();
        let event = proxy_event(&parts, b"", "/media/jobs", &HashMap::new());
        assert_eq!(event["body"], Value::Null);
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(event["queryStringParameters"], Value::Null);
    }

    #[test]
    fn a_proxy_answer_becomes_the_http_answer() {
        let answer = json!({
            "statusCode": 201,
            "headers": {"content-type": "image/png", "x-one": "a"},
            "multiValueHeaders": {"set-cookie": ["a=1", "b=2"], "content-type": ["image/png"]},
            "body": BASE64.encode([0x89, b'P', b'N', b'G']),
            "isBase64Encoded": true,
        });
        let response = proxy_answer(answer.to_string().as_bytes()).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let headers = response.headers();
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
        assert_eq!(headers["x-one"], "a");
        let text = json!({"statusCode": 404, "body": "{\"type\":\"x\"}"});
        assert_eq!(
            proxy_answer(text.to_string().as_bytes()).unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn an_answer_that_is_not_a_proxy_answer_is_refused() {
        assert!(proxy_answer(b"{\"n\":1}").is_err());
        assert!(proxy_answer(b"not json").is_err());
    }
}
