"""The functions under `cargo lambda watch` (docs/local-stack.md, "Running under cargo lambda
watch"), as a Rust Lambda developer uses it: `cargo lambda invoke --data-file events/...` for every
sample event, a job through watch's router from submit to its image, its progress stream through
the router, and a function rebuilt after an edit that still answers.

Needs MEDIAGEN_API_URL (watch's address, as `start_stack PORT watch` in scripts/lib.sh sets it
up), MEDIAGEN_API_KEY, MEDIAGEN_FUNCTIONS_LOG (watch's output) and `cargo lambda` on the PATH;
scripts/test.sh sets them."""

import concurrent.futures
import json
import os
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
API = os.environ.get("MEDIAGEN_API_URL", "").rstrip("/")
KEY = os.environ.get("MEDIAGEN_API_KEY", "")
LOG = Path(os.environ.get("MEDIAGEN_FUNCTIONS_LOG", "/nonexistent"))

if not API:
    raise unittest.SkipTest("MEDIAGEN_API_URL is not set: run scripts/test.sh")

# Each sample event's function, and what it answers (events/README.md): as it is (no API key),
# and with the caller's key added to its headers.
HTTP_EVENTS = {
    "submit.json": ("submit", 202),
    "status.json": ("status", 404),
    "job.json": ("status", 404),
    "content.json": ("content", 404),
}
SQS_EVENTS = {"generate.json": "generate"}
PNG = b"\x89PNG\r\n\x1a\n"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(method, path, body=None, headers=None):
    """(status, headers, body) of a request to the API with the key."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(API + path, data=data, method=method, headers=headers or {})
    request.add_header("Authorization", f"Bearer {KEY}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def invoke(function, event_file):
    """The function's answer to the event, through `cargo lambda invoke`."""
    address = urllib.parse.urlsplit(API)
    result = subprocess.run(
        ["cargo", "lambda", "invoke", function, "--data-file", str(event_file),
         "--invoke-address", address.hostname, "--invoke-port", str(address.port), "--output-format", "json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        raise AssertionError(f"cargo lambda invoke {function} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def with_key(event):
    """The event with the caller's key in both forms of the REST API's headers."""
    event = json.loads(json.dumps(event))
    event["headers"]["Authorization"] = f"Bearer {KEY}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {KEY}"]
    return event


class SampleEvents(unittest.TestCase):
    def test_every_sample_event_is_known_here(self):
        files = sorted(p.name for p in EVENTS.glob("*.json"))
        self.assertEqual(files, sorted(set(HTTP_EVENTS) | set(SQS_EVENTS)))

    def test_each_http_event_asks_for_a_key_and_answers_with_one(self):
        for name, (function, with_key_status) in HTTP_EVENTS.items():
            with self.subTest(event=name):
                event = json.loads((EVENTS / name).read_text())
                answer = invoke(function, EVENTS / name)
                self.assertEqual(answer["statusCode"], 401, answer)
                self.assertEqual(json.loads(answer["body"])["type"], "urn:mediagen:problem:unauthorized")
                with tempfile.NamedTemporaryFile("w", suffix=".json") as keyed:
                    json.dump(with_key(event), keyed)
                    keyed.flush()
                    answer = invoke(function, keyed.name)
                self.assertEqual(answer["statusCode"], with_key_status, answer)
                body = json.loads(answer["body"])
                if with_key_status == 404:
                    self.assertEqual(body["type"], "urn:mediagen:problem:not-found")
                else:
                    self.assertEqual(body["status"], "queued")

    def test_the_generate_event_acknowledges_both_records(self):
        for name, function in SQS_EVENTS.items():
            with self.subTest(event=name):
                self.assertEqual(invoke(function, EVENTS / name), {"batchItemFailures": []})


class JobThroughTheRouter(unittest.TestCase):
    def test_a_job_ends_succeeded_with_its_image(self):
        status, headers, body = call("POST", "/media/generate", {"prompt": "a kettle under watch", "width": 256, "height": 256})
        self.assertEqual(status, 202, body)
        job_id = json.loads(body)["job_id"]
        deadline = time.monotonic() + 120
        while True:
            status, _, body = call("GET", f"/media/status/{job_id}")
            self.assertEqual(status, 200, body)
            state = json.loads(body)["status"]
            if state not in ("queued", "processing") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(state, "succeeded", body)
        status, _, body = call("GET", f"/media/jobs/{job_id}")
        (media,) = json.loads(body)["media"]
        status, headers, _ = call("GET", media["content_url"])
        self.assertEqual(status, 302)
        with urllib.request.urlopen(headers["Location"], timeout=30) as image:
            whole = image.read()
        self.assertEqual(whole[:8], PNG)
        # The Replicate-compatible route answers the bytes themselves, through watch.
        self.assertEqual(call("GET", f"/v1/files/{media['media_id']}")[2], whole)


class StreamThroughTheRouter(unittest.TestCase):
    def test_a_jobs_progress_stream_arrives_through_watch(self):
        """The stream function answers as Lambda streams (docs/design.md, "Progress stream"):
        watch's router passes its events on, to the job's `done`."""
        status, _, body = call("POST", "/media/generate", {"prompt": "a kettle streamed", "width": 256, "height": 256})
        self.assertEqual(status, 202, body)
        stream = json.loads(body)["links"]["stream"]
        request = urllib.request.Request(API + stream)
        with OPENER.open(request, timeout=180) as response:
            self.assertEqual(response.headers["Content-Type"], "text/event-stream")
            text = response.read().decode()
        names = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
        self.assertEqual(names[0], "status", text)
        self.assertEqual(names[-3:], ["output", "status", "done"], text)


class LargeAnswers(unittest.TestCase):
    def test_answers_of_tens_of_kilobytes_arrive_whole_four_at_a_time(self):
        # cargo lambda watch lost such answers now and then before (docs/design.md, "Local stack").
        expected = call("GET", "/openapi.json")[2]
        self.assertGreater(len(expected), 10_000)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: call("GET", "/openapi.json"), range(200)))
        self.assertEqual([(status, len(body)) for status, _, body in answers if body != expected], [])


class Rebuild(unittest.TestCase):
    def test_an_edited_function_is_rebuilt_and_still_answers(self):
        status, _, _ = call("GET", "/health")
        self.assertEqual(status, 200)
        source = ROOT / "functions" / "status" / "src" / "main.rs"
        seen = LOG.stat().st_size
        # The same text written again: an edit as the file watcher sees one, that changes nothing.
        source.write_text(source.read_text())
        deadline = time.monotonic() + 240
        while "Compiling status" not in LOG.read_text(errors="replace")[seen:]:
            self.assertLess(time.monotonic(), deadline, "cargo lambda watch did not rebuild status")
            time.sleep(0.5)
        status, _, body = call("GET", "/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))


if __name__ == "__main__":
    unittest.main()
