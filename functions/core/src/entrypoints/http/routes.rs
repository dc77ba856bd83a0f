//! The one route table (docs/design.md, "HTTP contract"): every path the API serves, what each
//! method does there, and so which function serves it. Each HTTP function dispatches by it, the
//! local API Gateway (`mediagen-dev gateway`) routes by it, and the router of `cargo lambda watch`
//! in the workspace's Cargo.toml is its copy, which a test of `mediagen-devtools` holds to it.
//! Paths are written as `matchit` (axum's router) and API Gateway both write them: `{name}` is
//! one segment.

use std::sync::LazyLock;

use lambda_http::http::Method;
use lambda_http::{Request, RequestExt};

use super::ApiError;
use crate::domain::limits::RouteClass;

/// The HTTP functions, by their binaries' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Submit,
    Status,
    Content,
    /// The one that streams its answers (docs/design.md, "Progress stream").
    Stream,
}

impl Function {
    pub fn name(self) -> &'static str {
        match self {
            Function::Submit => "submit",
            Function::Status => "status",
            Function::Content => "content",
            Function::Stream => "stream",
        }
    }
}

/// Where a path no route takes goes: `/` and `/{proxy+}` in template.yaml, whose function
/// answers it with the `no-route` problem.
pub const FALLBACK: Function = Function::Status;

/// What `submit` serves: the writes, and `GET /v1/predictions`, a read on the path where
/// Replicate's API creates, so served where every method of that path arrives; and
/// `POST /v1/images/generations`, which creates a job and waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitEndpoint {
    Generate,
    CancelJob,
    CreatePrediction,
    CreateModelPrediction,
    ListPredictions,
    CancelPrediction,
    CreateImage,
}

/// What `status` serves with a key: the reads, and the rotation of the webhook secret it shows
/// (it alone holds the master key among the HTTP functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEndpoint {
    JobStatus,
    Job,
    ListJobs,
    GetPrediction,
    WebhookSecret,
    Usage,
    RotateWebhookSecret,
}

/// What `status` serves to anyone, without a key: the playground asks for the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicEndpoint {
    Health,
    Playground,
    OpenApi,
    Models,
}

/// What `content` serves: the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEndpoint {
    Content,
    File,
}

/// What one method of one path does, and so which function does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Submit(SubmitEndpoint),
    Status(StatusEndpoint),
    Public(PublicEndpoint),
    Content(ContentEndpoint),
    /// A job's progress as Server-Sent Events, the `stream` function's one endpoint.
    Stream,
}

impl Endpoint {
    /// The class of the key's rate limits a request here counts against: making a job, or
    /// anything else.
    pub fn class(self) -> RouteClass {
        match self {
            Endpoint::Submit(
                SubmitEndpoint::Generate
                | SubmitEndpoint::CreatePrediction
                | SubmitEndpoint::CreateModelPrediction
                | SubmitEndpoint::CreateImage,
            ) => RouteClass::Create,
            _ => RouteClass::Other,
        }
    }

    pub fn function(self) -> Function {
        match self {
            Endpoint::Submit(_) => Function::Submit,
            Endpoint::Status(_) | Endpoint::Public(_) => Function::Status,
            Endpoint::Content(_) => Function::Content,
            Endpoint::Stream => Function::Stream,
        }
    }
}

/// A path and what each of its methods does. All of a path's methods reach one function, as a
/// REST API resource reaches one integration.
#[derive(Debug)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [(Method, Endpoint)],
}

impl Route {
    pub fn function(&self) -> Function {
        self.methods
            .first()
            .map_or(FALLBACK, |(_, endpoint)| endpoint.function())
    }

    /// The `Allow` header's value: the methods of this path.
    pub fn allow(&self) -> String {
        let methods: Vec<&str> = self.methods.iter().map(|(method, _)| method.as_str()).collect();
        methods.join(", ")
    }
}

use ContentEndpoint as C;
use StatusEndpoint as St;
use SubmitEndpoint as Su;

