"""The chaos run's driver (scripts/chaos.sh starts the stack): submits jobs over HTTP, kills the
generate process with SIGKILL at random moments while they run, waits until every job is final,
then checks that none is left queued or processing and that the bucket holds exactly the images
of the succeeded jobs. Exits 1 with what it found wrong."""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3

FINAL = {"succeeded", "failed", "canceled"}


def log(message):
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def submit(api, key, n):
    body = {
        "prompt": f"chaos {n}",
        "width": random.choice([256, 320]),
        "height": 256,
        "num_outputs": random.choice([1, 1, 2]),
        "output_format": random.choice(["png", "webp", "jpg"]),
    }
    request = urllib.request.Request(
        f"{api}/media/generate",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        method="POST",
    )
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["job_id"]
        except OSError as err:
            log(f"submit {n} failed ({err}); again")
            time.sleep(0.5 * (attempt + 1))
    raise SystemExit(f"chaos: could not submit job {n}")


def child_of(pid):
    """The pump's child process (generate), if one runs."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            found = children.read().split()
    except OSError:
        return None
    return int(found[0]) if found else None


def killer(pump_pid, kills, done, killed):
    """Kills generate `kills` times, each at a random moment of its run."""
    for _ in range(kills):
        time.sleep(random.uniform(0.5, 3.0))
        deadline = time.monotonic() + 60
        target = child_of(pump_pid)
        while target is None and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.05)
            target = child_of(pump_pid)
        if target is None:
            log("no generate process to kill")
            return
        # A random moment inside its run, not the instant it started.
        time.sleep(random.uniform(0.05, 1.5))
        try:
            os.kill(target, signal.SIGKILL)
            killed.append(time.monotonic())
            log(f"killed generate (process {target})")
        except ProcessLookupError:
            log(f"generate {target} was already gone")


def scan(dynamodb, table, prefix):
    items = []
    kwargs = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": prefix}},
    }
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--pump-pid", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    key = os.environ["MEDIAGEN_API_KEY"]
    table, bucket = os.environ["JOBS_TABLE"], os.environ["MEDIA_BUCKET"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    dynamodb, s3 = boto3.client("dynamodb", region_name=region), boto3.client("s3", region_name=region)

    started = time.monotonic()
    done, killed = threading.Event(), []
    kills = threading.Thread(target=killer, args=(args.pump_pid, args.kills, done, killed))
    kills.start()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: submit(args.api, key, n), range(args.jobs)))
    log(f"{len(ids)} jobs submitted in {time.monotonic() - started:.1f}s")
    kills.join()
    if len(killed) < args.kills:
        raise SystemExit(f"chaos: generate was killed {len(killed)} times, not {args.kills}")
    log(f"generate killed {len(killed)} times, the last {killed[-1] - started:.1f}s in")

    wanted = set(ids)
    while True:
        jobs = {item["job_id"]["S"]: item for item in scan(dynamodb, table, "JOB#")}
        statuses = Counter(jobs[i]["status"]["S"] if i in jobs else "missing" for i in wanted)
        if set(statuses) <= FINAL:
            break
        if time.monotonic() - started > args.timeout:
            pending = [i for i in wanted if i not in jobs or jobs[i]["status"]["S"] not in FINAL]
            raise SystemExit(f"chaos: after {args.timeout}s {dict(statuses)}; not final: {pending[:10]}")
        time.sleep(2)
    done.set()
    log(f"every job final after {time.monotonic() - started:.1f}s: {dict(statuses)}")

    problems = []
    succeeded = {i for i in wanted if jobs[i]["status"]["S"] == "succeeded"}
    media = [item for item in scan(dynamodb, table, "MEDIA#") if item["job_id"]["S"] in wanted]
    expected = {item["key"]["S"] for item in media if item["job_id"]["S"] in succeeded}
    if any(item["job_id"]["S"] not in succeeded for item in media):
        problems.append("media items of jobs that did not succeed")
    for i in succeeded:
        count = sum(1 for item in media if item["job_id"]["S"] == i)
        if count != int(jobs[i]["num_outputs"]["N"]):
            problems.append(f"job {i} has {count} media items for {jobs[i]['num_outputs']['N']} outputs")
    stored = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="media/"):
        stored |= {obj["Key"] for obj in page.get("Contents", [])}
    if stored != expected:
        problems.append(
            f"the bucket holds {len(stored)} images, the succeeded jobs {len(expected)}: "
            f"extra {sorted(stored - expected)[:5]}, missing {sorted(expected - stored)[:5]}"
        )
    attempts = Counter(int(jobs[i]["attempts"]["N"]) for i in wanted)
    log(f"attempts per job: {dict(sorted(attempts.items()))}; {len(stored)} images in the bucket")
    if problems:
        raise SystemExit("chaos: " + "; ".join(problems))
    log(f"passed in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
