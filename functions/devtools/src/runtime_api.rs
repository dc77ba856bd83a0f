//! One function run the way the Lambda service runs it, for the pump (docs/design.md, "Local
//! stack"): the function's own process, started on the first invocation and again on the next
//! one after it died; the Lambda runtime API it polls, served here; a real deadline, the
//! function's timeout away; and what Lambda does when an invocation goes wrong. A process that
//! exits (a crash, a SIGKILL, running out of memory) fails the invocation it held at once, as
//! Lambda reports `Runtime exited`; an invocation still unanswered at its deadline is a timeout,
//! and its process is killed, as Lambda kills it. The next invocation is a cold start.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::Error;

/// Why an invocation did not answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function answered with an error (its handler failed, or its start did).
    #[error("the function failed: {0}")]
    Failed(String),
    /// The function's process ended before it answered.
    #[error("the runtime exited before answering: {0}")]
    Exited(String),
    #[error("task timed out after {0:?}")]
    TimedOut(Duration),
    #[error("could not start the function: {0}")]
    Spawn(String),
}

/// Where an invocation's answer goes.
type Answer = oneshot::Sender<Result<Bytes, InvokeError>>;

/// An invocation waiting for the function to take it, or being run by it.
struct Invocation {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
    answer: Answer,
}

/// The runtime API one process polls. Each process gets its own, torn down when it exits: a
/// `/next` the dead process left waiting can then never take the next process's invocation.
struct RuntimeApi {
    name: String,
    next: Mutex<mpsc::Receiver<Invocation>>,
    /// Taken with `/next`, answered through `/response` or `/error`.
    running: Mutex<Option<(String, Answer)>>,
}

/// The live process.
struct Instance {
    generation: u64,
    pid: Option<u32>,
    queue: mpsc::Sender<Invocation>,
    kill: Option<oneshot::Sender<()>>,
}

pub struct HostedFunction {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    current: Arc<Mutex<Option<Instance>>>,
    generations: Mutex<u64>,
}

impl HostedFunction {
    /// Nothing runs until the first invocation.
    pub fn new(name: &str, command: Vec<String>, timeout: Duration) -> Result<Self, Error> {
        if command.is_empty() {
            return Err("no command to run the function with".into());
        }
        Ok(Self {
            name: name.to_owned(),
            command,
            timeout,
            current: Arc::new(Mutex::new(None)),
            generations: Mutex::new(0),
        })
    }

    /// The process id of the function's live process, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        self.current.lock().await.as_ref().and_then(|instance| instance.pid)
    }

    /// Runs one invocation: starts a process if none lives, hands it the event, waits for its
    /// answer until the deadline.
    pub async fn invoke(&self, payload: Bytes) -> Result<Bytes, InvokeError> {
        let queue = self.ensure_running().await?;
        let (answer, answered) = oneshot::channel();
        let invocation = Invocation {
            request_id: format!("{:032x}", fastrand::u128(..)),
            payload,
            deadline_ms: epoch_ms() + self.timeout.as_millis() as u64,
            answer,
        };
        if queue.send(invocation).await.is_err() {
            return Err(InvokeError::Exited(
                "the process was gone before it took the event".into(),
            ));
        }
        match tokio::time::timeout(self.timeout, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::Exited("the invocation was dropped".into())),
            Err(_) => {
                // As Lambda: the process that overran is killed; the next invocation starts anew.
                if let Some(kill) = self.current.lock().await.as_mut().and_then(|i| i.kill.take()) {
                    let _ = kill.send(());
                }
                Err(InvokeError::TimedOut(self.timeout))
            }
        }
    }

    /// The live process's queue of invocations, after starting one if none lives.
    async fn ensure_running(&self) -> Result<mpsc::Sender<Invocation>, InvokeError> {
        let mut current = self.current.lock().await;
        if let Some(instance) = current.as_ref() {
            return Ok(instance.queue.clone());
        }
        let generation = {
            let mut generations = self.generations.lock().await;
            *generations += 1;
            *generations
        };
        let (queue, next) = mpsc::channel(1);
        let api = Arc::new(RuntimeApi {
            name: self.name.clone(),
            next: Mutex::new(next),
            running: Mutex::new(None),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| InvokeError::Spawn(format!("no port for the runtime API: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| InvokeError::Spawn(format!("no port for the runtime API: {e}")))?;
        let server = tokio::spawn(serve(listener, api.clone()));

        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://{address}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{generation}"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                server.abort();
                return Err(InvokeError::Spawn(format!("{}: {err}", self.command[0])));
            }
        };
        let pid = child.id();
        eprintln!(
            "pump: started {} (process {}, start {generation})",
            self.name,
            pid.map_or("?".into(), |p| p.to_string())
        );
        let (kill, killed) = oneshot::channel::<()>();
        *current = Some(Instance {
            generation,
            pid,
            queue: queue.clone(),
            kill: Some(kill),
        });

        let (slot, name) = (self.current.clone(), self.name.clone());
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            eprintln!("pump: {name} (start {generation}) exited: {status}; the next invocation starts it again");
            {
                let mut current = slot.lock().await;
                if current
                    .as_ref()
                    .is_some_and(|instance| instance.generation == generation)
                {
                    *current = None;
                }
            }
            // Its runtime API goes with it, and what it held or was about to take fails now.
            server.abort();
            let _ = server.await;
            if let Some((_, answer)) = api.running.lock().await.take() {
                let _ = answer.send(Err(InvokeError::Exited(status.clone())));
            }
            let mut next = api.next.lock().await;
            next.close();
            while let Ok(waiting) = next.try_recv() {
                let _ = waiting.answer.send(Err(InvokeError::Exited(status.clone())));
            }
        });
        Ok(queue)
    }
}