/// The OpenAI-compatible images API's route, whose errors are written OpenAI's way.
pub const IMAGE_GENERATIONS: &str = "/v1/images/generations";

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    path("/media/generate", &[(Method::POST, Endpoint::Submit(Su::Generate))]),
    path(
        "/media/jobs/{job_id}/cancel",
        &[(Method::POST, Endpoint::Submit(Su::CancelJob))],
    ),
    path(
        "/media/status/{job_id}",
        &[(Method::GET, Endpoint::Status(St::JobStatus))],
    ),
    path("/media/jobs", &[(Method::GET, Endpoint::Status(St::ListJobs))]),
    path("/media/jobs/{job_id}", &[(Method::GET, Endpoint::Status(St::Job))]),
    path(
        "/media/content/{media_id}",
        &[(Method::GET, Endpoint::Content(C::Content))],
    ),
    path(
        "/v1/predictions",
        &[
            (Method::GET, Endpoint::Submit(Su::ListPredictions)),
            (Method::POST, Endpoint::Submit(Su::CreatePrediction)),
        ],
    ),
    path(
        "/v1/models/{owner}/{name}/predictions",
        &[(Method::POST, Endpoint::Submit(Su::CreateModelPrediction))],
    ),
    path(
        "/v1/predictions/{prediction_id}/cancel",
        &[(Method::POST, Endpoint::Submit(Su::CancelPrediction))],
    ),
    path(
        "/v1/predictions/{prediction_id}",
        &[(Method::GET, Endpoint::Status(St::GetPrediction))],
    ),
    path(
        "/v1/predictions/{prediction_id}/stream",
        &[(Method::GET, Endpoint::Stream)],
    ),
    path("/v1/files/{media_id}", &[(Method::GET, Endpoint::Content(C::File))]),
    path(IMAGE_GENERATIONS, &[(Method::POST, Endpoint::Submit(Su::CreateImage))]),
    path("/media/usage", &[(Method::GET, Endpoint::Status(St::Usage))]),
    path(
        "/v1/webhooks/default/secret",
        &[(Method::GET, Endpoint::Status(St::WebhookSecret))],
    ),
    path(
        "/media/webhooks/secret/rotate",
        &[(Method::POST, Endpoint::Status(St::RotateWebhookSecret))],
    ),
    path("/health", &[(Method::GET, Endpoint::Public(PublicEndpoint::Health))]),
    path(
        "/playground",
        &[(Method::GET, Endpoint::Public(PublicEndpoint::Playground))],
    ),
    path(
        "/openapi.json",
        &[(Method::GET, Endpoint::Public(PublicEndpoint::OpenApi))],
    ),
    path("/v1/models", &[(Method::GET, Endpoint::Public(PublicEndpoint::Models))]),
];

const fn path(path: &'static str, methods: &'static [(Method, Endpoint)]) -> Route {
    Route { path, methods }
}

static ROUTER: LazyLock<matchit::Router<&'static Route>> = LazyLock::new(|| {
    let mut router = matchit::Router::new();
    for route in ROUTES {
        // The table is fixed: the tests below insert every route.
        if let Err(err) = router.insert(route.path, route) {
            tracing::error!(path = route.path, %err, "a route of the table is not a route");
        }
    }
    router
});

/// The route that takes `path`, with the path's parameters.
pub struct Matched<'p> {
    pub route: &'static Route,
    pub params: matchit::Params<'static, 'p>,
}

impl Matched<'_> {
    /// A parameter of the route's path (`job_id`); empty if the route has none of that name.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).unwrap_or_default()
    }
}

/// The route that takes `path`. A trailing slash names the same route.
pub fn route(path: &str) -> Option<Matched<'_>> {
    let path = trimmed(path);
    let matched = ROUTER.at(path).ok()?;
    Some(Matched {
        route: matched.value,
        params: matched.params,
    })
}

fn trimmed(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        path => path,
    }
}

/// The path of our routes that a request names: without the API Gateway stage (`/prod`) that
/// the event's path has in front of it, whichever event shape (REST API, function URL) carried it.
pub fn request_path(request: &Request) -> &str {
    match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    }
}

/// Whether a request is to the OpenAI-compatible images API, so that its errors, whichever
/// method, are answered in OpenAI's shape (docs/design.md, "OpenAI-compatible API").
pub fn speaks_openai(request: &Request) -> bool {
    route(request_path(request)).is_some_and(|matched| matched.route.path == IMAGE_GENERATIONS)
}

