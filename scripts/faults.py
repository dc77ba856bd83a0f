"""A store stops answering under load (scripts/faults.sh starts the stack): jobs are submitted over
HTTP while one emulator process is paused with SIGSTOP for a while, then resumed with SIGCONT.
Every answer must be a 2xx, or a problem+json 503 with Retry-After, and none may come later than
the HTTP functions' timeout; after the resume every accepted job must end final, with its images,
none lost and none doubled. Exits 1 with what it found wrong."""

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3

from chaos import scan

FINAL = {"succeeded", "failed", "canceled"}
# template.yaml's timeout of submit and status.
FUNCTION_TIMEOUT = 25


def log(message):
    print(f"faults: {message}", file=sys.stderr, flush=True)


def submit(api, key, n):
    """(status, content type, Retry-After, job id or None, seconds taken) of one submit."""
    body = json.dumps({"prompt": f"fault {n}", "width": 256, "height": 256}).encode()
    request = urllib.request.Request(
        f"{api}/media/generate",
        data=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=FUNCTION_TIMEOUT + 30) as response:
            answer = json.load(response)
            return response.status, response.headers.get("content-type"), None, answer.get("job_id"), time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type"), err.headers.get("retry-after"), None, time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--pause-pid", type=int, required=True, help="the emulator's process group")
    parser.add_argument("--what", required=True, help="what the paused process serves, for the log")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--pause", type=float, default=10)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    key = os.environ["MEDIAGEN_API_KEY"]
    table = os.environ["JOBS_TABLE"]
    dynamodb = boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION", "us-east-1"))

    started = time.monotonic()
    submitted = threading.Semaphore(0)

    def pause():
        # In the middle of the load: after a tenth of the jobs went in.
        for _ in range(args.jobs // 10):
            submitted.acquire()
        log(f"pausing {args.what} (process group {args.pause_pid}) for {args.pause:.0f}s")
        os.killpg(args.pause_pid, signal.SIGSTOP)
        time.sleep(args.pause)
        os.killpg(args.pause_pid, signal.SIGCONT)
        log(f"{args.what} resumed")

    pauser = threading.Thread(target=pause)
    pauser.start()

    def one(n):
        answer = submit(args.api, key, n)
        submitted.release()
        return answer

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(args.jobs)))
    pauser.join()
    statuses = Counter(status for status, *_ in answers)
    slowest = max(took for *_, took in answers)
    log(f"{args.jobs} submits in {time.monotonic() - started:.1f}s: {dict(statuses)}, slowest {slowest:.1f}s")

    problems = []
    for status, content_type, retry_after, _, took in answers:
        if status >= 500 and not (status == 503 and content_type == "application/problem+json" and retry_after):
            problems.append(f"a {status} answer ({content_type}, Retry-After {retry_after})")
        elif status not in (202, 503):
            problems.append(f"a {status} answer")
        if took > FUNCTION_TIMEOUT + 2:
            problems.append(f"an answer after {took:.1f}s, past the functions' {FUNCTION_TIMEOUT}s")
    if statuses[202] == 0:
        problems.append("no submit was accepted")
    if problems:
        raise SystemExit("faults: " + "; ".join(sorted(set(problems))[:10]))

    accepted = {job_id for status, _, _, job_id, _ in answers if status == 202}
    while True:
        jobs = {item["job_id"]["S"]: item for item in scan(dynamodb, table, "JOB#")}
        states = Counter(jobs[i]["status"]["S"] if i in jobs else "missing" for i in accepted)
        if set(states) <= FINAL:
            break
        if time.monotonic() - started > args.timeout:
            raise SystemExit(f"faults: after {args.timeout}s the accepted jobs are {dict(states)}")
        time.sleep(2)
    log(f"every accepted job final after {time.monotonic() - started:.1f}s: {dict(states)}")
    media = Counter(item["job_id"]["S"] for item in scan(dynamodb, table, "MEDIA#"))
    for job_id in accepted:
        job = jobs[job_id]
        if job["status"]["S"] == "succeeded" and media[job_id] != int(job["num_outputs"]["N"]):
            problems.append(f"job {job_id} has {media[job_id]} images for {job['num_outputs']['N']}")
        elif job["status"]["S"] != "succeeded" and media[job_id]:
            problems.append(f"job {job_id}, {job['status']['S']}, has images")
    if problems:
        raise SystemExit("faults: " + "; ".join(problems[:10]))
    log(f"{args.what}: passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
