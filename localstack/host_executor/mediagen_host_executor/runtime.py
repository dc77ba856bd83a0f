"""One run of a function's `bootstrap` as a host process, and the Lambda Runtime API it talks to.

Standard library only, so that it can be tested without LocalStack. The LocalStack side (the
`RuntimeExecutor` interface) is in executor.py.

The Runtime API served here is the part a custom runtime uses
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):

    GET  /2018-06-01/runtime/invocation/next
    POST /2018-06-01/runtime/invocation/{request_id}/response
    POST /2018-06-01/runtime/invocation/{request_id}/error
    POST /2018-06-01/runtime/init/error

Each run of the process gets a server of its own on a free loopback port: when a process is
killed (timeout) or dies, its server goes with it, so a `next` call still waiting from the old
process can never take the invocation meant for the next one.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_PREFIX = "/2018-06-01/runtime"


class InitError(Exception):
    """The runtime reported an initialisation error (`/runtime/init/error`) or died while starting."""

    def __init__(self, message: str, payload: bytes):
        super().__init__(message)
        self.payload = payload


@dataclass
class Outcome:
    """What became of one invocation."""

    payload: bytes
    is_error: bool
    # "response", "error" (the function returned an error), "timeout", "exit" (the process died)
    kind: str
    logs: str
    duration_ms: float


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: "_RuntimeApiServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != f"{API_PREFIX}/invocation/next":
            return self._send(HTTPStatus.NOT_FOUND, error_payload("NotFound", self.path))
        invocation = self.server.runtime._next_invocation()
        if invocation is None:
            # The process is being stopped: hold nothing back, answer as the real API would
            # for a runtime in a shut-down environment.
            return self._send(HTTPStatus.GONE, error_payload("Runtime.Shutdown", "shutting down"))
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation["request_id"],
            "Lambda-Runtime-Deadline-Ms": str(invocation["deadline_ms"]),
            "Lambda-Runtime-Invoked-Function-Arn": invocation["function_arn"],
        }
        if invocation.get("trace_id"):
            headers["Lambda-Runtime-Trace-Id"] = invocation["trace_id"]
        self._send(HTTPStatus.OK, invocation["payload"], headers)

    def do_POST(self):
        body = self._body()
        parts = self.path[len(API_PREFIX) :].strip("/").split("/") if self.path.startswith(API_PREFIX) else []
        runtime = self.server.runtime
        if parts == ["init", "error"]:
            runtime._init_failed(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
            return self._send(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            if runtime._finish(parts[1], body, is_error=parts[2] == "error"):
                return self._send(HTTPStatus.ACCEPTED, b'{"status":"OK"}')
            return self._send(
                HTTPStatus.BAD_REQUEST,
                error_payload("InvalidRequestID", f"no invocation {parts[1]} is in progress"),
            )
        self._send(HTTPStatus.NOT_FOUND, error_payload("NotFound", self.path))


class _RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, runtime: "BootstrapProcess"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.runtime = runtime

    def handle_error(self, request, client_address):
        # A runtime killed in the middle of a request (timeout, stop) leaves a broken
        # connection behind; that is expected and not worth a traceback.
        pass


class BootstrapProcess:
    """`bootstrap` from CODE_DIR, run once with ENV (plus AWS_LAMBDA_RUNTIME_API), and its API.

    Use: start(), wait_ready(), then invoke() one invocation at a time, and kill() at the end.
    Output (stdout and stderr) is kept: invoke() returns what was printed since the previous
    invocation (so the first one also carries the start-up output), and all_logs() all of it.
    """

    def __init__(self, code_dir: str, env: dict[str, str], name: str = "function", pid_dir: str | None = None):
        self.code_dir = str(code_dir)
        # If set, a file named after the process's pid is kept there while it runs, so that
        # scripts/localstack.sh stop can kill what a crashed LocalStack left behind.
        self.pid_dir = pid_dir
        self.env = dict(env)
        self.name = name
        self._cond = threading.Condition()
        self._ready = False
        self._init_error: bytes | None = None
        self._closed = False
        self._pending: dict | None = None
        self._current: str | None = None
        self._outcome: tuple[bytes, bool, str] | None = None
        self._exit_code: int | None = None
        self._logs: list[str] = []
        self._unreported = 0  # index in _logs of the first line no invocation has returned
        self._output_event = threading.Event()
        self.process: subprocess.Popen | None = None
        self.server: _RuntimeApiServer | None = None
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        bootstrap = os.path.join(self.code_dir, "bootstrap")
        if not os.path.isfile(bootstrap):
            raise InitError(
                f"{self.name}: no bootstrap in the function's code",
                error_payload("Runtime.InvalidEntrypoint", "no bootstrap file in the function's code"),
            )
        if not os.access(bootstrap, os.X_OK):
            os.chmod(bootstrap, os.stat(bootstrap).st_mode | 0o755)
        self.server = _RuntimeApiServer(self)
        host, port = self.server.server_address[:2]
        self._spawn(self.server.serve_forever, "api")
        env = {key: str(value) for key, value in self.env.items() if value is not None}
        env["AWS_LAMBDA_RUNTIME_API"] = f"{host}:{port}"
        self.process = subprocess.Popen(
            [bootstrap],
            cwd=self.code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes its children too
        )
        if self.pid_dir:
            try:
                os.makedirs(self.pid_dir, exist_ok=True)
                open(os.path.join(self.pid_dir, str(self.process.pid)), "w").close()
            except OSError:
                pass
        self._reader = self._spawn(self._read_output, "output")
        self._spawn(self._watch_exit, "exit")

    def _spawn(self, target, what: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"host-executor-{self.name}-{what}", daemon=True)
        thread.start()
        return thread

    def wait_ready(self, timeout: float) -> None:
        """Returns once the runtime asks for its first invocation; raises InitError if it
        reports an init error, exits first, or is not ready within TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._ready and self._init_error is None and self._exit_code is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._ready:
                return
            init_error, exit_code = self._init_error, self._exit_code
        if init_error is not None:
            self.kill()
            raise InitError(f"{self.name}: the runtime reported an init error", init_error)
        if exit_code is not None:
            self._wait_exit_output()
            raise InitError(
                f"{self.name}: bootstrap exited during init ({describe_exit(exit_code)})",
                error_payload("Runtime.ExitError", f"Runtime exited with error: {describe_exit(exit_code)}"),
            )
        self.kill()
        raise InitError(
            f"{self.name}: bootstrap was not ready within {timeout:.0f}s",
            error_payload("Sandbox.Timedout", f"init did not finish within {timeout:.0f} seconds"),
        )

    @property
    def alive(self) -> bool:
        with self._cond:
            return self.process is not None and self._exit_code is None and not self._closed

    def kill(self) -> None:
        """Kills the process group (SIGKILL) and stops the API server; waits for both."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ------------------------------------------------------------------ invocations
    def invoke(
        self,
        request_id: str,
        payload: bytes,
        timeout: float,
        function_arn: str = "",
        trace_id: str | None = None,
    ) -> Outcome:
        """Hands one invocation to the runtime and waits for its response or error, at most
        TIMEOUT seconds: then the process is killed and the outcome is a timeout error. If the
        process dies meanwhile, the outcome is a Runtime.ExitError. Either way the process is
        then gone (alive is False) and the caller starts a new one for the next invocation."""
        started = time.monotonic()
        deadline = started + timeout
        deadline_ms = int((time.time() + timeout) * 1000)
        with self._cond:
            if self._closed or self._exit_code is not None:
                raise RuntimeError(f"{self.name}: the runtime process is not running")
            if self._pending is not None or self._current is not None:
                raise RuntimeError(f"{self.name}: an invocation is already in progress")
            self._outcome = None
            self._pending = {
                "request_id": request_id,
                "payload": payload,
                "deadline_ms": deadline_ms,
                "function_arn": function_arn,
                "trace_id": trace_id,
            }
            self._current = request_id
            self._cond.notify_all()
            while self._outcome is None and self._exit_code is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            outcome = self._outcome
            exit_code = self._exit_code
            self._pending = None
            self._current = None
        duration_ms = (time.monotonic() - started) * 1000
        if outcome is not None:
            body, is_error, kind = outcome
            self._wait_output()
            return Outcome(body, is_error, kind, self._take_logs(), duration_ms)
        if exit_code is None:
            self.kill()
            message = f"{utc_now()} {request_id} Task timed out after {timeout:.2f} seconds"
            self._append_log(message + "\n")
            return Outcome(error_payload("Sandbox.Timedout", message), True, "timeout", self._take_logs(), duration_ms)
        self._wait_exit_output()
        message = f"RequestId: {request_id} Error: Runtime exited with error: {describe_exit(exit_code)}"
        self._append_log(message + "\n")
        return Outcome(error_payload("Runtime.ExitError", message), True, "exit", self._take_logs(), duration_ms)

    # ------------------------------------------------------------------ called by the API handler
    def _next_invocation(self) -> dict | None:
        with self._cond:
            self._ready = True
            self._cond.notify_all()
            while self._pending is None and not self._closed:
                self._cond.wait(0.5)
            if self._closed:
                return None
            invocation, self._pending = self._pending, None
            return invocation

    def _finish(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self._cond:
            if self._closed or request_id != self._current or self._outcome is not None:
                return False
            self._outcome = (body, is_error, "error" if is_error else "response")
            self._cond.notify_all()
            return True

    def _init_failed(self, body: bytes, error_type: str | None) -> None:
        with self._cond:
            if self._init_error is None:
                self._init_error = body or error_payload(error_type or "Runtime.Unknown", "init error")
            self._cond.notify_all()

    # ------------------------------------------------------------------ output
    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self._append_log(raw.decode("utf-8", errors="replace"))
        self.process.stdout.close()

    def _append_log(self, line: str) -> None:
        with self._cond:
            self._logs.append(line if line.endswith("\n") else line + "\n")
        self._output_event.set()

    def _wait_output(self, quiet: float = 0.02, most: float = 0.25) -> None:
        """Output the process wrote just before it answered may still be in the pipe: wait until
        none has arrived for QUIET seconds (at most MOST seconds)."""
        deadline = time.monotonic() + most
        while time.monotonic() < deadline:
            self._output_event.clear()
            if not self._output_event.wait(quiet):
                return

    def _wait_exit_output(self) -> None:
        """After the process exited: all it wrote, up to the end of the pipe."""
        if self._reader is not None:
            self._reader.join(timeout=2)

    def _take_logs(self) -> str:
        with self._cond:
            lines = self._logs[self._unreported :]
            self._unreported = len(self._logs)
        return "".join(lines)

    def all_logs(self) -> str:
        with self._cond:
            return "".join(self._logs)

    def _watch_exit(self) -> None:
        assert self.process is not None
        code = self.process.wait()
        if self.pid_dir:
            try:
                os.unlink(os.path.join(self.pid_dir, str(self.process.pid)))
            except OSError:
                pass
        with self._cond:
            self._exit_code = code
            self._cond.notify_all()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal: {signal.Signals(-code).name[3:].lower()}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
