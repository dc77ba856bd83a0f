"""HostRuntimeExecutor through LocalStack's RuntimeExecutor interface, with the fake bootstrap.
Needs localstack-core importable (LocalStack's venv, .localstack/venv); skipped otherwise.
scripts/test-localstack.sh runs it there."""

import json
import logging
import os
import platform
import sys
import unittest
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
    from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

    from mediagen_host_executor.executor import HostRuntimeExecutor, elf_architecture, host_architecture
except ImportError as err:  # pragma: no cover - outside LocalStack's venv
    raise unittest.SkipTest(f"localstack-core is not importable here ({err})")

from test_runtime import make_code_dir  # noqa: E402

# The executor logs a failed init as a warning; expected in these tests.
logging.getLogger("mediagen_host_executor").setLevel(logging.ERROR)


class FakeCode:
    def __init__(self, path):
        self.path = path
        self.prepared = False

    def get_unzipped_code_location(self):
        return Path(self.path)

    def prepare_for_execution(self):
        self.prepared = True


def function_version(code_dir, timeout=5, architecture=None, runtime="provided.al2023", environment=None):
    return SimpleNamespace(
        id=SimpleNamespace(function_name="mediagen-test", qualifier="$LATEST", region="us-east-1"),
        config=SimpleNamespace(
            code=FakeCode(code_dir),
            timeout=timeout,
            memory_size=256,
            architectures=[architecture or host_architecture()],
            runtime=runtime,
            package_type="Zip",
            environment=environment or {},
        ),
    )


def invocation(event, request_id):
    return {
        "invoke-id": request_id,
        "invoked-function-arn": "arn:aws:lambda:us-east-1:000000000000:function:mediagen-test",
        "payload": json.dumps(event),
        "trace-id": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    }


class ExecutorTest(unittest.TestCase):
    def executor(self, env=None, **kwargs):
        version = function_version(make_code_dir(self), **kwargs)
        HostRuntimeExecutor.prepare_version(version)
        self.assertTrue(version.config.code.prepared)
        executor = HostRuntimeExecutor("0123456789abcdef", version)
        self.addCleanup(executor.stop)
        executor.start({"PATH": os.environ["PATH"], "AWS_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 256, **(env or {})})
        return executor

    def test_normal_invocation(self):
        executor = self.executor(
            env={"AWS_ENDPOINT_URL": "http://127.0.0.1:4599"}, environment={"JOBS_TABLE": "jobs"}
        )
        result = executor.invoke(invocation({"echo": "x", "env": ["AWS_ENDPOINT_URL", "JOBS_TABLE", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "LAMBDA_TASK_ROOT"]}, "r1"))
        self.assertFalse(result.is_error)
        self.assertEqual(result.request_id, "r1")
        body = json.loads(result.payload)
        self.assertEqual(body["env"]["AWS_ENDPOINT_URL"], "http://127.0.0.1:4599")
        self.assertEqual(body["env"]["JOBS_TABLE"], "jobs")
        self.assertEqual(body["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256")
        self.assertEqual(body["env"]["LAMBDA_TASK_ROOT"], str(executor.function_version.config.code.path))
        self.assertTrue(result.logs.startswith("START RequestId: r1 Version: $LATEST\n"))
        self.assertIn("END RequestId: r1\nREPORT RequestId: r1\t", result.logs)
        self.assertIn("init pid=", executor.get_logs())
        self.assertEqual(executor.get_endpoint_from_executor(), "127.0.0.1")

    def test_function_error(self):
        executor = self.executor()
        result = executor.invoke(invocation({"fail": "boom"}, "r1"))
        self.assertTrue(result.is_error)
        self.assertEqual(json.loads(result.payload)["errorMessage"], "boom")

    def test_timeout_then_a_new_process_serves_the_next_invocation(self):
        executor = self.executor(timeout=1)
        first_pid = json.loads(executor.invoke(invocation({"echo": 1}, "r0")).payload)["pid"]
        result = executor.invoke(invocation({"sleep": 30}, "r1"))
        self.assertTrue(result.is_error)
        self.assertEqual(json.loads(result.payload)["errorType"], "Sandbox.Timedout")
        self.assertIn("Status: timeout", result.logs)
        again = executor.invoke(invocation({"echo": 2}, "r2"))
        self.assertFalse(again.is_error)
        self.assertNotEqual(json.loads(again.payload)["pid"], first_pid)

    def test_process_dies_during_an_invocation_then_a_new_one_starts(self):
        executor = self.executor()
        result = executor.invoke(invocation({"exit": 2}, "r1"))
        self.assertTrue(result.is_error)
        self.assertEqual(json.loads(result.payload)["errorType"], "Runtime.ExitError")
        self.assertIn("about to exit", result.logs)
        self.assertFalse(executor.invoke(invocation({"echo": 1}, "r2")).is_error)

    def test_init_error_is_what_localstack_expects_of_a_failed_start(self):
        version = function_version(make_code_dir(self))
        executor = HostRuntimeExecutor("fedcba9876543210", version)
        self.addCleanup(executor.stop)
        with self.assertRaises(StatusErrorException) as caught:
            executor.start({"PATH": os.environ["PATH"], "FAKE_INIT": "error"})
        self.assertEqual(json.loads(caught.exception.payload)["errorType"], "Runtime.ConfigError")

    def test_refuses_an_architecture_the_host_cannot_run(self):
        other = "arm64" if host_architecture() == "x86_64" else "x86_64"
        version = function_version(make_code_dir(self), architecture=other)
        with self.assertRaises(LambdaRuntimeException) as caught:
            HostRuntimeExecutor.prepare_version(version)
        self.assertIn(other, str(caught.exception))
        self.assertFalse(version.config.code.prepared)

    def test_refuses_a_bootstrap_built_for_another_architecture(self):
        code_dir = make_code_dir(self)
        machine = 0xB7 if host_architecture() == "x86_64" else 0x3E
        header = b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little")
        Path(code_dir, "bootstrap").write_bytes(header + bytes(44))
        self.assertNotEqual(elf_architecture(str(Path(code_dir, "bootstrap"))), host_architecture())
        with self.assertRaises(LambdaRuntimeException):
            HostRuntimeExecutor.prepare_version(function_version(code_dir))

    def test_refuses_runtimes_other_than_provided(self):
        with self.assertRaises(LambdaRuntimeException):
            HostRuntimeExecutor.prepare_version(function_version(make_code_dir(self), runtime="python3.12"))

    def test_host_architecture_names(self):
        self.assertIn(host_architecture(), ("x86_64", "arm64", platform.machine().lower()))
        self.assertEqual(elf_architecture(sys.executable), host_architecture())


if __name__ == "__main__":
    unittest.main()
