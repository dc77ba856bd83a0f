"""BootstrapProcess and its Runtime API, with a fake bootstrap (fake_bootstrap.py). Standard
library only: python3 -m unittest discover -s localstack/host_executor/tests"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediagen_host_executor.runtime import BootstrapProcess, InitError  # noqa: E402

FAKE = Path(__file__).with_name("fake_bootstrap.py")


def make_code_dir(test: unittest.TestCase) -> str:
    """A function code folder whose bootstrap is the fake runtime, run by this Python."""
    code_dir = tempfile.mkdtemp(prefix="host-executor-test-")
    test.addCleanup(shutil.rmtree, code_dir, ignore_errors=True)
    bootstrap = Path(code_dir, "bootstrap")
    bootstrap.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    bootstrap.chmod(0o755)
    return code_dir


class RuntimeTest(unittest.TestCase):
    def start(self, env=None, ready_timeout=10.0):
        process = BootstrapProcess(make_code_dir(self), {"PATH": os.environ["PATH"], **(env or {})}, name="test")
        self.addCleanup(process.kill)
        process.start()
        process.wait_ready(ready_timeout)
        return process

    def invoke(self, process, event, timeout=10.0, request_id="req-1"):
        return process.invoke(request_id, json.dumps(event).encode(), timeout=timeout, function_arn="arn:test")

    def test_normal_invocation_returns_the_response_and_passes_the_environment(self):
        process = self.start({"JOBS_TABLE": "mediagen-jobs"})
        outcome = self.invoke(process, {"echo": "hi", "env": ["JOBS_TABLE", "AWS_LAMBDA_RUNTIME_API"]})
        self.assertEqual(outcome.kind, "response")
        self.assertFalse(outcome.is_error)
        body = json.loads(outcome.payload)
        self.assertEqual(body["echo"], "hi")
        self.assertEqual(body["env"]["JOBS_TABLE"], "mediagen-jobs")
        self.assertTrue(body["env"]["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:"))
        # The deadline is about the timeout ahead.
        self.assertAlmostEqual(body["deadline_ms"] / 1000, time.time() + 10, delta=3)
        # The first invocation's logs carry what the runtime printed at start.
        self.assertIn("init pid=", outcome.logs)

    def test_the_process_is_reused_and_each_invocation_gets_its_own_output(self):
        process = self.start()
        first = self.invoke(process, {"print": ["one", "two"]}, request_id="a")
        second = self.invoke(process, {"print": ["three"]}, request_id="b")
        self.assertEqual(json.loads(first.payload)["pid"], json.loads(second.payload)["pid"])
        self.assertIn("one\n", first.logs)
        self.assertIn("two\n", first.logs)  # stderr too
        self.assertNotIn("three", first.logs)
        self.assertIn("three\n", second.logs)
        self.assertNotIn("one", second.logs)
        self.assertTrue(process.alive)

    def test_an_error_returned_by_the_function_is_an_error_result(self):
        process = self.start()
        outcome = self.invoke(process, {"fail": "model refused the prompt"})
        self.assertEqual(outcome.kind, "error")
        self.assertTrue(outcome.is_error)
        self.assertEqual(json.loads(outcome.payload), {"errorType": "JobError", "errorMessage": "model refused the prompt"})
        # The runtime goes on: the next invocation is served by the same process.
        self.assertTrue(process.alive)
        self.assertEqual(self.invoke(process, {"echo": 1}, request_id="req-2").kind, "response")

    def test_a_timeout_kills_the_process_and_reports_a_timeout_error(self):
        process = self.start()
        pid = process.process.pid
        started = time.monotonic()
        outcome = self.invoke(process, {"print": ["working"], "sleep": 30}, timeout=1.0)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 5)
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertEqual(outcome.kind, "timeout")
        self.assertTrue(outcome.is_error)
        error = json.loads(outcome.payload)
        self.assertEqual(error["errorType"], "Sandbox.Timedout")
        self.assertIn("Task timed out after 1.00 seconds", error["errorMessage"])
        self.assertIn("working", outcome.logs)
        self.assertIn("Task timed out", outcome.logs)
        self.assertFalse(process.alive)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)

    def test_a_process_that_exits_during_an_invocation_is_an_exit_error(self):
        process = self.start()
        outcome = self.invoke(process, {"exit": 7})
        self.assertEqual(outcome.kind, "exit")
        self.assertTrue(outcome.is_error)
        error = json.loads(outcome.payload)
        self.assertEqual(error["errorType"], "Runtime.ExitError")
        self.assertIn("exit status 7", error["errorMessage"])
        self.assertIn("about to exit", outcome.logs)
        self.assertFalse(process.alive)
        with self.assertRaises(RuntimeError):
            self.invoke(process, {"echo": 1})

    def test_a_process_killed_by_a_signal_during_an_invocation_is_an_exit_error(self):
        process = self.start()
        outcome = self.invoke(process, {"kill": True})
        self.assertEqual(outcome.kind, "exit")
        self.assertIn("signal: kill", json.loads(outcome.payload)["errorMessage"])

    def test_an_init_error_fails_the_start(self):
        process = BootstrapProcess(make_code_dir(self), {"PATH": os.environ["PATH"], "FAKE_INIT": "error"})
        self.addCleanup(process.kill)
        process.start()
        with self.assertRaises(InitError) as caught:
            process.wait_ready(10)
        self.assertEqual(json.loads(caught.exception.payload)["errorType"], "Runtime.ConfigError")
        self.assertFalse(process.alive)

    def test_a_process_that_exits_at_start_fails_the_start_with_its_output(self):
        process = BootstrapProcess(make_code_dir(self), {"PATH": os.environ["PATH"], "FAKE_INIT": "exit"})
        self.addCleanup(process.kill)
        process.start()
        with self.assertRaises(InitError) as caught:
            process.wait_ready(10)
        self.assertIn("exit status 3", str(caught.exception))
        self.assertIn("cannot start", process.all_logs())

    def test_a_process_that_never_gets_ready_is_killed(self):
        process = BootstrapProcess(make_code_dir(self), {"PATH": os.environ["PATH"], "FAKE_INIT": "hang"})
        self.addCleanup(process.kill)
        process.start()
        with self.assertRaises(InitError):
            process.wait_ready(0.5)
        self.assertFalse(process.alive)

    def test_missing_bootstrap(self):
        code_dir = tempfile.mkdtemp(prefix="host-executor-test-")
        self.addCleanup(shutil.rmtree, code_dir, ignore_errors=True)
        with self.assertRaises(InitError):
            BootstrapProcess(code_dir, {}).start()


if __name__ == "__main__":
    unittest.main()