/// What a request asks of the API: its endpoint and the path's parameters; the `no-route` or
/// `method-not-allowed` problem if the table has no such path or method.
pub fn endpoint(request: &Request) -> Result<(Endpoint, Matched<'_>), ApiError> {
    let path = request_path(request);
    let matched = route(path).ok_or_else(|| ApiError::NoRoute(trimmed(path).to_owned()))?;
    let endpoint = matched
        .route
        .methods
        .iter()
        .find(|(method, _)| method == request.method())
        .map(|(_, endpoint)| *endpoint)
        .ok_or_else(|| ApiError::MethodNotAllowed {
            method: request.method().clone(),
            allow: matched.route.allow(),
        })?;
    Ok((endpoint, matched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entrypoints::http::openapi;

    #[test]
    fn every_route_is_a_route_of_the_router() {
        for route in ROUTES {
            let matched = super::route(route.path).expect(route.path);
            assert_eq!(matched.route.path, route.path);
        }
    }

    #[test]
    fn every_path_reaches_one_function() {
        for route in ROUTES {
            assert!(
                route.methods.iter().all(|(_, e)| e.function() == route.function()),
                "{} reaches two functions",
                route.path
            );
        }
    }

    #[test]
    fn the_table_serves_every_operation_of_the_openapi_description_and_no_other() {
        let doc = openapi::local_document();
        let mut described = Vec::new();
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for method in operations.as_object().expect("operations").keys() {
                described.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        let mut served: Vec<String> = ROUTES
            .iter()
            .flat_map(|route| {
                route
                    .methods
                    .iter()
                    .map(|(method, _)| format!("{method} {}", route.path))
            })
            .collect();
        described.sort();
        served.sort();
        assert_eq!(served, described);
        for operation in &described {
            let (method, path) = operation.split_once(' ').expect("method and path");
            let concrete = path.replace('{', "x").replace('}', "");
            let matched = super::route(&concrete).expect(operation);
            assert_eq!(matched.route.path, path);
            assert!(matched.route.methods.iter().any(|(m, _)| m.as_str() == method));
        }
    }

    fn request(method: Method, path: &str) -> Request {
        let mut request = Request::default();
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().expect("a path");
        request
    }

    #[test]
    fn a_request_finds_its_endpoint_and_parameters() {
        let create = request(Method::POST, "/v1/models/acme/painter/predictions/");
        let (found, matched) = endpoint(&create).expect("a route");
        assert_eq!(found, Endpoint::Submit(Su::CreateModelPrediction));
        assert_eq!((matched.param("owner"), matched.param("name")), ("acme", "painter"));
        let list = request(Method::GET, "/v1/predictions");
        assert_eq!(
            endpoint(&list).expect("a route").0,
            Endpoint::Submit(Su::ListPredictions)
        );
    }

    #[test]
    fn only_the_openai_route_speaks_openai_whatever_the_method() {
        assert!(speaks_openai(&request(Method::POST, "/v1/images/generations")));
        assert!(speaks_openai(&request(Method::GET, "/v1/images/generations/")));
        assert!(!speaks_openai(&request(Method::POST, "/v1/predictions")));
        assert!(!speaks_openai(&request(Method::GET, "/v1/images")));
        let create = request(Method::POST, "/v1/images/generations");
        assert_eq!(endpoint(&create).expect("a route").0.class(), RouteClass::Create);
    }

    #[test]
    fn the_stage_in_front_of_the_path_is_not_part_of_the_route() {
        let staged = request(Method::GET, "/prod/media/jobs/abc").with_raw_http_path("/media/jobs/abc");
        let (found, matched) = endpoint(&staged).expect("a route");
        assert_eq!(found, Endpoint::Status(St::Job));
        assert_eq!(matched.param("job_id"), "abc");
    }

    #[test]
    fn an_unknown_path_or_method_is_a_problem_with_the_allowed_methods() {
        let unknown = request(Method::GET, "/media/jobs/abc/more");
        assert!(matches!(endpoint(&unknown), Err(ApiError::NoRoute(path)) if path == "/media/jobs/abc/more"));
        let wrong = request(Method::DELETE, "/v1/predictions");
        assert!(matches!(endpoint(&wrong), Err(ApiError::MethodNotAllowed { allow, .. }) if allow == "GET, POST"));
        let root = request(Method::GET, "/");
        assert!(matches!(endpoint(&root), Err(ApiError::NoRoute(_))));
    }
}
