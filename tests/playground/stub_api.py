#!/usr/bin/env python3
"""A stand-in for the mediagen HTTP API (docs/design.md, "HTTP contract"), standard library only.

It serves web/playground.html at <prefix>/playground and answers the routes the playground and
the CLI use, with the same status codes, problem+json bodies and headers as the real API:
Bearer keys (401 with WWW-Authenticate), 422 invalid-request naming each field, 202 on submit,
``Prefer: wait=N`` held answers with ``Preference-Applied: wait``, ``Retry-After: 1`` while not
final, presigned-style content links to a storage route that refuses an Authorization header,
the paged listing, cancel (200, 202, 409), and the public ``GET /v1/models`` with two models
(``MODELS``; a request naming another is refused, as the API does; sizes are not fitted). Each
submitted body is kept in ``Store.submitted``. Jobs run on a clock: queued for ``queued_s``,
then processing for ``processing_s``; a prompt containing ``[fail]`` fails with model_failed.
Images are real PNGs of the asked size (whatever the format asked: the stub only encodes PNG).
A submit's and a job read's ``links.stream`` is the job's progress as Server-Sent Events at
``/v1/predictions/{id}/stream``, signed (``signature=stub``), with the API's events (``status``,
``logs``, ``output`` with a signed ``/v1/files/{id}`` link, ``error``, ``done``), ``Last-Event-ID``
resumption and a heartbeat; ``Store.streams = False`` answers it 404, as an older API.

    python3 tests/playground/stub_api.py --port 8077 --prefix /prod --key stub-key

It is what tests/playground/test_playground.py runs against when MEDIAGEN_API_URL is not set.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
PLAYGROUND = ROOT / "web" / "playground.html"
FINAL = {"succeeded", "failed", "canceled"}
FAILURE_MARKER = "[fail]"
MAX_WAIT = 20
# The stub's signed links: a fixed signature, an expiry checked.
SIGNATURE = "stub"
LINK_TTL_S = 900
HEARTBEAT_S = 10
# GET /v1/models's data (functions/core/src/entrypoints/views.rs, ModelView).
MODELS = [
    {"id": "local", "object": "model", "created": 0, "owned_by": "local", "provider_model": "local",
     "default": True, "sizes": [], "formats": ["png", "webp", "jpg"], "price_per_image_usd": 0.0,
     "price_source": "our deterministic offline renderer: no model price", "fallback": []},
    {"id": "gpt-image-1", "object": "model", "created": 0, "owned_by": "openai", "provider_model": "gpt-image-1",
     "default": False, "sizes": ["1024x1024", "1536x1024", "1024x1536"], "formats": ["png", "webp", "jpg"],
     "price_per_image_usd": 0.042, "price_source": "https://platform.openai.com/docs/pricing", "fallback": []},
]
DEFAULT_MODEL = next(m["id"] for m in MODELS if m["default"])


def now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(value) -> str:
    """JSON as the API writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def png(width: int, height: int, seed: int, index: int) -> bytes:
    """A dusk seascape with a lighthouse, varied by seed and index: enough to look at."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    hue = digest[0] / 255.0
    top = (int(20 + 40 * hue), int(24 + 20 * hue), int(70 + 60 * (1 - hue)))
    low = (int(230 - 30 * hue), int(120 + 50 * hue), int(60 + 40 * hue))
    horizon = int(height * (0.58 + 0.12 * digest[1] / 255))
    sun_x = int(width * (0.2 + 0.6 * digest[2] / 255))
    sun_y = horizon - int(height * 0.12)
    sun_r = max(8, int(min(width, height) * 0.08))
    tower_x = int(width * (0.12 + 0.1 * digest[3] / 255)) if digest[4] % 2 else int(width * 0.78)
    tower_w = max(6, width // 40)
    tower_top = int(horizon - height * 0.32)
    rows = []
    for y in range(height):
        if y < horizon:
            t = y / max(horizon - 1, 1)
            color = tuple(int(a + (b - a) * t) for a, b in zip(top, low))
        else:
            t = (y - horizon) / max(height - horizon, 1)
            shade = 0.55 - 0.3 * t + (0.06 if (y // 3) % 2 else 0)
            color = tuple(int(c * shade) for c in low)
        row = bytearray(bytes(color) * width)
        dy = y - sun_y
        if abs(dy) < sun_r and y < horizon:
            half = int(math.sqrt(sun_r * sun_r - dy * dy))
            lo, hi = max(0, sun_x - half), min(width, sun_x + half)
            row[lo * 3:hi * 3] = bytes((255, 214, 150)) * (hi - lo)
        if y > horizon and abs(dy + 2 * (sun_y - horizon)) < sun_r * 3 and (y // 4) % 2:
            half = int(sun_r * (1 - (y - horizon) / max(height - horizon, 1)))
            lo, hi = max(0, sun_x - half), min(width, sun_x + half)
            row[lo * 3:hi * 3] = bytes((240, 170, 110)) * (hi - lo)
        if tower_top <= y < horizon + 4:
            taper = int((y - tower_top) / max(horizon - tower_top, 1) * tower_w * 0.4)
            lo, hi = max(0, tower_x - tower_w // 2 - taper), min(width, tower_x + tower_w // 2 + taper)
            light = tower_top <= y < tower_top + tower_w
            band = ((y - tower_top) // max(tower_w, 1)) % 2
            paint = (255, 240, 180) if light else ((30, 26, 32) if band else (200, 60, 50))
            row[lo * 3:hi * 3] = bytes(paint) * (hi - lo)
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows), 6)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@dataclass
class Job:
    job_id: str
    request: dict
    created: float
    queued_s: float
    processing_s: float
    canceled_at: float | None = None
    cancel_requested: bool = False
    media: list = field(default_factory=list)

    def status(self, at: float) -> str:
        if self.canceled_at is not None and at >= self.canceled_at:
            return "canceled"
        if at < self.created + self.queued_s:
            return "queued"
        if at < self.created + self.queued_s + self.processing_s:
            return "processing"
        if self.cancel_requested:
            return "canceled"
        return "failed" if FAILURE_MARKER in self.request["prompt"] else "succeeded"

    def ended_at(self) -> float:
        if self.canceled_at is not None:
            return self.canceled_at
        return self.created + self.queued_s + self.processing_s

    def status_view(self, at: float) -> dict:
        status = self.status(at)
        attempts = 0 if status == "queued" or (status == "canceled" and self.canceled_at is not None) else 1
        view = {
            "job_id": self.job_id,
            "status": status,
            "attempts": attempts,
            "created_at": now_iso(self.created),
            "updated_at": now_iso(min(at, self.ended_at()) if status in FINAL else self.created),
        }
        if status == "failed":
            view["error"] = {
                "code": "model_failed",
                "message": "NSFW content detected. Try running it again, or try a different prompt.",
            }
        return view

    def listing_view(self, at: float) -> dict:
        view = self.status_view(at)
        request = self.request
        view.update({key: request.get(key) for key in ("prompt", "model", "width", "height", "num_outputs", "output_format")})
        return view

    def full_view(self, at: float, prefix: str) -> dict:
        view = self.listing_view(at)
        status = view["status"]
        started = self.created + self.queued_s
        view.update({
            "negative_prompt": self.request.get("negative_prompt"),
            "seed": self.request["seed"],
            "webhook_url": None,
            "started_at": now_iso(started) if status != "queued" and self.canceled_at is None else None,
            "completed_at": now_iso(self.ended_at()) if status in FINAL else None,
            "timings": {"queued_ms": int(self.queued_s * 1000), "generation_ms": int(self.processing_s * 1000)}
            if status == "succeeded" else None,
            "media": [],
        })
        if status == "succeeded":
            view["media"] = [
                {
                    "media_id": media_id,
                    "index": index,
                    "content_type": "image/png",
                    "bytes": len(self.image(index)),
                    "width": self.request["width"],
                    "height": self.request["height"],
                    "content_url": f"{prefix}/media/content/{media_id}",
                }
                for index, media_id in enumerate(self.media)
            ]
        return view

    def events(self, at: float, root: str) -> list[tuple[str, str]]:
        """The job's progress stream so far, as the API derives it from the job's record
        (functions/core/src/domain/stream.rs): each later record only adds events."""
        view = self.status_view(at)
        status = view["status"]
        model = self.request["model"]
        events = [("status", compact({"status": "queued"}))]
        if view["attempts"]:
            events.append(("status", compact({"status": "processing"})))
            events.append(("logs", f"generating with {model}"))
        if status in ("succeeded", "failed"):
            # At the end, each model tried: its outcome (succeeded, or the error's code) and time.
            outcome = "succeeded" if status == "succeeded" else view["error"]["code"]
            events.append(("logs", f"{model}: {outcome} in {self.processing_s:.1f} s"))
        if status == "succeeded":
            expires = int(at) + LINK_TTL_S
            events += [("output", f"{root}/v1/files/{media_id}?expires={expires}&signature={SIGNATURE}")
                       for media_id in self.media]
        if status in FINAL:
            events.append(("status", compact({"status": status})))
        if status == "failed":
            events.append(("error", view["error"]["message"]))
        if status in FINAL:
            events.append(("done", compact({"reason": "canceled"}) if status == "canceled" else "{}"))
        return events

    def image(self, index: int) -> bytes:
        cache = self.__dict__.setdefault("_images", {})
        if index not in cache:
            cache[index] = png(self.request["width"], self.request["height"], self.request["seed"], index)
        return cache[index]


class Store:
    def __init__(self, key: str, queued_s: float, processing_s: float):
        self.key = key
        self.queued_s = queued_s
        self.processing_s = processing_s
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.media: dict[str, tuple[Job, int]] = {}
        self.requests: list[dict] = []  # what was asked, for tests
        self.submitted: list[object] = []  # each POST /media/generate body, parsed, for tests
        self.streams = True  # False: no progress stream, as an API older than it

    def create(self, request: dict) -> Job:
        with self.lock:
            job = Job(str(uuid.uuid4()), request, time.time(), self.queued_s, self.processing_s)
            job.media = [str(uuid.uuid4()) for _ in range(request["num_outputs"])]
            self.jobs[job.job_id] = job
            for index, media_id in enumerate(job.media):
                self.media[media_id] = (job, index)
            return job


ALLOWED_FIELDS = {"prompt", "negative_prompt", "model", "width", "height", "num_outputs", "seed", "output_format", "webhook_url"}


def validate(body: object) -> tuple[dict | None, list[dict]]:
    if not isinstance(body, dict):
        return None, [{"field": "body", "message": "must be a JSON object"}]
    errors = [{"field": name, "message": "unknown field"} for name in body if name not in ALLOWED_FIELDS]
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        errors.append({"field": "prompt", "message": "must not be empty" if isinstance(prompt, str) or prompt is None else "must be a string"})
    elif len(prompt.strip()) > 2000:
        errors.append({"field": "prompt", "message": "must be at most 2000 characters"})

    def integer(name: str, low: int, high: int, default: int | None, step: int = 1):
        value = body.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append({"field": name, "message": "must be an integer"})
        elif not low <= value <= high:
            errors.append({"field": name, "message": f"must be between {low} and {high}"})
        elif value % step:
            errors.append({"field": name, "message": f"must be a multiple of {step}"})
        return value

    width = integer("width", 256, 1440, 1024, 32)
    height = integer("height", 256, 1440, 1024, 32)
    num_outputs = integer("num_outputs", 1, 4, 1)
    seed = integer("seed", 0, 2**32 - 1, None)
    output_format = body.get("output_format") or "png"
    if output_format not in ("png", "webp", "jpg"):
        errors.append({"field": "output_format", "message": "must be one of png, webp, jpg"})
    model = body.get("model") or DEFAULT_MODEL
    if model not in [m["id"] for m in MODELS]:
        errors.append({"field": "model", "message": "must be one of: " + ", ".join(m["id"] for m in MODELS)})
    if errors:
        return None, errors
    return {
        "prompt": prompt.strip(),
        "negative_prompt": (body.get("negative_prompt") or None),
        "model": model,
        "width": width,
        "height": height,
        "num_outputs": num_outputs,
        "seed": seed if seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "big"),
        "output_format": output_format,
    }, []


ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def make_handler(store: Store, prefix: str):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mediagen-stub"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; tests read store.requests instead
            pass

        # ---- answers ----
        def send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def json(self, status: int, value, headers: dict | None = None):
            self.send(status, json.dumps(value).encode(), "application/json", headers)

        def problem(self, status: int, slug: str, title: str, detail: str, errors=None, headers=None):
            body = {"type": f"urn:mediagen:problem:{slug}", "title": title, "status": status, "detail": detail}
            if errors:
                body["errors"] = errors
            self.send(status, json.dumps(body).encode(), "application/problem+json", headers)

        def authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            if header == f"Bearer {store.key}":
                return True
            detail = "the API key is missing" if not header else "the API key is not valid"
            self.problem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
            return False

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        # ---- routing ----
        def route(self):
            url = urlsplit(self.path)
            path = url.path
            store.requests.append({"method": self.command, "path": path, "headers": dict(self.headers)})
            if path.startswith("/_storage/"):
                return self.storage(path)
            if not path.startswith(prefix + "/") and path != prefix:
                return self.problem(404, "no-route", "No route", f"no route for {self.command} {path}")
            path = path[len(prefix):] or "/"
            query = parse_qs(url.query)
            if path in ("/playground", "/playground/", "/"):
                if self.command != "GET":
                    return self.problem(405, "method-not-allowed", "Method not allowed", "use GET", headers={"Allow": "GET"})
                return self.send(200, PLAYGROUND.read_bytes(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
            if path == "/health":
                return self.json(200, {"status": "ok"})
            if path == "/v1/models":
                return self.json(200, {"object": "list", "data": MODELS})
            match = re.fullmatch(r"/v1/predictions/([^/]+)/stream", path)
            if match and store.streams and self.command == "GET":
                return self.stream(match.group(1), query)
            match = re.fullmatch(r"/v1/files/([^/]+)", path)
            if match and self.command == "GET":
                return self.file(match.group(1), query)
            if path == "/media/generate":
                if self.command != "POST":
                    return self.problem(405, "method-not-allowed", "Method not allowed", "use POST", headers={"Allow": "POST"})
                return self.authorized() and self.generate()
            if path == "/media/jobs":
                return self.authorized() and self.listing(query)
            match = re.fullmatch(r"/media/(status|jobs|content)/([^/]+)(/cancel)?", path)
            if match:
                kind, ident, cancel = match.groups()
                if not self.authorized():
                    return
                if not ID.match(ident):
                    name = "media_id" if kind == "content" else "job_id"
                    return self.problem(400, "malformed-id", "Malformed id", f"{name} is not an id",
                                        [{"field": name, "message": "must be a UUID"}])
                if cancel and kind == "jobs" and self.command == "POST":
                    return self.cancel(ident)
                if not cancel and self.command == "GET":
                    return {"status": self.status, "jobs": self.job, "content": self.content}[kind](ident)
                return self.problem(405, "method-not-allowed", "Method not allowed", "wrong method")
            return self.problem(404, "no-route", "No route", f"no route for {self.command} {path}")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route

        # ---- routes ----
        def generate(self):
            if "json" not in (self.headers.get("Content-Type") or ""):
                return self.problem(415, "unsupported-media-type", "Unsupported media type", "send application/json")
            try:
                body = json.loads(self.body() or b"null")
            except ValueError:
                return self.problem(400, "malformed-json", "Malformed JSON", "the body is not JSON")
            store.submitted.append(body)
            request, errors = validate(body)
            if errors:
                fields = ", ".join(e["field"] for e in errors)
                return self.problem(422, "invalid-request", "Invalid request", f"check these fields: {fields}", errors)
            job = store.create(request)
            links = self.links(job)
            self.json(202, {"job_id": job.job_id, "status": "queued", "created_at": now_iso(job.created), "links": links},
                      {"Location": links["status"]})

        def links(self, job: Job) -> dict:
            expires = int(time.time()) + LINK_TTL_S
            return {
                "status": f"{prefix}/media/status/{job.job_id}",
                "job": f"{prefix}/media/jobs/{job.job_id}",
                "stream": f"{prefix}/v1/predictions/{job.job_id}/stream?expires={expires}&signature={SIGNATURE}",
            }

        def signed(self, query) -> bool:
            try:
                expires = int((query.get("expires") or [""])[0])
            except ValueError:
                return False
            return (query.get("signature") or [""])[0] == SIGNATURE and expires > time.time()

        def stream(self, job_id: str, query):
            # A signed link needs no key, as with the API: an EventSource sends none.
            if not self.signed(query) and not self.authorized():
                return
            job = store.jobs.get(job_id) if ID.match(job_id) else None
            if job is None:
                return self.problem(404, "not-found", "Not found", f"no prediction {job_id}")
            try:
                next_event = int(self.headers.get("Last-Event-ID", "").strip()) + 1
            except ValueError:
                next_event = 0
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            root = f"http://{self.headers.get('Host', '127.0.0.1')}{prefix}"
            last_sent = time.time()
            try:
                while True:
                    at = time.time()
                    events = job.events(at, root)
                    for index in range(next_event, len(events)):
                        name, data = events[index]
                        lines = "".join(f"data: {line}\n" for line in data.split("\n"))
                        self.wfile.write(f"id: {index}\nevent: {name}\n{lines}\n".encode())
                        last_sent = at
                    next_event = max(next_event, len(events))
                    if job.status(at) in FINAL:
                        return
                    if at - last_sent >= HEARTBEAT_S:
                        self.wfile.write(b": keep-alive\n\n")
                        last_sent = at
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                return

        def file(self, media_id: str, query):
            found = store.media.get(media_id)
            if not self.signed(query):
                return self.problem(401, "unauthorized", "Unauthorized", "the link is not signed")
            if not found or found[0].status(time.time()) != "succeeded":
                return self.problem(404, "not-found", "Not found", f"no file {media_id}")
            job, index = found
            self.send(200, job.image(index), "image/png")

        def find(self, job_id: str) -> Job | None:
            job = store.jobs.get(job_id)
            if job is None:
                self.problem(404, "not-found", "Not found", f"no job {job_id}")
            return job

        def status(self, job_id: str):
            job = self.find(job_id)
            if job:
                view = job.status_view(time.time())
                headers = {"Cache-Control": "no-store"}
                if view["status"] not in FINAL:
                    headers["Retry-After"] = "1"
                self.json(200, view, headers)

        def job(self, job_id: str):
            job = self.find(job_id)
            if not job:
                return
            headers = {"Cache-Control": "no-store"}
            wait = re.search(r"(?:^|[,;\s])wait=(\d+)", self.headers.get("Prefer", ""))
            if wait:
                deadline = time.time() + min(int(wait.group(1)), MAX_WAIT)
                while job.status(time.time()) not in FINAL and time.time() < deadline:
                    time.sleep(0.05)
                headers["Preference-Applied"] = "wait"
            view = job.full_view(time.time(), prefix)
            view["links"] = self.links(job)
            if view["status"] not in FINAL:
                headers["Retry-After"] = "1"
            self.json(200, view, headers)

        def listing(self, query):
            status = (query.get("status") or [None])[0]
            errors = []
            if status is not None and status not in ("queued", "processing", "succeeded", "failed", "canceled"):
                errors.append({"field": "status", "message": "must be a job state"})
            try:
                limit = int((query.get("limit") or ["20"])[0])
                if not 1 <= limit <= 100:
                    raise ValueError
            except ValueError:
                errors.append({"field": "limit", "message": "must be between 1 and 100"})
                limit = 0
            try:
                cursor = (query.get("cursor") or [None])[0]
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
            except ValueError:
                errors.append({"field": "cursor", "message": "is not a cursor from this API"})
                offset = 0
            if errors:
                return self.problem(422, "invalid-request", "Invalid request", "check the query", errors)
            at = time.time()
            jobs = sorted(store.jobs.values(), key=lambda j: j.created, reverse=True)
            if status:
                jobs = [j for j in jobs if j.status(at) == status]
            page = jobs[offset:offset + limit]
            more = offset + limit < len(jobs)
            next_cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if more else None
            self.json(200, {"jobs": [j.listing_view(at) for j in page], "next_cursor": next_cursor})

        def cancel(self, job_id: str):
            job = self.find(job_id)
            if not job:
                return
            at = time.time()
            status = job.status(at)
            if status in FINAL:
                return self.problem(409, "job-final", "Conflict", f"the job is already {status}")
            if status == "queued":
                job.canceled_at = at
                return self.json(200, job.full_view(at, prefix))
            job.cancel_requested = True
            view = job.full_view(at, prefix)
            view["cancel_requested"] = True
            self.json(202, view)

        def content(self, media_id: str):
            found = store.media.get(media_id)
            if not found or found[0].status(time.time()) != "succeeded":
                return self.problem(404, "not-found", "Not found", f"no media {media_id}")
            host = self.headers.get("Host", "127.0.0.1")
            url = f"http://{host}/_storage/{media_id}.png?X-Amz-Expires=900&X-Amz-Signature=stub"
            expires = now_iso(time.time() + 900)
            if "application/json" in (self.headers.get("Accept") or ""):
                return self.json(200, {"url": url, "expires_at": expires, "content_type": "image/png"})
            self.send(302, b"", "text/plain", {"Location": url, "Cache-Control": "private, max-age=805"})

        def storage(self, path: str):
            # Like S3 with a presigned URL: a second authorisation is refused.
            if self.headers.get("Authorization"):
                return self.send(400, b"<Error><Code>InvalidArgument</Code></Error>", "application/xml")
            found = store.media.get(path.rsplit("/", 1)[-1].removesuffix(".png"))
            if not found:
                return self.send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
            job, index = found
            self.send(200, job.image(index), "image/png")

    return Handler


def make_server(port: int = 0, prefix: str = "", key: str = "stub-key", queued_s: float = 0.6,
                processing_s: float = 1.2, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, Store]:
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    store = Store(key, queued_s, processing_s)
    server = ThreadingHTTPServer((host, port), make_handler(store, prefix))
    server.daemon_threads = True
    return server, store


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="", help="a stage prefix, e.g. /prod")
    parser.add_argument("--key", default="stub-key", help="the one API key accepted")
    parser.add_argument("--queued", type=float, default=0.6, help="seconds a job stays queued")
    parser.add_argument("--processing", type=float, default=1.2, help="seconds a job runs")
    args = parser.parse_args()
    server, _ = make_server(args.port, args.prefix, args.key, args.queued, args.processing)
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    print(f"stub API on http://127.0.0.1:{server.server_address[1]}{prefix} (key {args.key})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
