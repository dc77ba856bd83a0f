//! A function run the way the Lambda service runs it, for the pumps and the gateway
//! (docs/design.md, "Local stack"): each instance its own process, started on the first
//! invocation and again on the next one after it died; the Lambda runtime API it polls, served
//! here; a real deadline, the function's timeout away; and what Lambda does when an invocation
//! goes wrong. A process that exits (a crash, a SIGKILL, running out of memory) fails the
//! invocation it held at once, as Lambda reports `Runtime exited`; an invocation still unanswered
//! at its deadline is a timeout, and its process is killed, as Lambda kills it. The next
//! invocation is a cold start, as is the first after the function's program was rebuilt. A
//! function that streams its answer (`Lambda-Runtime-Function-Response-Mode: streaming`) has each
//! chunk passed on as it comes, until its deadline, and its instance stays busy until the end.

use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit, mpsc, oneshot};

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
    /// An Invoke API that runs the function elsewhere did not answer.
    #[error("the invoke API did not answer: {0}")]
    Unreachable(String),
}

/// Where an invocation's answer goes.
type Answer = oneshot::Sender<Result<Reply, InvokeError>>;

/// A function's answer: whole, or streamed as it writes it.
pub enum Reply {
    Whole(Bytes),
    Streamed(Streamed),
}

/// A streamed answer's chunks as they come (the metadata prelude and its delimiter first, for an
/// HTTP answer), and the sign of its end, which the instance's lease waits for.
pub struct Streamed {
    pub chunks: mpsc::Receiver<Bytes>,
    ended: Option<oneshot::Receiver<()>>,
}

impl Reply {
    /// The whole answer, a streamed one gathered to its end.
    pub async fn into_bytes(self) -> Bytes {
        match self {
            Reply::Whole(bytes) => bytes,
            Reply::Streamed(mut streamed) => {
                let mut whole = Vec::new();
                while let Some(chunk) = streamed.chunks.recv().await {
                    whole.extend_from_slice(&chunk);
                }
                Bytes::from(whole)
            }
        }
    }
}

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
    /// Taken with `/next`, answered through `/response` or `/error` by its deadline.
    running: Mutex<Option<(String, Answer, tokio::time::Instant)>>,
}

/// The live process.
struct Instance {
    generation: u64,
    pid: Option<u32>,
    /// When the program it runs was last written, as it started.
    program: Option<SystemTime>,
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

    /// Runs one invocation to its end, a streamed answer gathered whole.
    pub async fn invoke(&self, payload: Bytes) -> Result<Bytes, InvokeError> {
        Ok(self.invoke_reply(payload).await?.into_bytes().await)
    }

    /// Runs one invocation: starts a process if none lives, hands it the event, waits for its
    /// answer, or the start of a streamed one, until the deadline.
    pub async fn invoke_reply(&self, payload: Bytes) -> Result<Reply, InvokeError> {
        let (queue, generation) = self.ensure_running().await?;
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
                // As Lambda: the process that overran is killed; the next invocation starts anew,
                // even if it comes before the process has gone.
                let mut current = self.current.lock().await;
                if let Some(mut instance) = current.take_if(|i| i.generation == generation)
                    && let Some(kill) = instance.kill.take()
                {
                    let _ = kill.send(());
                }
                Err(InvokeError::TimedOut(self.timeout))
            }
        }
    }

    /// The live process's queue of invocations and its start, after starting one if none lives.
    /// A process whose program has been rebuilt since it started is stopped first, so that an
    /// edit reaches the next invocation (`scripts/dev.sh` rebuilds on every edit).
    async fn ensure_running(&self) -> Result<(mpsc::Sender<Invocation>, u64), InvokeError> {
        let mut current = self.current.lock().await;
        let program = modified(&self.command[0]);
        if let Some(instance) = current.as_mut() {
            if instance.program == program {
                return Ok((instance.queue.clone(), instance.generation));
            }
            eprintln!("lambda: {} was rebuilt; starting it again", self.name);
            if let Some(kill) = instance.kill.take() {
                let _ = kill.send(());
            }
            *current = None;
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
            "lambda: started {} (process {}, start {generation})",
            self.name,
            pid.map_or("?".into(), |p| p.to_string())
        );
        let (kill, killed) = oneshot::channel::<()>();
        *current = Some(Instance {
            generation,
            pid,
            program,
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
            eprintln!("lambda: {name} (start {generation}) exited: {status}; the next invocation starts it again");
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
            if let Some((_, answer, _)) = api.running.lock().await.take() {
                let _ = answer.send(Err(InvokeError::Exited(status.clone())));
            }
            let mut next = api.next.lock().await;
            next.close();
            while let Ok(waiting) = next.try_recv() {
                let _ = waiting.answer.send(Err(InvokeError::Exited(status.clone())));
            }
        });
        Ok((queue, generation))
    }
}

