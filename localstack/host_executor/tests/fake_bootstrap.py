"""A tiny custom runtime for the tests: installed as `bootstrap` in a temporary code folder.

It speaks the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) like a real one, and does what each
event asks:
    {"echo": X}          responds {"echo": X, "env": {NAME: value of each name in "env"}}
    {"print": [lines]}   prints the lines (stdout and stderr alternately), then responds
    {"fail": message}    reports a function error (POST .../error)
    {"sleep": seconds}   sleeps, then responds
    {"exit": code}       prints a line and exits with CODE in the middle of the invocation
    {"kill": true}       kills itself with SIGKILL
At start, FAKE_INIT=error reports an init error, FAKE_INIT=exit exits with status 3, and
FAKE_INIT=hang never asks for an invocation.
"""

import json
import os
import signal
import sys
import time
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"


def post(path, body, headers=None):
    request = urllib.request.Request(f"{API}/{path}", data=json.dumps(body).encode(), method="POST")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request) as response:
        response.read()


print(f"init pid={os.getpid()}", flush=True)
init = os.environ.get("FAKE_INIT")
if init == "error":
    post("init/error", {"errorType": "Runtime.ConfigError", "errorMessage": "no table configured"},
         {"Lambda-Runtime-Function-Error-Type": "Runtime.ConfigError"})
    time.sleep(60)
elif init == "exit":
    print("cannot start", file=sys.stderr, flush=True)
    sys.exit(3)
elif init == "hang":
    time.sleep(60)

while True:
    with urllib.request.urlopen(f"{API}/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        deadline = response.headers["Lambda-Runtime-Deadline-Ms"]
        event = json.loads(response.read() or b"{}")
    if "print" in event:
        for i, line in enumerate(event["print"]):
            print(line, file=sys.stderr if i % 2 else sys.stdout, flush=True)
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "exit" in event:
        print("about to exit", flush=True)
        sys.exit(event["exit"])
    if event.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if "fail" in event:
        post(f"invocation/{request_id}/error", {"errorType": "JobError", "errorMessage": event["fail"]},
             {"Lambda-Runtime-Function-Error-Type": "JobError"})
        continue
    answer = {"echo": event.get("echo"), "pid": os.getpid(), "deadline_ms": int(deadline),
              "env": {name: os.environ.get(name) for name in event.get("env", [])}}
    post(f"invocation/{request_id}/response", answer)
