"""Limits under load, against the local stack.

Per-key rate limits (docs/design.md, "Rate limits"): one key allowed 100 creates a minute bursting
150 within a minute gets 429s past its 100, each with Retry-After and the draft's RateLimit
headers; a second key, at the default 600, bursting 50 at the same time gets none; no request
gets a 5xx; and the jobs written are exactly the ones answered 202. Small bursts, so that both fit
one window of a minute whatever the stack's pace.

Per-owner quotas (docs/design.md, "Quotas"): 50 concurrent submits of an owner allowed 5 jobs at
once never leave more than 5 of its jobs queued or running, by the jobs' own times.

Needs MEDIAGEN_API_URL; two fresh keys of two owners with their owners' quotas lifted,
MEDIAGEN_BURST_KEY (allowed 100 creates a minute) and MEDIAGEN_CALM_KEY (the default rate limits); and MEDIAGEN_CAPPED_KEY, whose
owner may have 5 jobs at once. scripts/test.sh sets them."""

import concurrent.futures
import json
import os
import threading
import time
import unittest
import urllib.error
import urllib.request

API = os.environ.get("MEDIAGEN_API_URL", "").rstrip("/")
BURST_KEY = os.environ.get("MEDIAGEN_BURST_KEY", "")
CALM_KEY = os.environ.get("MEDIAGEN_CALM_KEY", "")
CAPPED_KEY = os.environ.get("MEDIAGEN_CAPPED_KEY", "")

if not (API and BURST_KEY and CALM_KEY and CAPPED_KEY):
    raise unittest.SkipTest(
        "MEDIAGEN_API_URL, MEDIAGEN_BURST_KEY, MEDIAGEN_CALM_KEY and MEDIAGEN_CAPPED_KEY are not set: run scripts/test.sh"
    )

BURST = 150
CALM = 50
# The burst key's creates a minute, as scripts/test.sh sets it.
BURST_LIMIT = 100
BODY = json.dumps({"prompt": "a rate-limited kettle", "width": 256, "height": 256}).encode()


def call(key, method, path, body=None):
    """(status, headers, body)."""
    request = urllib.request.Request(API + path, data=body, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def listed(key):
    """Every job the key's owner has, through the listing."""
    jobs, cursor = [], None
    while True:
        path = "/media/jobs?limit=100" + (f"&cursor={cursor}" if cursor else "")
        status, _, body = call(key, "GET", path)
        assert status == 200, body
        page = json.loads(body)
        jobs += page["jobs"]
        cursor = page.get("next_cursor")
        if not cursor:
            return jobs


def jobs_of(key):
    """The ids of every job the key's owner has."""
    return [job["job_id"] for job in listed(key)]


def most_at_once(intervals):
    """The most intervals (start, end) that overlap at any moment; an end before a start at the
    same moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    at_once = most = 0
    for _, change in events:
        at_once += change
        most = max(most, at_once)
    return most


class RateLimitsUnderLoad(unittest.TestCase):
    def test_one_key_bursting_past_its_limit_leaves_the_other_untouched(self):
        # Both bursts inside one window of a minute (200 requests: about 5 s here).
        second = time.time() % 60
        if second > 40:
            time.sleep(61 - second)
        answers = {BURST_KEY: [], CALM_KEY: []}
        lock = threading.Lock()

        def create(key):
            status, headers, body = call(key, "POST", "/media/generate", BODY)
            with lock:
                answers[key].append((status, headers, body))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # Interleaved, so that both keys burst at the same time.
            futures = []
            for i in range(max(BURST, CALM)):
                if i < BURST:
                    futures.append(pool.submit(create, BURST_KEY))
                if i < CALM:
                    futures.append(pool.submit(create, CALM_KEY))
            for future in futures:
                future.result()

        for key, name in [(BURST_KEY, "burst"), (CALM_KEY, "calm")]:
            statuses = [status for status, _, _ in answers[key]]
            self.assertEqual([s for s in statuses if s >= 500], [], f"{name}: 5xx answers")
            self.assertEqual(set(statuses) - {202, 429}, set(), f"{name}: {sorted(set(statuses))}")
            for status, headers, body in answers[key]:
                self.assertIn("create", headers.get("RateLimit", ""), f"{name}: {status} without RateLimit")
                self.assertIn(";q=", headers.get("RateLimit-Policy", ""))
                if status == 429:
                    self.assertGreaterEqual(int(headers["Retry-After"]), 1)
                    self.assertEqual(json.loads(body)["type"], "urn:mediagen:problem:rate-limited")
                    self.assertTrue(headers["RateLimit"].startswith('"create";r=0;t='), headers["RateLimit"])
            accepted = [json.loads(body)["job_id"] for status, _, body in answers[key] if status == 202]
            # Every 202 is a job written, and nothing else is.
            self.assertEqual(sorted(jobs_of(key)), sorted(accepted), name)
            if key == BURST_KEY:
                self.assertEqual(len(accepted), BURST_LIMIT)
                self.assertEqual(statuses.count(429), BURST - BURST_LIMIT)
            else:
                self.assertEqual(statuses.count(429), 0)
                self.assertEqual(len(accepted), CALM)


class OwnerQuotaUnderLoad(unittest.TestCase):
    LIMIT = 5

    def test_fifty_concurrent_submits_never_leave_more_jobs_active_than_the_limit(self):
        # The slow model (3 s an image) keeps the admitted jobs active while the others ask.
        body = json.dumps({"prompt": "a capped crowd", "model": "local-slow", "width": 256, "height": 256}).encode()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: call(CAPPED_KEY, "POST", "/media/generate", body), range(50)))

        statuses = [status for status, _, _ in answers]
        self.assertEqual(set(statuses) - {202, 429}, set(), sorted(set(statuses)))
        accepted = [json.loads(body)["job_id"] for status, _, body in answers if status == 202]
        self.assertGreaterEqual(len(accepted), self.LIMIT)
        self.assertGreater(statuses.count(429), 0)
        for status, headers, body in answers:
            if status == 429:
                self.assertEqual(json.loads(body)["type"], "urn:mediagen:problem:too-many-active-jobs")
                self.assertGreaterEqual(int(headers["Retry-After"]), 1)
        # Every 202 is a job written, and nothing else is.
        self.assertEqual(sorted(jobs_of(CAPPED_KEY)), sorted(accepted))

        deadline = time.time() + 120
        while True:
            jobs = listed(CAPPED_KEY)
            if all(job["status"] in ("succeeded", "failed", "canceled") for job in jobs) or time.time() > deadline:
                break
            time.sleep(1)
        self.assertEqual({job["status"] for job in jobs}, {"succeeded"})
        # From its submit to its end a job is queued or running; the times are the jobs' own.
        whole = [json.loads(call(CAPPED_KEY, "GET", f"/media/jobs/{job['job_id']}")[2]) for job in jobs]
        intervals = [(job["created_at"], job["completed_at"]) for job in whole]
        self.assertLessEqual(most_at_once(intervals), self.LIMIT, intervals)
        # Every slot is given back once its job ends.
        status, _, body = call(CAPPED_KEY, "GET", "/media/usage")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["active_jobs"], {"used": 0, "limit": self.LIMIT, "remaining": self.LIMIT})


if __name__ == "__main__":
    unittest.main()