/// Up to a number of instances of one function, each running one invocation at a time, as Lambda
/// scales a function: an idle instance that has started takes the next invocation; another one
/// starts only while all of those are busy.
pub struct FunctionPool {
    instances: Vec<HostedFunction>,
    /// Idle instances: `started` ones (the one used last on top), and those not started yet.
    idle: std::sync::Mutex<Idle>,
    /// One permit for each idle instance.
    free: Semaphore,
}

/// An instance taken from the pool, given back (started, and so first in line) when dropped.
struct Lease<'a> {
    pool: &'a FunctionPool,
    index: usize,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.started.push(self.index);
    }
}

struct Idle {
    started: Vec<usize>,
    unstarted: Vec<usize>,
}

impl FunctionPool {
    pub fn new(name: &str, command: Vec<String>, timeout: Duration, instances: usize) -> Result<Self, Error> {
        if instances == 0 {
            return Err(format!("{name}: at least one instance is needed").into());
        }
        Ok(Self {
            instances: (0..instances)
                .map(|_| HostedFunction::new(name, command.clone(), timeout))
                .collect::<Result<_, _>>()?,
            idle: std::sync::Mutex::new(Idle {
                started: Vec::new(),
                unstarted: (0..instances).rev().collect(),
            }),
            free: Semaphore::new(instances),
        })
    }

    /// Runs one invocation in an idle instance, waiting for one if all are busy.
    pub async fn invoke(&self, payload: Bytes) -> Result<Bytes, InvokeError> {
        let lease = self.lease().await?;
        let reply = self.instances[lease.index].invoke_reply(payload).await?;
        Ok(reply.into_bytes().await)
    }

    /// Runs one invocation in an idle instance and hands its answer to `first` as soon as it
    /// begins; a streamed answer keeps the instance busy until its end, as Lambda's does.
    pub async fn serve(&self, payload: Bytes, first: oneshot::Sender<Result<Reply, InvokeError>>) {
        let lease = match self.lease().await {
            Ok(lease) => lease,
            Err(err) => {
                let _ = first.send(Err(err));
                return;
            }
        };
        match self.instances[lease.index].invoke_reply(payload).await {
            Ok(Reply::Streamed(mut streamed)) => {
                let ended = streamed.ended.take();
                let _ = first.send(Ok(Reply::Streamed(streamed)));
                if let Some(ended) = ended {
                    let _ = ended.await;
                }
            }
            other => {
                let _ = first.send(other);
            }
        }
        drop(lease);
    }

    async fn lease(&self) -> Result<Lease<'_>, InvokeError> {
        let permit = self
            .free
            .acquire()
            .await
            .map_err(|_| InvokeError::Spawn("the function's instances are gone".into()))?;
        let index = {
            let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            idle.started.pop().or_else(|| idle.unstarted.pop())
        };
        // A permit is held for each idle instance, so one is there.
        let index = index.ok_or_else(|| InvokeError::Spawn("no idle instance behind a free permit".into()))?;
        Ok(Lease {
            pool: self,
            index,
            _permit: permit,
        })
    }

    /// The process ids of the instances that run now.
    pub async fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for instance in &self.instances {
            pids.extend(instance.pid().await);
        }
        pids
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

/// The paths of the runtime API a function calls.
#[derive(Debug, PartialEq, Eq)]
enum RuntimePath {
    Next,
    InitError,
    Response,
    Error,
}

static RUNTIME_PATHS: LazyLock<matchit::Router<RuntimePath>> = LazyLock::new(|| {
    crate::path_router(
        "lambda",
        [
            ("/2018-06-01/runtime/invocation/next", RuntimePath::Next),
            ("/2018-06-01/runtime/init/error", RuntimePath::InitError),
            (
                "/2018-06-01/runtime/invocation/{request_id}/response",
                RuntimePath::Response,
            ),
            ("/2018-06-01/runtime/invocation/{request_id}/error", RuntimePath::Error),
        ],
    )
});

