"""Measures mediagen's functions beside their baselines and writes target/bench/summary.json and
docs/benchmarks.md. Run by scripts/bench.sh, which builds the artifacts and starts the emulator first.

Each function binary runs against a small Lambda runtime API served here, the way Lambda runs it:
the process starts, asks for work at GET /2018-06-01/runtime/invocation/next, and posts each
answer back. Timing the first request for work gives the init time; timing each event from the
moment it is handed out to the moment its answer arrives gives the invocation latency.
"""

import argparse
import gc
import json
import math
import os
import platform
import re
import signal
import statistics
import tomllib
import subprocess
import threading
import time
import timeit
import http.client
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml  # PyYAML, in .venv/ with the SAM tools (scripts/requirements.txt)

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ["submit", "generate", "status", "content"]
NEXT = "/2018-06-01/runtime/invocation/next"


def now_ns():
    return time.perf_counter_ns()


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class RuntimeApi:
    """The Lambda runtime API for one process: hands out `events` in order, records timings."""

    def __init__(self, events):
        self.events = list(events)
        self.lock = threading.Lock()
        self.first_next = None
        self.first_next_seen = threading.Event()
        self.served = {}
        self.done = {}
        self.answers = {}
        self.errors = []
        self.all_done = threading.Event()
        self.stopping = threading.Event()
        if not self.events:
            self.all_done.set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle's algorithm on, each answer
            # would wait for the client's delayed ACK (40 ms) and swamp every figure.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the process was stopped while it waited for work

            def do_GET(self):
                if self.path != NEXT:
                    return self.reply(404)
                with api.lock:
                    if api.first_next is None:
                        api.first_next = now_ns()
                        api.first_next_seen.set()
                    event = api.events.pop(0) if api.events else None
                if event is None:
                    # Nothing more to hand out: hold the request as Lambda does while idle.
                    api.stopping.wait()
                    return self.reply(204)
                request_id = str(uuid.uuid4())
                body = json.dumps(event).encode()
                deadline = int(time.time() * 1000) + 60_000
                with api.lock:
                    api.served[request_id] = now_ns()
                self.reply(
                    200,
                    body,
                    [
                        ("Lambda-Runtime-Aws-Request-Id", request_id),
                        ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                        ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:111122223333:function:bench"),
                        ("Content-Type", "application/json"),
                    ],
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.strip("/").split("/")
                finished = now_ns()
                if len(parts) == 5 and parts[2] == "invocation":
                    request_id, kind = parts[3], parts[4]
                    with api.lock:
                        api.done[request_id] = finished
                        if kind == "response":
                            api.answers[request_id] = body
                        else:
                            api.errors.append(body.decode(errors="replace"))
                        if not api.events and len(api.done) == len(api.served):
                            api.all_done.set()
                else:
                    api.errors.append(f"{self.path}: {body.decode(errors='replace')}")
                    api.all_done.set()
                self.reply(202)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def latencies_ms(self):
        return [(self.done[i] - self.served[i]) / 1e6 for i in self.served if i in self.done]


def function_env(base_env, name, port):
    env = dict(base_env)
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
        AWS_LAMBDA_FUNCTION_NAME=name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}",
    )
    return env


def spawn(binary, name, base_env, api):
    """Starts a function process against `api`; answers it and the moment just before the spawn."""
    started = now_ns()
    process = subprocess.Popen(
        [str(binary)],
        env=function_env(base_env, name, api.port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, started


def run_process(binary, name, events, base_env, sample_rss=False, timeout=600):
    """Runs one process through `events`; answers the runtime API and timing records. Python's
    cyclic garbage collector is off meanwhile: its pauses, which grow with the objects in memory,
    would land in the sub-millisecond functions' p99 as if they were theirs."""
    gc.collect()
    gc.disable()
    try:
        return _run_process(binary, name, events, base_env, sample_rss, timeout)
    finally:
        gc.enable()


def _run_process(binary, name, events, base_env, sample_rss, timeout):
    api = RuntimeApi(events)
    process, started = spawn(binary, name, base_env, api)
    rss = []
    if sample_rss:
        def sample():
            while not api.all_done.is_set():
                try:
                    status = Path(f"/proc/{process.pid}/status").read_text()
                except OSError:
                    return
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                rss.append((len(api.done), int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024))
                time.sleep(0.01)
        threading.Thread(target=sample, daemon=True).start()
    finished = api.all_done.wait(timeout)
    process.kill()
    process.wait()
    api.close()
    if not finished or api.errors:
        raise RuntimeError(f"{name}: finished={finished} errors={api.errors[:3]}")
    return api, started, rss


def measure_init(bins, base_env, starts):
    """Median time from process start to its first request for work, per binary. The binaries
    take turns, so that the machine's drift over the run reaches each of them alike; the wait for
    the first request blocks rather than polls, leaving the server thread the interpreter."""
    times = {name: [] for name in bins}
    for _ in range(starts):
        for name, binary in bins.items():
            api = RuntimeApi([])
            process, started = spawn(binary, name, base_env, api)
            asked = api.first_next_seen.wait(10)
            process.kill()
            process.wait()
            api.close()
            if not asked:
                raise RuntimeError(f"{name} never asked for work (exit {process.returncode})")
            times[name].append((api.first_next - started) / 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def rest_event(template, method, path, body=None, path_parameters=None):
    """An API Gateway REST proxy event, with the bench's API key (scripts/bench.sh makes it)."""
    headers = {"Authorization": f"Bearer {os.environ['MEDIAGEN_API_KEY']}"}
    event = json.loads(json.dumps(template))
    event["httpMethod"] = method
    event["path"] = path
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/prod{path}"
    event["body"] = body
    event["pathParameters"] = path_parameters
    event["headers"].update(headers)
    event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
    return event


def sqs_event(job_ids):
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": json.dumps({"job_id": job_id}),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:bench",
                "awsRegion": "us-east-1",
            }
            for job_id in job_ids
        ]
    }


def invocation_figures(api, started, rss):
    latencies = api.latencies_ms()
    first_id = min(api.served, key=api.served.get)
    warm = latencies[1:]
    at_100 = next((r for n, r, _ in rss if n >= 100), None)
    return {
        "first_invoke_ms": (api.done[first_id] - started) / 1e6,
        "warm_p50_ms": statistics.median(warm),
        "warm_p99_ms": percentile(warm, 0.99),
        "rss_mb": max((peak for _, _, peak in rss), default=0.0),
        "rss_growth_mb": (rss[-1][1] - at_100) if rss and at_100 is not None else 0.0,
        "invocations": len(latencies),
    }


