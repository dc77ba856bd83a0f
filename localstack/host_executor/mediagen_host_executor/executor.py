"""LocalStack `RuntimeExecutor` that runs a function's `bootstrap` as a process on the host.

LocalStack's own executor (`docker`, in localstack/services/lambda_/invocation/
docker_runtime_executor.py) starts a container per execution environment, with AWS's runtime
interface emulator inside. This one is for machines without a Docker engine: it runs the
unzipped code's `bootstrap` directly, serves it the Lambda Runtime API itself (runtime.py), and
enforces the function's timeout. Only `provided.*` runtimes (a `bootstrap` executable, as
cargo lambda builds) and zip packages are supported, and only the host's architecture.

What it does not give (see localstack/README.md): no isolation (the function runs as the user
LocalStack runs as, sees the host's file system and network), no memory limit, and the
function's code directory is not at /var/task (LAMBDA_TASK_ROOT points at it).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from .runtime import BootstrapProcess, InitError, error_payload

LOG = logging.getLogger(__name__)

# ELF e_machine values of the architectures Lambda offers.
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def elf_architecture(path: str) -> str | None:
    """The Lambda architecture an ELF executable is built for, or None if it is not ELF (a script)."""
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byteorder = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], byteorder)
    return _ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")


def check_architecture(function_version: FunctionVersion, code_dir: str | None = None) -> None:
    """Raises LambdaRuntimeException if the host cannot run the function's architecture (or its
    bootstrap is built for another one). LAMBDA_IGNORE_ARCHITECTURE=1 skips the check."""
    if config.LAMBDA_IGNORE_ARCHITECTURE:
        return
    host = host_architecture()
    wanted = str(function_version.config.architectures[0])
    name = function_version.id.function_name
    if wanted != host:
        raise LambdaRuntimeException(
            f"function {name} is for {wanted}, but the host executor runs functions as processes of this"
            f" {host} machine: deploy it for {host} (MEDIAGEN_ARCH={host})"
        )
    if code_dir:
        built = elf_architecture(os.path.join(code_dir, "bootstrap"))
        if built is not None and built != host:
            raise LambdaRuntimeException(
                f"function {name}: its bootstrap is built for {built}, and this machine is {host}"
            )


class HostRuntimeExecutor(RuntimeExecutor):
    """One execution environment: one `bootstrap` process at a time, one invocation at a time.

    A process that timed out (killed) or died is replaced by a new one at the next invocation,
    as Lambda starts a new runtime after a timeout or a crash.
    """

    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002 - LocalStack's name
        super().__init__(id=id, function_version=function_version)
        self._env: dict[str, str] = {}
        self._process: BootstrapProcess | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._tmp_dir: str | None = None
        self._logs: list[str] = []

    # ------------------------------------------------------------------ where things are
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        # The function runs on this host: it reaches LocalStack's gateway on loopback.
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        # LocalStack's internal callback address for its init binary; unused by this executor,
        # which serves the Runtime API itself, but LocalStack puts it into the environment.
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def _code_dir(self) -> str:
        return str(self.function_version.config.code.get_unzipped_code_location())

    def _startup_timeout(self) -> float:
        return float(getattr(config, "LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT", 20) or 20)

    # ------------------------------------------------------------------ life cycle
    def start(self, env_vars: dict[str, str]) -> None:
        code_dir = self._code_dir()
        self._tmp_dir = tempfile.mkdtemp(prefix=f"lambda-{self.function_version.id.function_name}-{self.id[:8]}-")
        env = {key: str(value) for key, value in env_vars.items() if value is not None}
        env.update(
            {
                # The code is not at /var/task here.
                "LAMBDA_TASK_ROOT": code_dir,
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LD_LIBRARY_PATH": f"{code_dir}/lib:{code_dir}",
                "TMPDIR": self._tmp_dir,
                "LANG": "C.UTF-8",
            }
        )
        # What the function set itself wins, as with LocalStack's own executor.
        env.update({k: str(v) for k, v in (self.function_version.config.environment or {}).items()})
        self._env = env
        with self._lock:
            self._start_process()

    def _start_process(self) -> None:
        """Starts bootstrap and waits for its first `next`; raises StatusErrorException (what
        LocalStack expects of a failed init) if it does not get there."""
        if self._stopped:
            raise LambdaRuntimeException(f"executor {self.id} is stopped")
        process = BootstrapProcess(
            self._code_dir(),
            self._env,
            name=self.function_version.id.function_name,
            pid_dir=os.environ.get("MEDIAGEN_HOST_EXECUTOR_PIDS") or None,
        )
        self._process = process
        try:
            process.start()
            process.wait_ready(self._startup_timeout())
        except InitError as err:
            self._logs.append(process.all_logs())
            LOG.warning("%s; output:\n%s", err, process.all_logs())
            process.kill()
            raise StatusErrorException(str(err), payload=err.payload) from err

    def stop(self) -> None:
        self._stopped = True
        process = self._process
        if process is not None:
            process.kill()
        if self._tmp_dir:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    # ------------------------------------------------------------------ invocations
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._lock:
            process = self._process
            if process is None or not process.alive:
                try:
                    self._start_process()
                except StatusErrorException as err:
                    return InvocationResult(request_id, err.payload, is_error=True, logs=self._logs[-1] if self._logs else "")
                process = self._process
            assert process is not None
            timeout = float(self.function_version.config.timeout)
            version = self.function_version.id.qualifier
            outcome = process.invoke(
                request_id,
                (payload.get("payload") or "").encode(),
                timeout=timeout,
                function_arn=payload.get("invoked-function-arn", ""),
                trace_id=payload.get("trace-id"),
            )
        logs = (
            f"START RequestId: {request_id} Version: {version}\n"
            f"{outcome.logs}"
            f"END RequestId: {request_id}\n"
            f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms\t"
            f"Billed Duration: {int(outcome.duration_ms) + 1} ms\t"
            f"Memory Size: {self.function_version.config.memory_size} MB\t"
            f"Status: {outcome.kind}\n"
        )
        self._logs.append(logs)
        del self._logs[:-50]
        if outcome.kind in ("timeout", "exit"):
            LOG.info("function %s: %s", self.function_version.id.function_name, outcome.payload.decode(errors="replace"))
        return InvocationResult(request_id, outcome.payload, is_error=outcome.is_error, logs=logs)

    def get_logs(self) -> str:
        process = self._process
        return process.all_logs() if process is not None else "".join(self._logs)

    # ------------------------------------------------------------------ versions
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        config_ = function_version.config
        name = function_version.id.function_name
        if str(config_.package_type) != "Zip":
            raise LambdaRuntimeException(f"function {name}: the host executor runs zip packages only, not images")
        runtime = str(config_.runtime or "")
        if not runtime.startswith("provided"):
            raise LambdaRuntimeException(
                f"function {name}: the host executor runs provided.* runtimes (a bootstrap executable) only, not {runtime}"
            )
        check_architecture(function_version)
        if config_.code:
            config_.code.prepare_for_execution()
            code_dir = str(config_.code.get_unzipped_code_location())
            if not os.path.isfile(os.path.join(code_dir, "bootstrap")):
                raise LambdaRuntimeException(f"function {name}: its code has no bootstrap file")
            check_architecture(function_version, code_dir)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return True


__all__ = ["HostRuntimeExecutor", "check_architecture", "elf_architecture", "host_architecture", "error_payload"]