/// Serves one process's runtime API until aborted; its connections end with it.
async fn serve(listener: TcpListener, api: Arc<RuntimeApi>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let api = api.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.route(request).await) }
            });
            // A connection that breaks (its process died) just ends.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

impl RuntimeApi {
    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return reply(StatusCode::NOT_FOUND, Bytes::new());
        };
        match (request.method().clone(), rest) {
            (Method::GET, "invocation/next") => self.next_invocation().await,
            (Method::POST, "init/error") => {
                let body = read(request).await;
                eprintln!(
                    "pump: {} failed to start: {}",
                    self.name,
                    String::from_utf8_lossy(&body)
                );
                reply(StatusCode::ACCEPTED, Bytes::new())
            }
            (Method::POST, rest) => {
                let Some((request_id, kind)) = rest.strip_prefix("invocation/").and_then(|r| r.split_once('/')) else {
                    return reply(StatusCode::NOT_FOUND, Bytes::new());
                };
                let succeeded = match kind {
                    "response" => true,
                    "error" => false,
                    _ => return reply(StatusCode::NOT_FOUND, Bytes::new()),
                };
                let request_id = request_id.to_owned();
                let body = read(request).await;
                let mut running = self.running.lock().await;
                match running.take() {
                    Some((id, answer)) if id == request_id => {
                        let result = if succeeded {
                            Ok(body)
                        } else {
                            Err(InvokeError::Failed(String::from_utf8_lossy(&body).into_owned()))
                        };
                        let _ = answer.send(result);
                        reply(StatusCode::ACCEPTED, Bytes::new())
                    }
                    other => {
                        *running = other;
                        reply(StatusCode::GONE, Bytes::new())
                    }
                }
            }
            _ => reply(StatusCode::NOT_FOUND, Bytes::new()),
        }
    }

    /// `/next`: waits for an invocation, as the real runtime API does.
    async fn next_invocation(&self) -> Response<Full<Bytes>> {
        let invocation = self.next.lock().await.recv().await;
        let Some(invocation) = invocation else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
        };
        let request_id = invocation.request_id.clone();
        *self.running.lock().await = Some((request_id.clone(), invocation.answer));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &request_id)
            .header("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                format!("arn:aws:lambda:us-east-1:123456789012:function:{}", self.name),
            )
            .body(Full::new(invocation.payload))
            .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()))
    }
}

fn reply(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn read(request: Request<Incoming>) -> Bytes {
    request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default()
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
