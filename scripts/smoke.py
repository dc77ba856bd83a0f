#!/usr/bin/env python3
"""Smoke test of a deployed mediagen API (scripts/deploy.sh runs it): submits a job, waits
for it, downloads its image through the presigned URL, and checks that API Gateway hands
wrong methods and unknown paths to the functions (405 and 404 problems, not its own 403).

    python3 scripts/smoke.py API_URL [--out DIR] [--timeout SECONDS] [--api-key KEY]

API_URL is the stage's base URL, e.g. https://<id>.execute-api.<region>.amazonaws.com/prod.
With --api-key (or MEDIAGEN_API_KEY), every call to the API carries `Authorization: Bearer KEY`;
the download from the presigned URL never does. Standard library only."""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)
# Headers of every call to the API (not to S3): the API key, when one is given.
API_HEADERS = {}


def call(method, url, body=None, headers=None):
    """(status, headers, body bytes) of one request; redirects are not followed."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {**API_HEADERS, **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def download(url):
    """GET of a presigned URL: no API headers (S3 refuses a second kind of authentication)."""
    request = urllib.request.Request(url)
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def expect(condition, message):
    if not condition:
        sys.exit(f"smoke test failed: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("api")
    parser.add_argument("--out", default="out")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the job")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MEDIAGEN_API_KEY") or None,
        help="sent as Authorization: Bearer KEY to the API (default: MEDIAGEN_API_KEY; none if unset)",
    )
    args = parser.parse_args()
    if args.api_key:
        API_HEADERS["Authorization"] = f"Bearer {args.api_key}"
    api = args.api.rstrip("/")
    started = time.monotonic()

    status, headers, body = call(
        "POST",
        f"{api}/media/generate",
        {"prompt": "a lighthouse on a cliff at dusk, oil painting", "width": 512, "height": 512},
    )
    expect(status == 202, f"POST /media/generate answered {status}: {body[:300]!r}")
    job_id = json.loads(body)["job_id"]
    print(f"submitted job {job_id}")

    last = None
    while True:
        status, _, body = call("GET", f"{api}/media/status/{job_id}")
        expect(status == 200, f"GET /media/status answered {status}: {body[:300]!r}")
        job = json.loads(body)
        if (job["status"], job["attempts"]) != last:
            print(f"  {time.monotonic() - started:6.1f}s  {job['status']} (attempt {job['attempts']})")
            last = (job["status"], job["attempts"])
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        expect(time.monotonic() - started < args.timeout, f"job still {job['status']} after {args.timeout:.0f}s")
        time.sleep(1)
    expect(job["status"] == "succeeded", f"the job ended {job['status']}: {job.get('error')}")

    status, _, body = call("GET", f"{api}/media/jobs/{job_id}")
    expect(status == 200, f"GET /media/jobs answered {status}")
    media = json.loads(body)["media"]
    expect(len(media) == 1, f"expected one image, got {media}")
    item = media[0]
    expect(item["content_url"].endswith(f"/media/content/{item['media_id']}"), f"content_url {item['content_url']}")

    # API Gateway gives the function `Accept: application/json` when the client sends no Accept
    # (and content answers JSON then): ask for the image as a browser would.
    status, headers, body = call("GET", f"{api}/media/content/{item['media_id']}", headers={"Accept": "image/*, */*"})
    expect(status == 302 and headers.get("Location"), f"GET /media/content answered {status}, not a redirect: {body[:300]!r}")
    status, _, body = call("GET", f"{api}/media/content/{item['media_id']}", headers={"Accept": "application/json"})
    expect(status == 200 and json.loads(body).get("url", "").startswith("http"), f"GET /media/content as JSON answered {status}: {body[:300]!r}")
    status, _, image = download(headers["Location"])
    expect(status == 200, f"the presigned URL answered {status}: {image[:300]!r}")
    expect(image.startswith(PNG), "the download is not a PNG")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{job_id}-0.png"
    path.write_bytes(image)
    print(f"wrote {path} ({len(image)} bytes) in {time.monotonic() - started:.1f}s")

    # API Gateway passes wrong methods and unknown paths to the functions.
    status, headers, body = call("GET", f"{api}/media/generate")
    expect(status == 405 and headers.get("Allow") == "POST", f"GET /media/generate answered {status}, not 405")
    status, headers, body = call("GET", f"{api}/no/such/path")
    expect(status == 404, f"GET /no/such/path answered {status}, not 404")
    expect(headers.get("Content-Type", "").startswith("application/problem+json"), "a 404 that is not a problem")
    status, _, _ = call("GET", f"{api}/media/status/not-an-id")
    expect(status == 400, f"a malformed id answered {status}, not 400")
    print("routing: 405 for a wrong method, 404 problem for an unknown path, 400 for a malformed id")


if __name__ == "__main__":
    main()