impl RuntimeApi {
    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let Ok(matched) = RUNTIME_PATHS.at(&path) else {
            return reply(StatusCode::NOT_FOUND, Bytes::new());
        };
        let request_id = matched.params.get("request_id").unwrap_or_default().to_owned();
        match (request.method().clone(), matched.value) {
            (Method::GET, RuntimePath::Next) => self.next_invocation().await,
            (Method::POST, RuntimePath::InitError) => {
                let body = read(request).await;
                eprintln!(
                    "lambda: {} failed to start: {}",
                    self.name,
                    String::from_utf8_lossy(&body)
                );
                reply(StatusCode::ACCEPTED, Bytes::new())
            }
            (Method::POST, RuntimePath::Response) if streaming(&request) => {
                let Some((answer, deadline)) = self.take_running(&request_id).await else {
                    return reply(StatusCode::GONE, Bytes::new());
                };
                let (chunks, received) = mpsc::channel(16);
                let (end, ended) = oneshot::channel();
                let streamed = Streamed {
                    chunks: received,
                    ended: Some(ended),
                };
                if answer.send(Ok(Reply::Streamed(streamed))).is_err() {
                    return reply(StatusCode::GONE, Bytes::new());
                }
                let passed_on = tokio::time::timeout_at(deadline, pass_on(request.into_body(), chunks)).await;
                drop(end);
                match passed_on {
                    Ok(Ok(())) => reply(StatusCode::ACCEPTED, Bytes::new()),
                    // The client went away, or the deadline came: the function's writes fail.
                    Ok(Err(())) | Err(_) => reply(StatusCode::GONE, Bytes::new()),
                }
            }
            (Method::POST, outcome @ (RuntimePath::Response | RuntimePath::Error)) => {
                let succeeded = *outcome == RuntimePath::Response;
                let body = read(request).await;
                let Some((answer, _)) = self.take_running(&request_id).await else {
                    return reply(StatusCode::GONE, Bytes::new());
                };
                let result = if succeeded {
                    Ok(Reply::Whole(body))
                } else {
                    Err(InvokeError::Failed(String::from_utf8_lossy(&body).into_owned()))
                };
                let _ = answer.send(result);
                reply(StatusCode::ACCEPTED, Bytes::new())
            }
            _ => reply(StatusCode::NOT_FOUND, Bytes::new()),
        }
    }

    /// The running invocation's answer and deadline, if `request_id` names it.
    async fn take_running(&self, request_id: &str) -> Option<(Answer, tokio::time::Instant)> {
        let mut running = self.running.lock().await;
        match running.take() {
            Some((id, answer, deadline)) if id == request_id => Some((answer, deadline)),
            other => {
                *running = other;
                None
            }
        }
    }

    /// `/next`: waits for an invocation, as the real runtime API does.
    async fn next_invocation(&self) -> Response<Full<Bytes>> {
        let invocation = self.next.lock().await.recv().await;
        let Some(invocation) = invocation else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
        };
        let request_id = invocation.request_id.clone();
        let left = Duration::from_millis(invocation.deadline_ms.saturating_sub(epoch_ms()));
        *self.running.lock().await = Some((
            request_id.clone(),
            invocation.answer,
            tokio::time::Instant::now() + left,
        ));
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

/// Whether the function streams its answer.
fn streaming(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"streaming"))
}

/// Passes a streamed answer's chunks on as they come; fails once nobody takes them.
async fn pass_on(mut body: Incoming, chunks: mpsc::Sender<Bytes>) -> Result<(), ()> {
    while let Some(frame) = body.frame().await {
        // A body that breaks (its process died) ends the answer there.
        let Ok(frame) = frame else { return Ok(()) };
        if let Ok(data) = frame.into_data()
            && chunks.send(data).await.is_err()
        {
            return Err(());
        }
    }
    Ok(())
}

async fn read(request: Request<Incoming>) -> Bytes {
    request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default()
}

/// When the file `program` names was last written; `None` for a command found on the PATH.
fn modified(program: &str) -> Option<SystemTime> {
    std::fs::metadata(program).and_then(|m| m.modified()).ok()
}

pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