def measure_functions(bins, base_env, loops):
    """Runs each function through a warm loop; submit's jobs feed generate, status and content."""
    templates = {name: json.loads((ROOT / "events" / f"{name}.json").read_text()) for name in ["submit", "status", "content"]}
    body = json.dumps({"prompt": "a lighthouse on a cliff at dusk", "width": 256, "height": 256, "seed": 7})
    submit_events = [rest_event(templates["submit"], "POST", "/media/generate", body) for _ in range(loops)]
    figures = {}

    api, started, rss = run_process(bins["submit"], "submit", submit_events, base_env, sample_rss=True)
    figures["submit"] = invocation_figures(api, started, rss)
    job_ids = [json.loads(json.loads(answer)["body"])["job_id"] for answer in api.answers.values()]

    api, started, rss = run_process(bins["generate"], "generate", [sqs_event([j]) for j in job_ids], base_env, sample_rss=True)
    figures["generate"] = invocation_figures(api, started, rss)

    status_events = [
        rest_event(templates["status"], "GET", f"/media/status/{j}", path_parameters={"job_id": j}) for j in job_ids
    ]
    api, started, rss = run_process(bins["status"], "status", status_events, base_env, sample_rss=True)
    figures["status"] = invocation_figures(api, started, rss)

    # The whole-job view names each job's media.
    job_events = [rest_event(templates["status"], "GET", f"/media/jobs/{j}", path_parameters={"job_id": j}) for j in job_ids[:50]]
    api, _, _ = run_process(bins["status"], "status", job_events, base_env)
    media = [m for answer in api.answers.values() for m in json.loads(json.loads(answer)["body"])["media"]]
    if not media:
        raise RuntimeError("generate left no media to read back")
    media_ids = [m["media_id"] for m in media]
    content_events = [
        rest_event(templates["content"], "GET", f"/media/content/{m}", path_parameters={"media_id": m})
        for m in (media_ids * (loops // len(media_ids) + 1))[:loops]
    ]
    api, started, rss = run_process(bins["content"], "content", content_events, base_env, sample_rss=True)
    figures["content"] = invocation_figures(api, started, rss)
    return figures, statistics.median(m["bytes"] for m in media)


def criterion_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "criterion"


def criterion_median_ns(group, bench):
    estimates = criterion_dir() / group / bench / "new" / "estimates.json"
    return json.loads(estimates.read_text())["median"]["point_estimate"]


def interleaved_medians():
    """The handlers' and the direct calls' medians, and the limit check's, as the handlers bench
    measured them in interleaved rounds (functions/core/benches/handlers.rs)."""
    return json.loads((criterion_dir() / "interleaved.json").read_text())


def boto3_presign_us(endpoint):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    params = {"Bucket": "bench", "Key": "media/0192e5a0-7b1c-7c3d-8e9f-0123456789ab/0.png"}
    client.generate_presigned_url("get_object", Params=params, ExpiresIn=900)
    rounds = [
        timeit.timeit(lambda: client.generate_presigned_url("get_object", Params=params, ExpiresIn=900), number=500) / 500
        for _ in range(5)
    ]
    return statistics.median(rounds) * 1e6


def api_call(api_url, method, path, body=None):
    """One request to the local stack with its API key (start_stack exports it); the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "authorization": f"Bearer {os.environ['MEDIAGEN_API_KEY']}"}
    request = urllib.request.Request(f"{api_url}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def run_jobs(api_url, size, timeout=600):
    """Submits `size` jobs of 256×256 at once (16 clients) and waits for all to end; their ids."""
    body = {"prompt": "throughput", "width": 256, "height": 256}
    with ThreadPoolExecutor(max_workers=min(size, 16)) as pool:
        job_ids = list(pool.map(lambda _: api_call(api_url, "POST", "/media/generate", body)["job_id"], range(size)))
    wait_until_final(api_url, job_ids, time.time() + timeout)
    return job_ids


def wait_until_final(api_url, job_ids, deadline):
    """Waits until every job has ended; fails at `deadline` (a `time.time()`). Jobs end in about
    the order they were submitted, so it asks after the oldest unfinished one only: asking after
    every unfinished job each round was itself hundreds of requests a second to the stack it
    was timing."""
    pending = list(job_ids)
    while pending:
        if api_call(api_url, "GET", f"/media/status/{pending[0]}")["status"] in ("succeeded", "failed"):
            pending.pop(0)
            continue
        if time.time() >= deadline:
            raise RuntimeError(f"{len(pending)} of {len(job_ids)} jobs unfinished")
        time.sleep(0.02)


def pipeline(api_url, sizes):
    """Jobs finished per second for batches submitted at once, and submit→succeeded latencies."""
    results = {}
    for size in sizes:
        started = time.time()
        job_ids = run_jobs(api_url, size)
        elapsed = time.time() - started
        jobs = [api_call(api_url, "GET", f"/media/jobs/{j}") for j in job_ids]
        latencies = [j["timings"]["queued_ms"] + j["timings"]["generation_ms"] for j in jobs if j["status"] == "succeeded"]
        results[str(size)] = {
            "jobs_per_s": size / elapsed,
            "latency_p50_ms": statistics.median(latencies),
            "latency_p99_ms": percentile(latencies, 0.99),
            "failed": sum(1 for j in jobs if j["status"] != "succeeded"),
        }
    return results


def concurrently(clients, total, call, prepare):
    """Runs `call(i)` `total` times from `clients` threads; requests per second, p50 and p99 in ms,
    and the calls' answers. Each thread runs `prepare()` (its clients, its connection) before the
    clock starts: 30 threads making their boto3 clients at once took seconds, which read as the
    bound's p99."""
    def timed(i):
        started = time.perf_counter()
        answer = call(i)
        return time.perf_counter() - started, answer

    with ThreadPoolExecutor(max_workers=clients) as pool:
        # The barrier holds each thread to one preparation, so that every thread makes one.
        ready = threading.Barrier(clients)
        list(pool.map(lambda _: (prepare(), ready.wait()), range(clients)))
        started = time.perf_counter()
        results = list(pool.map(timed, range(total)))
        elapsed = time.perf_counter() - started
    latencies = [seconds * 1000 for seconds, _ in results]
    figures = {"per_s": total / elapsed, "p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 0.99)}
    return figures, [answer for _, answer in results]


def per_thread(make):
    """A function that answers the calling thread's own `make()`, made at its first call."""
    local = threading.local()

    def mine():
        if not hasattr(local, "value"):
            local.value = make()
        return local.value

    return mine


def emulator_clients():
    """One set of boto3 clients per thread (a client is not to be shared while it is being made)."""
    import boto3

    def make():
        session = boto3.session.Session()
        # The region of aws_env (scripts/lib.sh); boto3 reads only AWS_DEFAULT_REGION.
        region = os.environ.get("AWS_REGION", "us-east-1")
        return {name: session.client(name, region_name=region) for name in ("dynamodb", "sqs", "s3")}

    return per_thread(make)


def bound(table, queue_url, bucket, image_bytes, clients, total):
    """The emulators' bound: the AWS calls of a submit (the UpdateItem counting its key's request,
    the UpdateItem taking its slot in the owner's quota, PutItem of a job, SendMessage, the
    UpdateItem that clears its unsent mark) and of a job (the claim's UpdateItem, the image's
    PutObject, the completion's TransactWriteItems, the UpdateItem giving its slot back, a tenth
    of a DeleteMessageBatch), issued directly by `clients` threads as fast as the emulators
    answer. All of them under one key and one owner, as the stack's clients are."""
    aws = emulator_clients()
    image = os.urandom(image_bytes)

    def submit_calls(i):
        job_id = str(uuid.uuid4())
        key = {"pk": {"S": f"JOB#{job_id}"}}
        # A job's item in both of its indexes, as submit writes it (an owner of the bound's own).
        item = {
            **key, "status": {"S": "queued"}, "request": {"S": "x" * 400},
            "gsi1pk": {"S": "OWNER#bench-bound"}, "gsi1sk": {"S": job_id}, "gsi2pk": {"S": "UNSENT"}, "gsi2sk": {"S": job_id},
        }
        window = int(time.time()) // 60 * 60
        aws()["dynamodb"].update_item(
            TableName=table, Key={"pk": {"S": f"RATE#bound#create#{window}"}},
            UpdateExpression="ADD requests :one", ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
            ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": "100000000"}},
        )
        aws()["dynamodb"].update_item(
            TableName=table, Key=quota_key(i), UpdateExpression="ADD active :job, images_2026_12 :one",
            ConditionExpression="attribute_not_exists(active) OR size(active) < :limit",
            ExpressionAttributeValues={":job": {"SS": [job_id]}, ":one": {"N": "1"}, ":limit": {"N": "5000"}},
        )
        aws()["dynamodb"].put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        aws()["sqs"].send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job_id}))
        aws()["dynamodb"].update_item(TableName=table, Key=key, UpdateExpression="REMOVE gsi2pk, gsi2sk")
        return key, job_id

    def quota_key(_):
        return {"pk": {"S": "QUOTA#bench-bound"}}

    submit, submitted = concurrently(clients, total, submit_calls, aws)
    keys = [key for key, _ in submitted]

    def job_calls(i):
        key = keys[i]
        aws()["dynamodb"].update_item(
            TableName=table, Key=key, UpdateExpression="SET #s = :p", ConditionExpression="#s = :q",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":p": {"S": "processing"}, ":q": {"S": "queued"}},
        )
        aws()["s3"].put_object(Bucket=bucket, Key=f"media/bound/{uuid.uuid4()}.png", Body=image)
        media = {"pk": {"S": f"MEDIA#{uuid.uuid4()}"}, "job": key["pk"]}
        aws()["dynamodb"].transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": media}},
            {"Update": {"TableName": table, "Key": key, "UpdateExpression": "SET #s = :d",
                        "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": {":d": {"S": "succeeded"}}}},
        ])
        aws()["dynamodb"].update_item(
            TableName=table, Key=quota_key(i), UpdateExpression="DELETE active :job",
            ConditionExpression="contains(active, :id)",
            ExpressionAttributeValues={":job": {"SS": [submitted[i][1]]}, ":id": {"S": submitted[i][1]}},
        )
        if i % 10 == 0:
            received = aws()["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if received:
                aws()["sqs"].delete_message_batch(
                    QueueUrl=queue_url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(received)]
                )

    job, _ = concurrently(clients, total, job_calls, aws)
    return {"submit": submit, "job": job}


def keep_alive(api_url):
    """Each calling thread's own keep-alive connection to the stack."""
    address = urllib.parse.urlsplit(api_url)
    return per_thread(lambda: http.client.HTTPConnection(address.hostname, address.port, timeout=60))


def stack_load(api_url, clients, total, jobs_pump=None):
    """The local stack under the same number of clients: submits (each client with its own
    keep-alive connection), then jobs finished per second from the first submit to the last end.
    With `jobs_pump` (its process id), like the bound: the jobs' event source is disabled while
    the submits run, as the bound's submit calls run with no job beside them, then enabled, and
    jobs finished per second count from then, as the bound's job calls run alone."""
    connection = keep_alive(api_url)
    headers = {"content-type": "application/json", "authorization": f"Bearer {os.environ['MEDIAGEN_API_KEY']}"}
    body = json.dumps({"prompt": "load", "width": 256, "height": 256})

    def submit(i):
        connection().request("POST", "/media/generate", body, headers)
        answer = connection().getresponse()
        if answer.status != 202:
            raise RuntimeError(f"submit answered {answer.status}: {answer.read()[:200]!r}")
        return json.loads(answer.read())["job_id"]

    if jobs_pump:
        os.kill(jobs_pump, signal.SIGUSR1)
        # A receive already waiting (the pumps poll for up to a second) may still take messages.
        time.sleep(1.5)
    started = time.perf_counter()
    figures, job_ids = concurrently(clients, total, submit, lambda: connection().connect())
    if jobs_pump:
        started = time.perf_counter()
        os.kill(jobs_pump, signal.SIGUSR2)
    wait_until_final(api_url, job_ids, time.time() + 600)
    figures["jobs_per_s"] = total / (time.perf_counter() - started)
    return figures, job_ids


def status_load(api_url, job_ids, clients, total):
    connection = keep_alive(api_url)
    headers = {"authorization": f"Bearer {os.environ['MEDIAGEN_API_KEY']}"}

    def status(i):
        connection().request("GET", f"/media/status/{job_ids[i % len(job_ids)]}", headers=headers)
        answer = connection().getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"status answered {answer.status}")

    figures, _ = concurrently(clients, total, status, lambda: connection().connect())
    return figures


class PeakRss:
    """The highest resident memory of some processes and their descendants, sampled twice a second
    in a thread of its own while the `with` block runs."""

    def __init__(self, pids):
        self.pids, self.peak_mib, self._done = pids, 0.0, threading.Event()

    def _sample(self):
        while not self._done.wait(0.5):
            self.peak_mib = max(self.peak_mib, rss_mib(self.pids))

    def __enter__(self):
        self.peak_mib = rss_mib(self.pids)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._done.set()
        self._thread.join()


def load(api_url, table, queue_url, bucket, image_bytes, stack_pids, jobs_pump):
    """Stack beside bound, at 1 and 30 clients, submits and jobs each alone as in the bound; at
    30 clients also the submits with the jobs running beside them; submit and status at 20
    clients (issue 15's figures, the jobs running); the whole stack's peak resident memory
    meanwhile."""
    figures = {}
    with PeakRss(stack_pids) as memory:
        for clients, total in ((1, 100), (30, 600)):
            figures[str(clients)] = {
                "bound": bound(table, queue_url, bucket, image_bytes, clients, total),
                "stack": stack_load(api_url, clients, total, jobs_pump)[0],
            }
        figures["30"]["stack_with_jobs"] = stack_load(api_url, 30, 600)[0]
        figures["submit_20"], job_ids = stack_load(api_url, 20, 600)
        figures["status_20"] = status_load(api_url, job_ids, 20, 2000)
    figures["stack_peak_rss_mib"] = memory.peak_mib
    return figures


def rss_mib(pids):
    """Resident memory of these processes and all their descendants, MiB."""
    total_kb, seen, todo = 0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        total_kb += int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        todo += [int(child) for child in children]
    return total_kb / 1024


def soak(api_url, emulator_pids, backlog, probe=20):
    """Whether the stack holds a day of use: `probe` jobs on the fresh stack, then again after
    `backlog` more jobs in the table and bucket; their times and the emulators' memory."""
    def timed_probe():
        started = time.time()
        run_jobs(api_url, probe)
        return time.time() - started

    # Untimed: the first jobs start the functions' instances (their cold starts).
    run_jobs(api_url, probe)
    fresh_s = timed_probe()
    for _ in range(backlog // 500):
        run_jobs(api_url, 500)
    return {
        "backlog_jobs": backlog,
        "probe_jobs": probe,
        "fresh_s": fresh_s,
        "after_backlog_s": timed_probe(),
        "emulator_rss_mib": rss_mib(emulator_pids),
    }


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    memory_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1), "kernel": platform.release()}


TEMPLATE = ROOT / "template.yaml"
PRICES = ROOT / "scripts" / "bench" / "prices.json"

# What one job costs is counted on its common path (docs/design.md; functions/core/src/services):
# the client submits, polls the status, reads the whole job once for its media id, asks content
# for the image's link and downloads it from S3. One image, no Idempotency-Key, no webhook; every
# item is under 1 KB. Below, what the code does not settle.
COST_ASSUMPTIONS = {
    "status_polls": 3,
    # Spreads the fixed costs (the sweeper's schedule, the queues' idle polls) over the jobs.
    "jobs_per_day": 1000,
    # Used when summary.json has no measured size of the bench's 256×256 PNG.
    "local_image_bytes": 40_000,
    # flux-schnell makes about a megapixel; the request's default format is PNG.
    "replicate_image_bytes": 1_500_000,
    # A flux-schnell prediction under Prefer: wait, with the output's download: billed at
    # generate's memory, on top of generate's measured duration.
    "replicate_wait_ms": 2000,
    # AWS does not publish how many long polls an event source mapping keeps open on an idle queue.
    "idle_pollers_per_queue": 5,
    "long_poll_seconds": 20,
    # START, END and REPORT lines of each invocation; one JSON line of ours (the sample in docs/operations.md, "Logs").
    "platform_log_bytes": 350,
    "log_line_bytes": 520,
}

# DynamoDB units of one job, as functions/core/tests/it/capacity.rs measures them
# (ReturnConsumedCapacity=INDEXES). A write of an item under 1 KB is one unit, and one more for
# each index it writes: by_owner at the job's creation and its end (it projects the final status,
# not the status), unsent until the job's message is sent. TransactWriteItems bills twice.
WRITE_UNITS = {
    "submit: PutItem of the job (table, by_owner, unsent)": 3,
    "submit: the job leaves unsent once its message is out (table, unsent)": 2,
    "generate: the claim (table)": 1,
    "generate: TransactWriteItems of the media item and the job (2 + 2, by_owner 2)": 6,
}
# With Replicate, generate also notes the prediction it starts on the job.
REPLICATE_WRITE_UNITS = {"generate: the prediction noted on the job (table)": 1}
# The index write units of one job before issue 27 (by_owner then projected every attribute), as
# the same test measured them before 4ba028e; bench.sh measures the current ones beside them.
INDEX_WRITES_BEFORE = {"by_owner": {"writes": 5, "units": 6}, "unsent": {"writes": 2, "units": 2}}
# JSON lines logged at info on the common path, from the code: submit "job queued" and its
# metric; generate "job claimed", "job succeeded", its metrics and "batch done", with Replicate
# also "prediction created" and "model runs noted on the job"; each sweep "sweep done".
LOG_LINES = {"local": {"submit": 2, "generate": 4, "sweeper": 1}, "replicate": {"submit": 2, "generate": 6, "sweeper": 1}}
MODELS = {"local": "local", "replicate": "black-forest-labs/flux-schnell"}
GIB = 2**30
HOURS_PER_MONTH = 730


class _TemplateLoader(yaml.SafeLoader):
    """template.yaml, whose CloudFormation short forms are read as {"Ref": name} for !Ref and as
    None for the others (!GetAtt, !Sub, ...), which nothing here needs."""


def _short_form(loader, suffix, node):
    if suffix == "Ref" and isinstance(node, yaml.ScalarNode):
        return {"Ref": loader.construct_scalar(node)}
    return None


_TemplateLoader.add_multi_constructor("!", _short_form)


def template_facts(path=TEMPLATE):
    """What the cost depends on in template.yaml, deployed with its parameters' defaults."""
    template = yaml.load(Path(path).read_text(), Loader=_TemplateLoader)

    def value(setting):
        if isinstance(setting, dict) and "Ref" in setting:
            return template["Parameters"][setting["Ref"]]["Default"]
        return setting

    defaults = template["Globals"]["Function"]
    functions = {
        resource["Metadata"]["BuildProperties"]["Binary"]: resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    events = {name: list(props.get("Events", {}).values()) for name, props in functions.items()}
    expiry = next(
        rule["ExpirationInDays"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::S3::Bucket"
        for rule in resource["Properties"]["LifecycleConfiguration"]["Rules"]
        if rule["Prefix"] == "media/"
    )
    return {
        "memory_mb": {name: int(value(props.get("MemorySize", defaults["MemorySize"]))) for name, props in functions.items()},
        "architecture": value(defaults["Architectures"][0]),
        "image_retention_days": int(value(expiry)),
        "runs_per_day": {
            name: sum(runs_per_day(event["Properties"]["Schedule"]) for event in found if event["Type"] == "Schedule")
            for name, found in events.items()
        },
        "polled_queues": sum(1 for found in events.values() for event in found if event["Type"] == "SQS"),
    }


def runs_per_day(schedule):
    """Runs a day of an EventBridge `rate(...)` expression."""
    count, unit = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", schedule).groups()
    return {"minute": 1440, "hour": 24, "day": 1}[unit] / int(count)


def load_prices(path=PRICES):
    return json.loads(Path(path).read_text())


def cost_per_1000_jobs(summary, prices, facts, assumptions=COST_ASSUMPTIONS):
    """The price of 1,000 jobs at on-demand list prices, no free tier applied, per component, for
    the local model and for the default Replicate model, from the measured warm p50 durations."""
    a = assumptions
    # Lambda bills each invocation's duration rounded up to the millisecond.
    billed_ms = {name: math.ceil(summary["warm_p50_ms"][name]) for name in FUNCTIONS}
    sweeps = facts["runs_per_day"]["sweeper"] / a["jobs_per_day"]
    image_bytes = {"local": summary.get("local_image_bytes", a["local_image_bytes"]), "replicate": a["replicate_image_bytes"]}
    # Each API request invokes one function: the polls and the whole-job read go to status.
    api_invocations = {"submit": 1, "status": a["status_polls"] + 1, "content": 1}
    invocations = {**api_invocations, "generate": 1, "sweeper": sweeps}

    def usage(model):
        durations = dict(billed_ms)
        if model == "replicate":
            durations["generate"] = math.ceil(summary["warm_p50_ms"]["generate"] + a["replicate_wait_ms"])
        # The sweeper is not benched; one query, like a status read.
        durations["sweeper"] = billed_ms["status"]
        log_bytes = sum(invocations.values()) * a["platform_log_bytes"] + a["log_line_bytes"] * sum(
            lines * invocations[name] for name, lines in LOG_LINES[model].items()
        )
        return {
            "api_gateway_rest_request": sum(api_invocations.values()),
            "lambda_request": sum(invocations.values()),
            "lambda_gb_second": sum(
                invocations[name] * durations[name] / 1000 * facts["memory_mb"][name] / 1024 for name in invocations
            ),
            "dynamodb_write_request_unit": sum(WRITE_UNITS.values())
            + (sum(REPLICATE_WRITE_UNITS.values()) if model == "replicate" else 0),
            # A consistent read under 4 KB is one unit, an eventually consistent one half: the API
            # key, read by each of submit, status and content (then cached 30 s per instance);
            # the job, by each poll; the whole job, the job and its media item; the media item,
            # by content; and each sweep's query of the unsent index, which finds nothing.
            "dynamodb_read_request_unit": 3 + a["status_polls"] + 1.5 + 0.5 + 0.5 * sweeps,
            # SendMessage by submit; the event source mapping's receive and delete (batches of one
            # when jobs come one at a time).
            "sqs_standard_request": 3,
            "sqs_idle_poll": facts["polled_queues"] * a["idle_pollers_per_queue"] * 86400 / a["long_poll_seconds"] / a["jobs_per_day"],
            "eventbridge_schedule_event": sweeps,
            "s3_standard_put": 1,
            "s3_standard_get": 1,
            "s3_standard_storage": image_bytes[model] / GIB * facts["image_retention_days"] * 24 / HOURS_PER_MONTH,
            "data_transfer_out": image_bytes[model] / GIB,
            "cloudwatch_logs_ingestion": log_bytes / GIB,
            "replicate_flux_schnell_image": 1 if model == "replicate" else 0,
        }

    # Component, its price in prices.json, the unit of its quantity per job.
    components = [
        ("API Gateway REST requests", "api_gateway_rest_request", "requests"),
        ("Lambda requests", "lambda_request", "invocations"),
        (f"Lambda duration ({facts['architecture']})", "lambda_gb_second", "GB-s"),
        ("DynamoDB writes", "dynamodb_write_request_unit", "WRU"),
        ("DynamoDB reads", "dynamodb_read_request_unit", "RRU"),
        ("SQS requests of the job", "sqs_standard_request", "requests"),
        (f"SQS long polls of the {facts['polled_queues']} queues while idle, a day's over its jobs", "sqs_idle_poll", "requests"),
        ("EventBridge schedule of the sweeper", "eventbridge_schedule_event", "events"),
        ("S3 PUT of the image", "s3_standard_put", "requests"),
        ("S3 GET of the image", "s3_standard_get", "requests"),
        (f"S3 storage for {facts['image_retention_days']} days", "s3_standard_storage", "GB-month"),
        ("Data transfer out (the image)", "data_transfer_out", "GB"),
        ("CloudWatch Logs ingestion", "cloudwatch_logs_ingestion", "GB"),
        ("Replicate flux-schnell image", "replicate_flux_schnell_image", "images"),
    ]
    price_of = {
        "lambda_gb_second": f"lambda_gb_second_{facts['architecture']}",
        "sqs_idle_poll": "sqs_standard_request",
    }
    per_job = {model: usage(model) for model in MODELS}
    rows = []
    for label, key, unit in components:
        price = prices["prices"][price_of.get(key, key)]
        rows.append({
            "key": key,
            "component": label,
            "unit": unit,
            "price": price_of.get(key, key),
            "per_job": {model: per_job[model][key] for model in MODELS},
            "usd_per_1000": {model: per_job[model][key] * price["usd"] / price["per"] * 1000 for model in MODELS},
        })
    totals = {model: sum(row["usd_per_1000"][model] for row in rows) for model in MODELS}

    # Lambda's free allowance, if nothing else in the account uses it: how many local jobs a month
    # it covers, and what 1,000 of them cost then.
    allowances = prices["allowances"]
    lambda_rows = [row for row in rows if row["price"].startswith("lambda_")]
    local = per_job["local"]
    return {
        "region": prices["region"],
        "models": MODELS,
        "rows": rows,
        "totals": totals,
        "local_within_lambda_free_tier": {
            "jobs_per_month": math.floor(min(
                allowances["lambda_free_requests"]["quantity"] / local["lambda_request"],
                allowances["lambda_free_gb_seconds"]["quantity"] / local["lambda_gb_second"],
            )),
            "usd_per_1000": totals["local"] - sum(row["usd_per_1000"]["local"] for row in lambda_rows),
        },
        "billed_ms": {**billed_ms, "generate_replicate": math.ceil(summary["warm_p50_ms"]["generate"] + a["replicate_wait_ms"])},
        "image_bytes": image_bytes,
        "image_bytes_measured": "local_image_bytes" in summary,
        "write_units": {"local": WRITE_UNITS, "replicate": REPLICATE_WRITE_UNITS},
        "template": facts,
        "assumptions": dict(assumptions),
        "prices": prices,
    }


def catalogue_costs(cost, catalogue_path=None):
    """One row per model of the catalogue (models.toml): what 1,000 one-image jobs of it cost, its
    provider's price and the AWS share. A paid model's AWS share is the flux-schnell column's
    without its Replicate line (a megapixel image, a 2 s wait); the local model's, the local column."""
    catalogue = tomllib.loads(Path(catalogue_path or ROOT / "models.toml").read_text())
    replicate_price = next(r for r in cost["rows"] if r["key"] == "replicate_flux_schnell_image")
    aws = {
        "local": cost["totals"]["local"],
        "paid": cost["totals"]["replicate"] - replicate_price["usd_per_1000"]["replicate"],
    }
    rows = []
    for model in catalogue["models"]:
        share = aws["local"] if model["provider"] == "local" else aws["paid"]
        price = model["price_usd"] * 1000
        rows.append({
            "model": model["name"],
            "provider": model["provider"],
            "model_usd_per_1000": price,
            "aws_usd_per_1000": share,
            "usd_per_1000": price + share,
            "price_source": model["price_source"],
        })
    return rows


def render_catalogue_costs(rows):
    lines = [
        "",
        "Per model of the catalogue (`models.toml`), 1,000 jobs of one image: the model's price and",
        "the AWS share above (a paid model's as flux-schnell's, without Replicate's line).",
        "",
        "| model | provider | model's price | AWS | $ per 1,000 | price read in |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['model']}` | {row['provider']} | {usd(row['model_usd_per_1000'])} | {usd(row['aws_usd_per_1000'])}"
            f" | **{usd(row['usd_per_1000'])}** | {row['price_source']} |"
        )
    return lines


def with_cost(summary):
    """Adds the cost of 1,000 jobs to a summary, from template.yaml and scripts/bench/prices.json."""
    summary["cost"] = cost_per_1000_jobs(summary, load_prices(), template_facts())
    return summary


TARGETS = {
    "init_ms": ("≤ 15", lambda v: v <= 15),
    "init_ratio_vs_bare": ("≤ 1.3", lambda v: v <= 1.3),
    "warm_p99_over_p50": ("≤ 2", lambda v: v <= 2),
    "rss_mb": ("≤ 20", lambda v: v <= 20),
    "zip_bytes": ("≤ 3,000,000", lambda v: v <= 3_000_000),
    "submit_overhead_ratio": ("≤ 1.15", lambda v: v <= 1.15),
    "status_overhead_ratio": ("≤ 1.15", lambda v: v <= 1.15),
    "content_overhead_ratio": ("≤ 1.15", lambda v: v <= 1.15),
    # One round trip, with the noise the ratios above allow.
    "limit_check_ratio": ("≤ 1.15", lambda v: v <= 1.15),
    "media_put_ratio": ("≤ 1.15", lambda v: v <= 1.15),
    "presign_us": ("≤ 50", lambda v: v <= 50),
    "presign_ratio_vs_boto3": ("≤ 0.1", lambda v: v <= 0.1),
}


def verdict(key, value):
    if key not in TARGETS:
        return ""
    return "met" if TARGETS[key][1](value) else "**not met**"


def usd(value):
    return f"${value:.4f}"


def plain(number):
    """A price without an exponent: 0.0000133334, not 1.33334e-05."""
    return f"{number:.10f}".rstrip("0").rstrip(".")


def render_cost(cost):
    """The section "Cost per 1,000 jobs": the components, the totals, what they assume, the prices."""
    a, t, models = cost["assumptions"], cost["template"], cost["models"]
    local, replicate = models["local"], models["replicate"]
    memory = ", ".join(f"{name} {t['memory_mb'][name]} MB" for name in FUNCTIONS + ["sweeper"])
    lines = [
        "## Cost per 1,000 jobs",
        "",
        f"What 1,000 jobs of one image cost at AWS's on-demand list prices in {cost['region']}, no free tier",
        "applied, beside the model's own price. Computed from the warm p50 durations above, each rounded",
        "up to Lambda's 1 ms, and from template.yaml as deployed by default",
        f"({t['architecture']}; {memory}).",
        "",
        "| component | unit | " + " | ".join(f"per job, `{m}` | $ per 1,000, `{m}`" for m in models.values()) + " |",
        "|---|---|---|---|---|---|",
    ]
    for row in cost["rows"]:
        cells = [f"{row['per_job'][m]:.3g} | {usd(row['usd_per_1000'][m])}" for m in models]
        lines.append(f"| {row['component']} | {row['unit']} | " + " | ".join(cells) + " |")
    lines.append("| **total** | | " + " | ".join(f"| **{usd(cost['totals'][m])}**" for m in models) + " |")
    lines += render_catalogue_costs(catalogue_costs(cost))

    free, allowances = cost["local_within_lambda_free_tier"], cost["prices"]["allowances"]
    writes = {m: "; ".join(f"{label}: {units}" for label, units in found.items()) for m, found in cost["write_units"].items()}
    image = "measured: the median of the bench's 256×256 PNGs" if cost["image_bytes_measured"] else "assumed for the bench's 256×256 PNG"
    lines += [
        "",
        f"Within Lambda's free tier ({allowances['lambda_free_requests']['quantity']:,} requests and",
        f"{allowances['lambda_free_gb_seconds']['quantity']:,} GB-s every month, if nothing else in the account uses it),",
        f"the Lambda lines of `{local}` cost nothing for the first {free['jobs_per_month']:,} jobs of a month; 1,000 of",
        f"those cost {usd(free['usd_per_1000'])}.",
        "",
        "What it assumes:",
        "",
        f"- The client submits, polls `GET /media/status/{{id}}` {a['status_polls']} times, reads `GET /media/jobs/{{id}}`",
        "  once for the media id, asks `GET /media/content/{id}` for the link and downloads the image",
        "  from S3 once. With `Prefer: wait` the polls become one request, but the function that waits",
        "  is billed for the wait. No Idempotency-Key, no webhook, no retry.",
        "- Durations are the bench's, against moto server on loopback; on AWS each DynamoDB, SQS or S3",
        "  call takes a few milliseconds, so the durations there differ, generate's most. The whole-job",
        "  read and the sweeper (not benched) are timed as a status read.",
        f"- `{replicate}`: generate waits {a['replicate_wait_ms']:,} ms for the prediction and its output",
        "  (assumed, not measured here). The wait is Lambda time, billed at generate's",
        f"  {t['memory_mb']['generate']} MB on top of its measured duration ({cost['billed_ms']['generate_replicate']:,} ms billed); Replicate's",
        "  price per image comes on top.",
        "- DynamoDB items are under 1 KB (a job with a short prompt is about 600 bytes; a prompt near its",
        "  2,000-character limit takes a second write unit). An item's write also writes each index it",
        "  is in, and TransactWriteItems bills its items twice. Write units:",
        f"  {writes['local']};",
        f"  with Replicate also {writes['replicate']}.",
        "  Read units: the API key, read by each of submit, status and content (cached 30 s per",
        "  instance, so once a job when jobs are far apart), 1 each; the job, by each poll, 1; the whole",
        "  job, 1 + 0.5; the media item, 0.5; each sweep's query of the unsent index, 0.5.",
        "- SQS: submit's SendMessage, and the event source mapping's receive and delete, in batches",
        f"  of one. Each of the {t['polled_queues']} queues with an event source mapping is long-polled while",
        f"  idle: assumed {a['idle_pollers_per_queue']} polls of {a['long_poll_seconds']} s at a time (AWS does not publish the number;",
        "  the queue's NumberOfEmptyReceives metric shows it).",
        f"- {a['jobs_per_day']:,} jobs a day carry the fixed costs: the sweeper's {t['runs_per_day']['sweeper']:,.0f} runs a day (its",
        "  schedule in template.yaml) and the idle polls. At ten times the jobs, their share is a tenth.",
        f"- Images: `{local}` {cost['image_bytes']['local']:,.0f} bytes ({image}); `{replicate}`",
        f"  {cost['image_bytes']['replicate']:,} bytes (assumed for a PNG of about a megapixel, the request's default",
        f"  format). Each is kept {t['image_retention_days']} days (the bucket's lifecycle rule) in S3 Standard and downloaded",
        "  once. A GB is 2^30 bytes, a month 730 hours.",
        f"- Logs: about {a['platform_log_bytes']} bytes of START, END and REPORT lines per invocation, and {a['log_line_bytes']} bytes",
        "  per JSON line at info: submit 2, generate 4 (6 with Replicate), each sweep 1.",
        "",
        "What it leaves out: cold starts (about 4 ms of init per new instance, billed), retries, failed",
        "and canceled jobs; costs that do not grow with jobs (the four alarms, the custom metrics of the",
        "EMF lines, point-in-time recovery, log storage); DynamoDB storage (about 1.5 KB a job for the",
        "retention: well under a cent per 1,000 jobs); the API's answers sent out (a few KB a job);",
        "taxes, volume tiers and Savings Plans.",
        "",
        "Prices, from `scripts/bench/prices.json`, each read on the date given through a stored copy of",
        "the page named under \"read in\"; where that is not the price's own page (\"source\"), the figure is",
        "to be re-checked there.",
        "",
        "| price | unit | source | read in | read on |",
        "|---|---|---|---|---|",
    ]
    for price in cost["prices"]["prices"].values():
        amount = f"${plain(price['usd'])}" + (f" per {price['per']:,}" if price["per"] != 1 else "")
        lines.append(f"| {amount} | {price['unit']} | {price['source']} | {price['seen_in']} | {price['read']} |")
    for allowance in allowances.values():
        lines.append(
            f"| {allowance['quantity']:,} | {allowance['unit']} | {allowance['source']} | {allowance['seen_in']} | {allowance['read']} |"
        )
    return lines


def render(summary):
    """docs/benchmarks.md: every figure beside its baseline and target, and how it was measured."""
    m = summary["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench.sh` from `target/bench/summary.json`; do not edit by hand.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; DynamoDB",
        "Local and moto server as the AWS emulators on loopback. Release artifacts from `cargo lambda build --release`",
        "(the workspace's release profile), run as Lambda runs them, against a runtime API served by",
        "the bench.",
        "",
        "## Per function",
        "",
        "| figure | submit | generate | status | content | baseline | target |",
        "|---|---|---|---|---|---|---|",
    ]
    tail = {name: summary["warm_p99_ms"][name] / summary["warm_p50_ms"][name] for name in FUNCTIONS}
    summary = {**summary, "warm_p99_over_p50": tail}

    def row(label, key, fmt, baseline="", target=""):
        cells = []
        for name in FUNCTIONS:
            value = summary[key][name]
            mark = verdict(key, value)
            cells.append(fmt.format(value) + (f" ({mark})" if mark == "**not met**" else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {baseline} | {target or TARGETS.get(key, ('',))[0]} |")
    row("init, ms (median of starts)", "init_ms", "{:.2f}", f"bare runtime {summary['bare_init_ms']:.2f}")
    row("init ÷ bare runtime", "init_ratio_vs_bare", "{:.2f}", "1.00")
    row("first invocation, ms (init + first event)", "first_invoke_ms", "{:.1f}")
    row("warm invocation p50, ms", "warm_p50_ms", "{:.2f}")
    row("warm invocation p99, ms", "warm_p99_ms", "{:.2f}")
    row("warm p99 ÷ p50", "warm_p99_over_p50", "{:.2f}")
    row(f"peak RSS, MB (over {summary['invocations']['submit']} invocations)", "rss_mb", "{:.1f}")
    row("RSS growth after the 100th invocation, MB", "rss_growth_mb", "{:+.1f}", "", "flat")
    row("deployment zip, bytes", "zip_bytes", "{:,}", f"bare runtime {summary['bare_zip_bytes']:,}")
    row("stripped binary, bytes", "binary_bytes", "{:,}")
    lines += [
        "",
        "## Overheads and presigning",
        "",
        "| figure | value | baseline | target |",
        "|---|---|---|---|",
    ]
    for name in ["submit", "status", "content"]:
        key = f"{name}_overhead_ratio"
        us = summary["handler_median_us"][name]
        mark = verdict(key, summary[key])
        lines.append(
            f"| {name} handler ÷ the same SDK calls | {summary[key]:.3f} ({us['handler']:.0f} µs vs {us['direct']:.0f} µs){' ' + mark if mark != 'met' else ''} "
            f"| the SDK calls alone | {TARGETS[key][0]} |"
        )
    check = summary["limit_check_us"]
    mark = verdict("limit_check_ratio", summary["limit_check_ratio"])
    lines.append(
        f"| what the rate limit check adds to a submit ÷ one round trip of it | {summary['limit_check_ratio']:.3f} "
        f"({check['with_us'] - check['without_us']:.0f} µs: {check['with_us']:.0f} µs with it, {check['without_us']:.0f} µs without)"
        f"{' ' + mark if mark != 'met' else ''} | its `UpdateItem` alone, {check['round_trip_us']:.0f} µs | {TARGETS['limit_check_ratio'][0]} |"
    )
    put = summary["media_put_us"]
    mark = verdict("media_put_ratio", summary["media_put_ratio"])
    lines.append(
        f"| an image write ({put['bytes'] // 1024} KiB) through our signed request ÷ the SDK's `PutObject` | {summary['media_put_ratio']:.3f} "
        f"({put['ours']:.0f} µs vs {put['sdk']:.0f} µs){' ' + mark if mark != 'met' else ''} | the SDK's client | {TARGETS['media_put_ratio'][0]} |"
    )
    lines.append(
        f"| presign one GET URL, µs | {summary['presign_us']:.1f}{' ' + verdict('presign_us', summary['presign_us']) if verdict('presign_us', summary['presign_us']) != 'met' else ''} | "
        f"boto3 {summary['boto3_presign_us']:.0f} µs | {TARGETS['presign_us'][0]} |"
    )
    ratio = summary["presign_ratio_vs_boto3"]
    mark = verdict("presign_ratio_vs_boto3", ratio)
    lines.append(f"| presign ÷ boto3 | {ratio:.3f}{' ' + mark if mark != 'met' else ''} | 1.0 | {TARGETS['presign_ratio_vs_boto3'][0]} |")
    if summary.get("pipeline_jobs_per_s"):
        lines += [
            "",
            "## Pipeline on the local stack",
            "",
            "| jobs submitted at once | jobs finished per second | submit → succeeded p50, ms | p99, ms |",
            "|---|---|---|---|",
        ]
        for size, rate in summary["pipeline_jobs_per_s"].items():
            latency = summary["pipeline_latency_ms"][size]
            lines.append(f"| {size} | {rate:.1f} | {latency['p50']:.0f} | {latency['p99']:.0f} |")
    if summary.get("load"):
        loaded = summary["load"]
        lines += [
            "",
            "## The local stack beside the emulators' bound",
            "",
            "| clients | figure | local stack | bound: the same AWS calls, direct | stack ÷ bound | target |",
            "|---|---|---|---|---|---|",
        ]
        for clients in ("1", "30"):
            stack, bounds = loaded[clients]["stack"], loaded[clients]["bound"]
            submit_ratio = stack["per_s"] / bounds["submit"]["per_s"]
            jobs_ratio = stack["jobs_per_s"] / bounds["job"]["per_s"]
            target = clients == "30"
            lines += [
                f"| {clients} | submits per second | {stack['per_s']:.1f} | {bounds['submit']['per_s']:.1f} | {submit_ratio:.2f}"
                f"{' **not met**' if target and submit_ratio < 0.8 else ''} | {'≥ 0.8' if target else ''} |",
                f"| {clients} | submit p50 / p99, ms | {stack['p50_ms']:.1f} / {stack['p99_ms']:.1f} | "
                f"{bounds['submit']['p50_ms']:.1f} / {bounds['submit']['p99_ms']:.1f} |  |  |",
                f"| {clients} | jobs finished per second | {stack['jobs_per_s']:.1f} | {bounds['job']['per_s']:.1f} | {jobs_ratio:.2f}"
                f"{' **not met**' if target and jobs_ratio < 0.8 else ''} | {'≥ 0.8' if target else ''} |",
            ]
        mixed = loaded["30"].get("stack_with_jobs")
        if mixed:
            lines += [
                f"| 30 | submits per second, the jobs running beside them | {mixed['per_s']:.1f} | | | |",
                f"| 30 | their p50 / p99, ms | {mixed['p50_ms']:.1f} / {mixed['p99_ms']:.1f} | | | |",
            ]
        tail_ratio = loaded["30"]["stack"]["p99_ms"] / loaded["1"]["stack"]["p50_ms"]
        bound_tail_ratio = loaded["30"]["bound"]["submit"]["p99_ms"] / loaded["1"]["bound"]["submit"]["p50_ms"]
        submit, status, memory = loaded["submit_20"], loaded["status_20"], loaded["stack_peak_rss_mib"]
        lines += [
            "",
            f"Submit p99 at 30 clients ÷ p50 at 1: {tail_ratio:.1f}{' **not met**' if tail_ratio > 10 else ''} (target ≤ 10;"
            f" the bound's own: {bound_tail_ratio:.1f}).",
            "",
            "| at 20 clients | requests/s | p50, ms | p99, ms | target |",
            "|---|---|---|---|---|",
            f"| submit | {submit['per_s']:.0f}{' **not met**' if submit['per_s'] < 120 else ''} | {submit['p50_ms']:.1f} | {submit['p99_ms']:.1f} | ≥ 120/s |",
            f"| status | {status['per_s']:.0f}{' **not met**' if status['per_s'] < 240 else ''} | {status['p50_ms']:.1f} | {status['p99_ms']:.1f} | ≥ 240/s |",
            "",
            f"The whole local stack's peak resident memory through this section: {memory:.0f} MiB"
            f"{' **not met**' if memory >= 600 else ''} (target < 600).",
        ]
    if summary.get("soak"):
        soaked = summary["soak"]
        ratio = soaked["after_backlog_s"] / soaked["fresh_s"]
        lines += [
            "",
            "## A day of use",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| {soaked['probe_jobs']} jobs on the fresh stack, s | {soaked['fresh_s']:.1f} |  |",
            f"| the same after {soaked['backlog_jobs']:,} more jobs, s | {soaked['after_backlog_s']:.1f} |  |",
            f"| after ÷ fresh | {ratio:.2f}{'' if ratio <= 1.5 else ' **not met**'} | ≤ 1.5 |",
            f"| the emulators' resident memory then, MiB | {soaked['emulator_rss_mib']:.0f}"
            f"{'' if soaked['emulator_rss_mib'] < 1024 else ' **not met**'} | < 1,024 |",
        ]
    if summary.get("index_writes"):
        lines += ["", *render_index_writes(summary["index_writes"])]
    if summary.get("streams"):
        lines += ["", *render_streams(summary["streams"], summary["stream_cost_per_minute"])]
    lines += ["", *render_cost(summary["cost"])]
    lines += ["", (ROOT / "scripts" / "bench" / "method.md").read_text().strip(), ""]
    return "\n".join(lines)


def read_stream(url, result, stop):
    """Reads one progress stream until its end or `stop`: when its first event came, its events
    and heartbeats (docs/design.md, "Progress stream")."""
    started = time.time()
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        result["status"] = response.status
        result["opened_s"] = time.time() - started
        for line in response:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                result["events"] = result.get("events", 0) + 1
                result.setdefault("first_event_s", time.time() - started)
                result["last"] = line.removeprefix("event: ")
            elif line.startswith(": keep-alive"):
                result["heartbeats"] = result.get("heartbeats", 0) + 1
            if stop.is_set() and result.get("last") == "done":
                break
    except (OSError, http.client.HTTPException) as err:
        result["error"] = str(err)
    finally:
        result["closed_s"] = time.time() - started
        connection.close()


def hold_streams(api_url, functions_log, streams, hold_s, model):
    """`streams` progress streams open at once for `hold_s` seconds, each on a job that waits for
    its turn at `model` (a model limited to a few jobs a minute), then every job canceled, which
    ends each stream with `done`. What each stream read of the table comes from the stream
    function's own log (`the stream ended`, with its reads and how long it was open)."""
    body = {"prompt": "a stream held open", "model": model, "width": 256, "height": 256}
    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(lambda _: api_call(api_url, "POST", "/media/generate", body), range(streams)))
    logged_before = len(functions_log.read_text().splitlines()) if functions_log.exists() else 0
    results = [{} for _ in accepted]
    stop = threading.Event()
    readers = [
        threading.Thread(target=read_stream, args=(api_url + job["links"]["stream"], result, stop), daemon=True)
        for job, result in zip(accepted, results)
    ]
    for reader in readers:
        reader.start()
    time.sleep(hold_s)
    held = [result for result, reader in zip(results, readers) if reader.is_alive() and "error" not in result]
    open_after_hold = len(held)
    fewest_heartbeats = min((result.get("heartbeats", 0) for result in held), default=0)
    finished_in_hold = sum(1 for result in results if result.get("last") == "done")
    stop.set()

    def cancel(job):
        try:
            api_call(api_url, "POST", f"/media/jobs/{job['job_id']}/cancel")
        except urllib.error.HTTPError as err:
            # 409: the job had ended meanwhile, its turn at the model come.
            if err.code != 409:
                raise

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(cancel, accepted))
    for reader in readers:
        reader.join(timeout=60)
    ended = []
    deadline = time.time() + 30
    while len(ended) < streams and time.time() < deadline:
        lines = functions_log.read_text().splitlines()[logged_before:]
        ended = [json.loads(line) for line in lines if '"the stream ended"' in line]
        time.sleep(0.5)
    per_second = [entry["reads"] / (entry["open_ms"] / 1000) for entry in ended if entry.get("open_ms", 0) >= 10_000]
    first = [result["first_event_s"] * 1000 for result in results if "first_event_s" in result]
    return {
        "streams": streams,
        "hold_s": hold_s,
        "answered_200": sum(1 for result in results if result.get("status") == 200),
        "open_after_hold": open_after_hold,
        "finished_in_hold": finished_in_hold,
        "ended_with_done": sum(1 for result in results if result.get("last") == "done"),
        "errors": sorted({result["error"] for result in results if "error" in result}),
        "first_event_p50_ms": statistics.median(first) if first else None,
        "first_event_p99_ms": percentile(first, 0.99) if first else None,
        "heartbeats_per_stream_min": fewest_heartbeats,
        "logged_ends": len(ended),
        "reads_per_s_max": max(per_second, default=None),
        "reads_per_s_median": statistics.median(per_second) if per_second else None,
    }


def stream_cost_per_minute(reads_per_s, prices, facts, longest_s=840):
    """What one open progress stream costs a minute on AWS: the stream function's duration at its
    memory, its reads of the table (eventually consistent: half a read unit each), and one
    request each to API Gateway and Lambda per connection, which lasts at most `longest_s`."""
    price = {key: entry["usd"] / entry["per"] for key, entry in prices["prices"].items()}
    gb_seconds = facts["memory_mb"]["stream"] / 1024 * 60
    connections = 60 / longest_s
    parts = {
        "lambda_duration": gb_seconds * price[f"lambda_gb_second_{facts['architecture']}"],
        "dynamodb_reads": reads_per_s * 60 * 0.5 * price["dynamodb_read_request_unit"],
        "requests": connections * (price["api_gateway_rest_request"] + price["lambda_request"]),
    }
    return {"gb_seconds": gb_seconds, "reads": reads_per_s * 60, "usd": parts, "total_usd": sum(parts.values())}


def render_streams(held, cost):
    """The stream section of docs/benchmarks.md."""
    per_s = held["reads_per_s_max"]
    return [
        "## Progress streams",
        "",
        f"{held['streams']} streams (`GET /v1/predictions/{{id}}/stream`) opened at once on the local stack, each on a",
        "job waiting for its turn at a model limited to 6 jobs a minute, held for",
        f"{held['hold_s']} s, then every job canceled (`scripts/bench/bench.py streams`).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| answered 200 | {held['answered_200']} of {held['streams']}"
        f"{'' if held['answered_200'] == held['streams'] else ' **not met**'} | all |",
        f"| open at the end of the hold, or ended by their job | {held['open_after_hold'] + held['finished_in_hold']}"
        f"{'' if held['open_after_hold'] + held['finished_in_hold'] == held['streams'] else ' **not met**'} | all |",
        f"| ended with `done` after the cancels | {held['ended_with_done']}"
        f"{'' if held['ended_with_done'] == held['streams'] else ' **not met**'} | all |",
        f"| first event, p50 / p99, ms | {held['first_event_p50_ms']:.0f} / {held['first_event_p99_ms']:.0f} |  |",
        f"| fewest heartbeats of a stream open through the hold | {held['heartbeats_per_stream_min']}"
        f"{'' if held['heartbeats_per_stream_min'] >= 1 else ' **not met**'} | ≥ 1 |",
        f"| table reads a second of an open stream, most of any ({held['logged_ends']} logged) | "
        f"{per_s if per_s is None else f'{per_s:.2f}'}{'' if per_s is not None and per_s <= 1 else ' **not met**'} | ≤ 1 |",
        "",
        "What one open stream costs a minute on AWS, at that read rate and template.yaml's memory:",
        "",
        "| part | per minute | dollars |",
        "|---|---|---|",
        f"| Lambda duration | {cost['gb_seconds']:.1f} GB-s | {cost['usd']['lambda_duration']:.7f} |",
        f"| DynamoDB reads (eventually consistent, half a unit) | {cost['reads']:.0f} | {cost['usd']['dynamodb_reads']:.7f} |",
        f"| API Gateway and Lambda requests (a connection per 14 minutes) | {60 / 840:.3f} | {cost['usd']['requests']:.7f} |",
        f"| total | | **{cost['total_usd']:.7f}** |",
    ]


def index_writes(report):
    """Writes and write units of one job per index, from the capacity test's JSON line."""
    line = next(line for line in report.splitlines() if line.startswith("{") and "by_owner_write_units_per_job" in line)
    writes = json.loads(line)["writes"]
    return {
        index: {
            "writes": sum(1 for write in writes if index in write["indexes"]),
            "units": sum(write["indexes"].get(index, 0) for write in writes),
        }
        for index in INDEX_WRITES_BEFORE
    }


def render_index_writes(now):
    """Before and after of the index writes of one job, with by_owner's target."""
    lines = [
        "## DynamoDB index writes of one job",
        "",
        "One job with a webhook, submitted and generated, every write asked for its consumed capacity",
        "per index (`functions/core/tests/it/capacity.rs`). Before: the same measure before `4ba028e`,",
        "when `by_owner` projected every attribute.",
        "",
        "| index | before: writes | before: units | now: writes | now: units | target |",
        "|---|---|---|---|---|---|",
    ]
    for index, before in INDEX_WRITES_BEFORE.items():
        after = now[index]
        target = "≤ 2 writes" if index == "by_owner" else ""
        mark = " **not met**" if index == "by_owner" and after["writes"] > 2 else ""
        lines.append(
            f"| `{index}` | {before['writes']} | {plain(before['units'])} | {after['writes']}{mark} | {plain(after['units'])} | {target} |"
        )
    return lines


def write(summary, path):
    """summary.json and the docs/benchmarks.md rendered from it."""
    path.write_text(json.dumps(summary, indent=2) + "\n")
    (ROOT / "docs" / "benchmarks.md").write_text(render(summary))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["functions", "pipeline", "load", "soak", "indexes", "streams", "render"])
    parser.add_argument("--artifacts", type=Path, help="folder with <function>/bootstrap and bootstrap.zip")
    parser.add_argument("--emulator")
    parser.add_argument("--api", help="the local stack's URL, for the pipeline figures")
    parser.add_argument("--emulator-pids", type=int, nargs="*", default=[], help="the emulators' processes, for the soak")
    parser.add_argument("--stack-pids", type=int, nargs="*", default=[], help="every process of the local stack, for the load")
    parser.add_argument("--jobs-pump-pid", type=int, help="the jobs queue's pump, which the load disables and enables")
    parser.add_argument("--backlog", type=int, default=5000, help="jobs the soak puts in the table and bucket")
    parser.add_argument("--starts", type=int, default=60)
    parser.add_argument("--loops", type=int, default=1000)
    parser.add_argument("--capacity-report", type=Path, help="the output of tests/it/capacity.rs with MEDIAGEN_CAPACITY_REPORT=1")
    parser.add_argument("--functions-log", type=Path, help="the local stack's functions' log, for the streams")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--hold", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench" / "summary.json")
    args = parser.parse_args()

    if args.phase == "render":
        # From an existing summary: the cost follows the current template.yaml and prices.json.
        summary = with_cost(json.loads(args.out.read_text()))
        write(summary, args.out)
        return

    if args.phase == "load":
        summary = json.loads(args.out.read_text())
        # The bound's messages go to a queue of their own, which no function reads.
        import boto3

        sqs = boto3.client("sqs", region_name=os.environ.get("AWS_REGION", "us-east-1"))
        queue_url = sqs.create_queue(QueueName="bench-bound")["QueueUrl"]
        image_bytes = int(summary.get("local_image_bytes", 40_000))
        summary["load"] = load(
            args.api, os.environ["JOBS_TABLE"], queue_url, os.environ["MEDIA_BUCKET"], image_bytes, args.stack_pids, args.jobs_pump_pid
        )
        write(summary, args.out)
        print(json.dumps(summary["load"], indent=2))
        return

    if args.phase == "indexes":
        summary = json.loads(args.out.read_text())
        summary["index_writes"] = index_writes(args.capacity_report.read_text())
        with_cost(summary)
        write(summary, args.out)
        print(json.dumps(summary["index_writes"], indent=2))
        return

    if args.phase == "streams":
        summary = json.loads(args.out.read_text())
        summary["streams"] = hold_streams(args.api, args.functions_log, args.streams, args.hold, "local-limited")
        summary["stream_cost_per_minute"] = stream_cost_per_minute(
            summary["streams"]["reads_per_s_max"] or 0.0, load_prices(), template_facts()
        )
        write(summary, args.out)
        print(json.dumps({key: summary[key] for key in ("streams", "stream_cost_per_minute")}, indent=2))
        return

    if args.phase == "soak":
        summary = json.loads(args.out.read_text())
        summary["soak"] = soak(args.api, args.emulator_pids, args.backlog)
        write(summary, args.out)
        print(json.dumps(summary["soak"], indent=2))
        return

    if args.phase == "pipeline":
        summary = json.loads(args.out.read_text())
        flow = pipeline(args.api, [1, 10, 100])
        summary["pipeline_jobs_per_s"] = {size: figures["jobs_per_s"] for size, figures in flow.items()}
        summary["pipeline_latency_ms"] = {
            size: {"p50": figures["latency_p50_ms"], "p99": figures["latency_p99_ms"]} for size, figures in flow.items()
        }
        with_cost(summary)
        write(summary, args.out)
        print(json.dumps(summary, indent=2))
        return

    base_env = {key: value for key, value in os.environ.items() if key.startswith(("AWS_", "JOBS_", "MEDIA_", "MAX_", "WEBHOOK", "FILE_URL_")) or key in ("PATH", "HOME")}
    bins = {name: args.artifacts / name / "bootstrap" for name in FUNCTIONS + ["bare"]}

    init_ms = measure_init(bins, base_env, args.starts)
    bare_ms = init_ms.pop("bare")
    invocations, image_bytes = measure_functions(bins, base_env, args.loops)

    measured = interleaved_medians()
    overhead = {name: measured[name]["handler_us"] / measured[name]["direct_us"] for name in ["submit", "status", "content"]}
    check = measured["limit_check"]
    presign_us = criterion_median_ns("presign", "get_object") / 1000
    boto3_us = boto3_presign_us(args.emulator)

    summary = {
        "init_ms": init_ms,
        "init_ratio_vs_bare": {name: ms / bare_ms for name, ms in init_ms.items()},
        "first_invoke_ms": {name: invocations[name]["first_invoke_ms"] for name in FUNCTIONS},
        "warm_p50_ms": {name: invocations[name]["warm_p50_ms"] for name in FUNCTIONS},
        "warm_p99_ms": {name: invocations[name]["warm_p99_ms"] for name in FUNCTIONS},
        "rss_mb": {name: invocations[name]["rss_mb"] for name in FUNCTIONS},
        "zip_bytes": {name: (args.artifacts / name / "bootstrap.zip").stat().st_size for name in FUNCTIONS},
        "submit_overhead_ratio": overhead["submit"],
        "status_overhead_ratio": overhead["status"],
        "content_overhead_ratio": overhead["content"],
        "limit_check_ratio": (check["with_us"] - check["without_us"]) / check["round_trip_us"],
        "media_put_ratio": measured["media_put"]["ours_us"] / measured["media_put"]["sdk_us"],
        "media_put_us": {
            "ours": measured["media_put"]["ours_us"],
            "sdk": measured["media_put"]["sdk_us"],
            "bytes": measured["media_put"]["bytes"],
        },
        "presign_us": presign_us,
        "presign_ratio_vs_boto3": presign_us / boto3_us,
        "pipeline_jobs_per_s": {},
        # Context for the figures above.
        "bare_init_ms": bare_ms,
        "bare_zip_bytes": (args.artifacts / "bare" / "bootstrap.zip").stat().st_size,
        "binary_bytes": {name: bins[name].stat().st_size for name in FUNCTIONS},
        "rss_growth_mb": {name: invocations[name]["rss_growth_mb"] for name in FUNCTIONS},
        "invocations": {name: invocations[name]["invocations"] for name in FUNCTIONS},
        "handler_median_us": {
            name: {"handler": measured[name]["handler_us"], "direct": measured[name]["direct_us"]}
            for name in ["submit", "status", "content"]
        },
        "limit_check_us": check,
        "boto3_presign_us": boto3_us,
        "local_image_bytes": image_bytes,
        "machine": machine(),
    }
    with_cost(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
