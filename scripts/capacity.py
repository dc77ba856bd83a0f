#!/usr/bin/env python3
"""The capacity model of docs/capacity.md: for three loads, which part of the stack saturates first
and at what rate, what callers see, what data is at risk, and what the load costs a day.

    .venv/bin/python scripts/capacity.py render    # writes docs/capacity.md
    .venv/bin/python scripts/capacity.py --check   # exits 1 if docs/capacity.md is not what render writes

Every figure is computed from the files that set it, so the document cannot drift from them:
template.yaml (memory, timeouts, reserved concurrencies, the event source, the queue, the stage's
throttle, the table), scripts/bench/prices.json (AWS prices), models.toml (provider rates, model
prices) and a few constants of functions/core/src read with regular expressions. What no file
says is below as named constants, each with where it comes from: AWS's published quotas, the
write units measured by functions/core/tests/it/capacity.rs, and the assumptions of the model.

Needs PyYAML (in .venv/, scripts/requirements.txt). Reuses scripts/bench/bench.py (the template's
short forms, the cost per 1,000 jobs) and tests/template/support.py (the template's long forms).
"""

import argparse
import dataclasses
import difflib
import math
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "template"))

import bench  # noqa: E402
import support  # noqa: E402

DOC = ROOT / "docs" / "capacity.md"

# ---------------------------------------------------------------- AWS's published quotas
# Each: its value, what it is, and the page AWS publishes it on.
QUOTAS = {
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
    "dynamodb_partition_wcu": (1000, "DynamoDB write units a second one partition takes (a table's and each index's)",
                               "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"),
    "dynamodb_partition_rcu": (3000, "DynamoDB read units a second one partition takes",
                               "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"),
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
    "dynamodb_table_wcu": (40000, "DynamoDB on-demand table's default throughput limit, write units a second (and as many read units)",
                           "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html"),
    # https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
    "lambda_account_concurrency": (1000, "Lambda concurrent executions per account and Region (default; raised on request)",
                                   "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"),
    "lambda_unreserved_minimum": (100, "Lambda concurrency AWS keeps unreserved in every account",
                                  "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"),
    # https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html
    "lambda_burst_per_10s": (1000, "Lambda instances a function may add every 10 seconds",
                             "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html"),
    # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
    "sqs_esm_added_per_minute": (300, "instances an SQS event source adds a minute while messages wait",
                                 "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html"),
    "sqs_esm_max_concurrency": (1000, "most MaximumConcurrency an SQS event source takes (concurrent batches)",
                                "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html"),
    # https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
    "apigw_account_rps": (10000, "API Gateway requests a second per account and Region, steady",
                          "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    "apigw_account_burst": (5000, "API Gateway requests at once per account and Region (burst)",
                            "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"),
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
    "sqs_standard_tps": (math.inf, "SQS standard queue API calls a second: nearly unlimited",
                         "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html"),
}

# ---------------------------------------------------------------- measured facts
# DynamoDB write units of one job, as functions/core/tests/it/capacity.rs measures them with
# ReturnConsumedCapacity=INDEXES (MEDIAGEN_CAPACITY_REPORT=1 prints them; docs/design.md,
# "Stored data", quotes the index figures): by_owner 2 writes, 3 units (the creation, and the
# commit, a transaction, which counts double); unsent 2 (the mark and its removal); the base
# table about 11.
WRITE_UNITS_PER_JOB = {"table": 11, "by_owner": 3, "unsent": 2}
# An owner's QUOTA# record grows by about 40 bytes per job queued or running, and each job writes
# it twice, its admission and its give-back (docs/design.md, "Quotas"); a write is billed per KB.
QUOTA_BYTES_PER_ACTIVE_JOB = 40
QUOTA_WRITES_PER_JOB = 2

# ---------------------------------------------------------------- assumptions of the model
# Seconds an invocation takes on AWS. The bench's warm p50s (docs/benchmarks.md) are against
# emulators on loopback; on AWS each DynamoDB, SQS or S3 call takes a few milliseconds, and a
# submit makes about five, generate about six besides the model. Used for the drain and the cost.
AWS_SECONDS = {"submit": 0.05, "status": 0.02, "content": 0.02, "generate": 0.1}
# Seconds of the model itself per job: the local renderer's are inside generate's above; a
# flux-schnell prediction under Prefer: wait, with its output's download, is the bench's
# assumption (COST_ASSUMPTIONS["replicate_wait_ms"] in scripts/bench/bench.py).
PAID_MODEL = "black-forest-labs/flux-schnell"
MODEL_SECONDS = {"local": 0.0, PAID_MODEL: bench.COST_ASSUMPTIONS["replicate_wait_ms"] / 1000}
MODELS = ["local", PAID_MODEL]
# The fixed costs (the sweeper's schedule, the idle queues' long polls) spread over the day of load (a).
COST_JOBS_PER_DAY = 1_000_000


@dataclasses.dataclass(frozen=True)
class Load:
    key: str
    title: str
    jobs_per_second: float
    seconds: float
    owners: int
    summary: str


def loads():
    day = 86400
    return [
        Load("daily-average", "(a) 1 million one-image jobs a day, the average", 1_000_000 / day, day, 1000,
             "1,000,000 jobs over 24 hours from 1,000 owners"),
        Load("daily-peak", "(a) 1 million one-image jobs a day, a peak hour at 3× the average", 3 * 1_000_000 / day, 3600, 1000,
             "the busiest hour of that day, three times the average rate, from the same 1,000 owners"),
        Load("burst", "(b) A burst of 500 submits a second for 5 minutes", 500, 300, 1000,
             "500 submits a second for 300 s, from 1,000 owners"),
        Load("one-owner", "(c) One owner at 300 jobs a second for 10 minutes", 300, 600, 1,
             "one owner, one API key, 300 submits a second for 600 s"),
    ]


# ---------------------------------------------------------------- reading the inputs
@dataclasses.dataclass(frozen=True)
class Sources:
    template: Path = ROOT / "template.yaml"
    prices: Path = bench.PRICES
    models: Path = ROOT / "models.toml"
    item_rs: Path = support.ITEM_RS
    sqs_rs: Path = support.SQS_RS
    limits_rs: Path = ROOT / "functions" / "core" / "src" / "domain" / "limits.rs"
    http_rs: Path = ROOT / "functions" / "core" / "src" / "entrypoints" / "http" / "mod.rs"
    problem_rs: Path = ROOT / "functions" / "core" / "src" / "entrypoints" / "http" / "problem.rs"


def rs_constant(path, pattern):
    found = re.search(pattern, Path(path).read_text())
    if not found:
        raise SystemExit(f"capacity.py: no match for {pattern!r} in {path}")
    return int(found.group(1).replace("_", ""))


def template_facts(sources):
    """What the capacity depends on in template.yaml, deployed with its parameters' defaults."""
    cfn = yaml.load(Path(sources.template).read_text(), Loader=support._CfnLoader)
    parameters = cfn["Parameters"]
    resources = cfn["Resources"]

    def value(setting):
        if isinstance(setting, dict) and "Ref" in setting:
            return parameters[setting["Ref"]]["Default"]
        if isinstance(setting, dict) and "Fn::If" in setting:
            # A reservation: the parameter when it is not -1 (the condition's test), else none.
            chosen = value(setting["Fn::If"][1])
            return None if str(chosen) == "-1" else chosen
        return setting

    defaults = cfn["Globals"]["Function"]
    functions = {
        r["Metadata"]["BuildProperties"]["Binary"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
    }

    def reserved(name):
        setting = value(functions[name].get("ReservedConcurrentExecutions"))
        return None if setting is None else int(setting)

    jobs_event = next(e["Properties"] for e in functions["generate"]["Events"].values() if e["Type"] == "SQS")
    queue_name = support.ref_name(jobs_event["Queue"])
    queue = resources[queue_name]["Properties"]
    age_alarm = next(
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
        and any(support.ref_name(d["Value"]) == queue_name for d in r["Properties"]["Dimensions"])
    )
    api = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::Serverless::Api")
    stage = next((s for s in api.get("MethodSettings", []) if "ThrottlingRateLimit" in s), None)
    usage_plans = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGateway::UsagePlan"] + (
        ["MediaApi Auth.UsagePlan"] if api.get("Auth", {}).get("UsagePlan") else []
    )
    gateway = api.get("GatewayResponses", {})

    def retry_after(response):
        header = gateway.get(response, {}).get("ResponseParameters", {}).get("Headers", {}).get("Retry-After")
        return int(header.strip("'")) if header else None

    table = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table")
    sweeper_schedule = next(
        e["Properties"]["Schedule"] for e in functions["sweeper"]["Events"].values() if e["Type"] == "Schedule"
    )
    facts = bench.template_facts(sources.template)
    facts.update({
        "timeout_s": {n: int(value(p.get("Timeout", defaults["Timeout"]))) for n, p in functions.items()},
        "reserved": {n: reserved(n) for n in functions},
        "batch_size": int(value(jobs_event["BatchSize"])),
        "max_concurrency": int(value(jobs_event["ScalingConfig"]["MaximumConcurrency"])),
        "max_concurrency_parameter": jobs_event["ScalingConfig"]["MaximumConcurrency"].get("Ref"),
        "visibility_timeout_s": int(value(queue["VisibilityTimeout"])),
        "retention_s": int(value(queue.get("MessageRetentionPeriod", 345600))),
        "max_receive_count": int(value(queue["RedrivePolicy"]["maxReceiveCount"])),
        "age_alarm_s": int(value(age_alarm["Threshold"])),
        "throttle_rate": float(value(stage["ThrottlingRateLimit"])) if stage else None,
        "throttle_burst": int(value(stage["ThrottlingBurstLimit"])) if stage else None,
        "throttle_scope": f"{stage['HttpMethod']} {stage['ResourcePath']}" if stage else None,
        "throttled_retry_after": retry_after("THROTTLED"),
        "gateway_error_retry_after": retry_after("DEFAULT_5XX"),
        "usage_plans": usage_plans,
        "billing_mode": table["BillingMode"],
        "indexes": {i["IndexName"]: i["Projection"]["ProjectionType"] for i in table.get("GlobalSecondaryIndexes", [])},
        "retention_days": int(parameters["RetentionDays"]["Default"]),
        "max_active_per_owner": int(parameters["MaxActiveJobsPerOwner"]["Default"]),
        "sweeper_schedule": sweeper_schedule,
        "reserved_parameters": {
            n: support.ref_name(functions[n]["ReservedConcurrentExecutions"]["Fn::If"][1])
            for n in functions if isinstance(functions[n].get("ReservedConcurrentExecutions"), dict)
        },
    })
    return facts


def code_facts(sources):
    """Constants of functions/core/src the capacity depends on."""
    return {
        "unsent_shards": rs_constant(sources.item_rs, r"const UNSENT_SHARDS: u32 = ([0-9_]+);"),
        "record_concurrency": rs_constant(sources.sqs_rs, r"const RECORD_CONCURRENCY: usize = ([0-9_]+);"),
        "creates_per_minute": rs_constant(sources.limits_rs, r"DEFAULT_CREATES_PER_MINUTE: u32 = ([0-9_]+);"),
        "others_per_minute": rs_constant(sources.limits_rs, r"DEFAULT_OTHERS_PER_MINUTE: u32 = ([0-9_]+);"),
        "max_wait_s": rs_constant(sources.http_rs, r"MAX_WAIT: Duration = Duration::from_secs\(([0-9_]+)\);"),
        "active_jobs_retry_after": rs_constant(sources.problem_rs, r"ACTIVE_JOBS_RETRY_SECONDS: u32 = ([0-9_]+);"),
        "unavailable_retry_after": rs_constant(sources.problem_rs, r'RETRY_AFTER, HeaderValue::from_static\("([0-9]+)"\)'),
    }


def catalogue(sources):
    """models.toml: each model's provider and price, each provider's creates a minute."""
    data = tomllib.loads(Path(sources.models).read_text())
    return {
        "default": data.get("default"),
        "models": {m["name"]: m for m in data["models"]},
        "rates": {name: p["rate_per_minute"] for name, p in data.get("providers", {}).items() if "rate_per_minute" in p},
    }


# ---------------------------------------------------------------- the model
def seconds_per_job(model):
    return AWS_SECONDS["generate"] + MODEL_SECONDS[model]


def requests_per_job():
    """What one job's client sends, per function, and per API method: bench.COST_ASSUMPTIONS'
    client (submit, status polls, the whole job once, the content link once)."""
    polls = bench.COST_ASSUMPTIONS["status_polls"]
    methods = {
        "POST /media/generate": ("submit", 1),
        "GET /media/status/{job_id}": ("status", polls),
        "GET /media/jobs/{job_id}": ("status", 1),
        "GET /media/content/{media_id}": ("content", 1),
    }
    functions = {}
    for function, count in methods.values():
        functions[function] = functions.get(function, 0) + count
    return methods, functions


@dataclasses.dataclass
class Limit:
    key: str
    name: str
    scope: str  # "all": the stack's jobs a second; "owner": one owner's; "reads": the polls of all
    jobs_per_second: dict  # per model
    arithmetic: str
    callers: str
    admits: bool  # on the submit path (refuses jobs) rather than the drain or the reads


def limits(t, code, cat):
    """Every limit a job meets, as jobs a second it allows."""
    q = {k: v[0] for k, v in QUOTAS.items()}
    methods, per_function = requests_per_job()
    found = []

    def add(key, name, scope, rate, arithmetic, callers, admits=True):
        rates = rate if isinstance(rate, dict) else {m: rate for m in MODELS}
        found.append(Limit(key, name, scope, rates, arithmetic, callers, admits))

    throttled = f"`429` `throttled` from API Gateway, `Retry-After: {t['throttled_retry_after']}`"
    gateway_error = f"a `5xx` `gateway-error` from API Gateway, `Retry-After: {t['gateway_error_retry_after']}`"
    unavailable = f"`503` `backend-unavailable`, `Retry-After: {code['unavailable_retry_after']}`, once the SDK's retries give up"
    if t["throttle_rate"] is not None:
        rate, burst = t["throttle_rate"], t["throttle_burst"]
        add("stage-submit", "API stage throttle on `POST /media/generate`", "all", rate / methods["POST /media/generate"][1],
            f"{num(rate)} requests/s ÷ 1 submit a job; bursts of {burst}", throttled)
        polls = methods["GET /media/status/{job_id}"][1]
        add("stage-polls", "API stage throttle on `GET /media/status/{job_id}`", "reads", rate / polls,
            f"{num(rate)} requests/s ÷ {polls} polls a job", throttled + " on the polls; the jobs still run", admits=False)
    total_requests = sum(per_function.values())
    add("account-api", "API Gateway account throttle (all APIs of the Region)", "all", q["apigw_account_rps"] / total_requests,
        f"{num(q['apigw_account_rps'])} requests/s ÷ {total_requests} requests a job", throttled)
    for function in ("submit", "status", "content"):
        reserved = t["reserved"][function]
        pool = reserved if reserved is not None else q["lambda_account_concurrency"] - q["lambda_unreserved_minimum"]
        seconds = AWS_SECONDS[function]
        count = per_function[function]
        add(f"lambda-{function}", f"`{function}` concurrency ({'reserved' if reserved is not None else 'unreserved pool'})",
            "all" if function == "submit" else "reads", pool / seconds / count,
            f"{num(pool)} instances ÷ {num(seconds)} s ÷ {count} request{'s' if count > 1 else ''} a job",
            gateway_error, admits=function == "submit")
    concurrency = min(t["max_concurrency"], t["reserved"]["generate"] or t["max_concurrency"])
    add("generate", "`generate` drain (the jobs queue's event source)", "all",
        {m: concurrency * t["batch_size"] / seconds_per_job(m) for m in MODELS},
        f"{concurrency} invocations × {t['batch_size']} jobs ÷ "
        + " or ".join(f"{num(seconds_per_job(m))} s ({short(m)})" for m in MODELS),
        "`202`, then the job waits `queued` in the queue", admits=False)
    provider_rate = {}
    for m in MODELS:
        provider = cat["models"][m]["provider"]
        provider_rate[m] = cat["rates"][provider] / 60 if provider in cat["rates"] else math.inf
    limited = [m for m in MODELS if provider_rate[m] != math.inf]
    add("provider", "the model's provider (models.toml `rate_per_minute`)", "all", provider_rate,
        "; ".join(f"{cat['models'][m]['provider']}: {num(cat['rates'][cat['models'][m]['provider']])} a minute ÷ 60" for m in limited)
        + "; `local`: none", "`202`, then the job waits `queued`; no receive is spent", admits=False)
    wcu = q["dynamodb_partition_wcu"]
    units = WRITE_UNITS_PER_JOB
    add("table", "DynamoDB table throughput", "all", q["dynamodb_table_wcu"] / units["table"],
        f"{num(q['dynamodb_table_wcu'])} WCU/s ÷ {units['table']} WCU a job", unavailable)
    add("unsent", "DynamoDB `unsent` index, its partitions", "all", wcu * code["unsent_shards"] / units["unsent"],
        f"{num(wcu)} WCU/s × {code['unsent_shards']} partitions ÷ {units['unsent']} WCU a job", unavailable)
    add("by-owner", "DynamoDB `by_owner` index, one owner's partition", "owner", wcu / units["by_owner"],
        f"{num(wcu)} WCU/s ÷ {units['by_owner']} WCU a job", unavailable)
    active = t["max_active_per_owner"]
    quota_units = math.ceil(active * QUOTA_BYTES_PER_ACTIVE_JOB / 1024) * QUOTA_WRITES_PER_JOB
    add("quota-item", "DynamoDB `QUOTA#<owner>` item at the owner's limit", "owner", wcu / quota_units,
        f"{num(wcu)} WCU/s ÷ ({QUOTA_WRITES_PER_JOB} writes × ⌈{active} jobs × {QUOTA_BYTES_PER_ACTIVE_JOB} B ÷ 1 KB⌉ WCU)",
        unavailable)
    add("key-rate", "the key's create limit (per key)", "owner", code["creates_per_minute"] / 60,
        f"{num(code['creates_per_minute'])} creates a minute ÷ 60", "`429` `rate-limited`, `Retry-After` the seconds left of the minute")
    add("active-jobs", "`MaxActiveJobsPerOwner` (jobs queued or running)", "owner",
        {m: active / seconds_per_job(m) for m in MODELS},
        f"{active} jobs ÷ the seconds a job is active, at best its run: "
        + " or ".join(f"{num(seconds_per_job(m))} s ({short(m)})" for m in MODELS),
        f"`429` `too-many-active-jobs`, `Retry-After: {code['active_jobs_retry_after']}`")
    return found


# The order a submit meets the limits in: API Gateway, submit's concurrency, the key's count (the
# first write, services/auth.rs), the owner's quota record, the job's writes.
ADMISSION = ["account-api", "stage-submit", "lambda-submit", "key-rate", "active-jobs", "quota-item", "table", "unsent", "by-owner"]
DRAIN = ["generate", "provider"]


def capacity(limit, load, model):
    """Jobs a second of the whole load this limit allows."""
    per = limit.jobs_per_second[model]
    return per * load.owners if limit.scope == "owner" else per


def flow(found, load, model, t):
    """The load through the stack, as steady flows: the jobs a second reaching each limit, what is
    taken and what drains, and the backlog."""
    by_key = {lim.key: lim for lim in found}
    reaching = {}
    rate = load.jobs_per_second
    for key in ADMISSION:
        reaching[key] = rate
        rate = min(rate, capacity(by_key[key], load, model))
    admitted = rate
    for lim in found:
        reaching.setdefault(lim.key, admitted)
    drain = min(capacity(by_key[key], load, model) for key in DRAIN)
    # Queued jobs hold their owners' slots: the backlog is at most every owner's whole quota, and
    # once it is there the owners are taken only as fast as jobs drain.
    ceiling = load.owners * t["max_active_per_owner"]
    growth = max(0.0, admitted - drain)
    full_after = ceiling / growth if growth else math.inf
    if full_after < load.seconds:
        backlog = ceiling
        taken = admitted * full_after + drain * (load.seconds - full_after)
    else:
        backlog = growth * load.seconds
        taken = admitted * load.seconds
    return {
        "reaching": reaching,
        "admitted": admitted,
        "drain": drain,
        "backlog": backlog,
        "full_after": full_after,
        "taken": taken,
        "refused": load.jobs_per_second * load.seconds - taken,
        "clear_after": backlog / drain if drain else math.inf,
    }


def cost_per_job(sources, t, cat, jobs_per_day):
    """$ per job of each model: the bench's AWS share at AWS_SECONDS, and the model's price from
    models.toml (bench.catalogue_costs)."""
    summary = {"warm_p50_ms": {f: AWS_SECONDS[f] * 1000 for f in bench.FUNCTIONS}}
    assumptions = {**bench.COST_ASSUMPTIONS, "jobs_per_day": jobs_per_day, "replicate_wait_ms": MODEL_SECONDS[PAID_MODEL] * 1000}
    cost = bench.cost_per_1000_jobs(summary, bench.load_prices(sources.prices), t, assumptions)
    rows = {row["model"]: row for row in bench.catalogue_costs(cost, sources.models)}
    return {m: {"aws": rows[m]["aws_usd_per_1000"] / 1000, "model": rows[m]["model_usd_per_1000"] / 1000} for m in MODELS}


# ---------------------------------------------------------------- rendering
def num(x):
    """A figure for a reader: 1,000; 11.6; 0.05; ∞."""
    if x == math.inf:
        return "∞"
    if abs(x - round(x)) < 1e-9 and abs(x) >= 1:
        return f"{round(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:,.1f}"
    return f"{x:.3g}"


def usd(x):
    return f"${x:,.0f}" if x >= 100 else f"${x:,.2f}"


def duration(seconds):
    if seconds == math.inf:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def short(model):
    return "flux-schnell" if model == PAID_MODEL else model


def render(sources=Sources()):
    t = template_facts(sources)
    code = code_facts(sources)
    cat = catalogue(sources)
    found = limits(t, code, cat)
    methods, per_function = requests_per_job()
    q = QUOTAS
    reservations = {n: r for n, r in t["reserved"].items() if r is not None}
    lines = [
        "# Capacity",
        "",
        "How much load a mediagen stack deployed with `template.yaml`'s defaults takes, which part of it",
        "gives out first, what callers see then, and what it costs. This file is generated by",
        "`.venv/bin/python scripts/capacity.py render` from `template.yaml`, `scripts/bench/prices.json`,",
        "`models.toml` and a few constants of `functions/core/src`; do not edit it by hand.",
        "`scripts/test.sh` runs `scripts/capacity.py --check`, which fails when a change to one of",
        "those files changes a figure here and the file was not written again.",
        "",
        "It is a model, not a measurement: rates are steady flows, and the seconds an invocation takes on",
        "AWS are assumed (below). Read it for which limit comes first and by how much, not for the last digit.",
        "",
        "## What it reads",
        "",
        "| setting | value | from |",
        "|---|---|---|",
        f"| memory, MB | {', '.join(f'{n} {m}' for n, m in t['memory_mb'].items())} | `template.yaml`, `MemorySize` |",
        f"| timeout, s | {', '.join(f'{n} {s}' for n, s in t['timeout_s'].items())} | `template.yaml`, `Timeout` |",
        f"| reserved concurrency | {', '.join(f'{n} {r}' for n, r in reservations.items())} (sum {sum(reservations.values())}) | `template.yaml`, the `*ReservedConcurrency` parameters |",
        f"| jobs queue event source | batch {t['batch_size']}, at most {t['max_concurrency']} invocations at once (`{t['max_concurrency_parameter']}`); generate runs {code['record_concurrency']} records at once | `template.yaml`; `RECORD_CONCURRENCY` in `entrypoints/sqs.rs` |",
        f"| jobs queue | visibility {t['visibility_timeout_s']} s, {t['max_receive_count']} receives, messages kept {duration(t['retention_s'])}; alarm when the oldest waits {duration(t['age_alarm_s'])} | `template.yaml`, `JobsQueue`, `JobsQueueAgeAlarm` |",
        "| API stage throttle | "
        + (f"{num(t['throttle_rate'])} requests/s, bursts of {t['throttle_burst']}, for each method (`{t['throttle_scope']}`)" if t["throttle_rate"] is not None else "none")
        + f"; usage plans: {', '.join(t['usage_plans']) or 'none'} | `template.yaml`, `MethodSettings` |",
        f"| table | {t['billing_mode']}; indexes {', '.join(f'`{n}` ({p})' for n, p in t['indexes'].items())}; `unsent` over {code['unsent_shards']} partitions | `template.yaml`; `UNSENT_SHARDS` in `adapters/dynamodb/item.rs` |",
        f"| retention | {t['retention_days']} days | `RetentionDays` |",
        f"| jobs an owner may have queued or running | {t['max_active_per_owner']} | `MaxActiveJobsPerOwner` |",
        f"| a key's requests a minute | {num(code['creates_per_minute'])} creates, {num(code['others_per_minute'])} others | `domain/limits.rs` |",
        f"| sweeper | `{t['sweeper_schedule']}` | `template.yaml` |",
        "| providers' creates a minute | " + ", ".join(f"{p} {num(r)}" for p, r in cat["rates"].items()) + " | `models.toml`, `rate_per_minute` |",
        "",
        "What no file says, and the model assumes:",
        "",
        "- One job's client: " + ", ".join(f"`{m}` × {c}" for m, (_, c) in methods.items())
        + " (the cost model's client, `COST_ASSUMPTIONS` in `scripts/bench/bench.py`).",
        "- Seconds an invocation takes on AWS: " + ", ".join(f"{f} {num(s)}" for f, s in AWS_SECONDS.items())
        + f" (about 10 ms per AWS call; the bench's figures, against emulators, are smaller). The model adds "
        + ", ".join(f"{num(s)} s for `{m}`" for m, s in MODEL_SECONDS.items()) + ": a job takes "
        + ", ".join(f"{num(seconds_per_job(m))} s of `{short(m)}`" for m in MODELS) + ".",
        f"- DynamoDB write units a job: the table {WRITE_UNITS_PER_JOB['table']}, `by_owner` {WRITE_UNITS_PER_JOB['by_owner']}, `unsent` {WRITE_UNITS_PER_JOB['unsent']}, measured by",
        "  `functions/core/tests/it/capacity.rs` ([design.md, \"Stored data\"](design.md#stored-data)); an owner's `QUOTA#` record",
        f"  grows {QUOTA_BYTES_PER_ACTIVE_JOB} bytes per active job and is written {QUOTA_WRITES_PER_JOB} times a job ([design.md, \"Quotas\"](design.md#quotas)).",
        "- The stage throttle is the stage's default method setting, which AWS applies to each method on its own;",
        f"  were it counted across the stage, a job's {sum(per_function.values())} requests would share it:"
        f" {num(t['throttle_rate'] / sum(per_function.values())) if t['throttle_rate'] else '∞'} jobs/s.",
        "- Cost: the bench's cost of a job (`cost_per_1000_jobs` in `scripts/bench/bench.py`; [benchmarks.md](benchmarks.md#cost-per-1000-jobs))",
        f"  at the seconds above, with the models' prices from `models.toml` and the fixed costs spread over {num(COST_JOBS_PER_DAY)} jobs a day.",
        "- Each owner has one key. No `Prefer: wait`: a request held open holds its instance up to "
        f"{code['max_wait_s']} s, so a",
        f"  reservation of 100 serves only 100 ÷ {code['max_wait_s']} = {num(100 / code['max_wait_s'])} such requests a second.",
        "",
        "## The limits",
        "",
        "Every limit a job meets, as the jobs a second it lets through. \"Per owner\" limits hold for each",
        "owner separately; the stack takes as many times more as there are owners. The first two",
        "columns of figures differ only where the model's time or provider matters.",
        "",
        "| limit | scope | jobs/s, `local` | jobs/s, `flux-schnell` | arithmetic | over it, callers see |",
        "|---|---|---|---|---|---|",
    ]
    scope_name = {"all": "the stack", "owner": "per owner", "reads": "the stack's reads"}
    for lim in found:
        lines.append(
            f"| {lim.name} | {scope_name[lim.scope]} | {num(lim.jobs_per_second['local'])} | {num(lim.jobs_per_second[PAID_MODEL])}"
            f" | {lim.arithmetic} | {lim.callers} |"
        )
    lines += [
        "",
        f"SQS standard queues take nearly unlimited calls a second and keep a message {duration(t['retention_s'])} here",
        "(`MessageRetentionPeriod`): the queue is never what saturates, and a job waiting in it is not lost.",
        "",
    ]
    costs = cost_per_job(sources, t, cat, COST_JOBS_PER_DAY)
    for load in loads():
        lines += render_load(load, found, t, code, cat, costs)
    lines += render_settings(t, found, cat)
    lines += [
        "## AWS quotas used",
        "",
        "| quota | value | source |",
        "|---|---|---|",
    ]
    for value, what, url in q.values():
        lines.append(f"| {what} | {num(value) if value != math.inf else 'nearly unlimited'} | {url} |")
    lines.append("")
    return "\n".join(lines)


def render_load(load, found, t, code, cat, costs):
    jobs = load.jobs_per_second * load.seconds
    flows = {m: flow(found, load, m, t) for m in MODELS}
    order = {key: i for i, key in enumerate(ADMISSION + DRAIN)}
    by_key = {lim.key: lim for lim in found}
    lines = [
        f"## {load.title}",
        "",
        f"{load.summary[0].upper()}{load.summary[1:]}: {num(load.jobs_per_second)} jobs/s, {num(load.jobs_per_second / load.owners)} per owner,"
        f" {num(jobs)} jobs in all. Each limit, in the order a job meets it, with the jobs a second that reach it"
        " (what earlier limits let through) and what it allows:",
        "",
        "| limit | reach it, `local` | allows, `local` | reach it, `flux-schnell` | allows, `flux-schnell` |",
        "|---|---|---|---|---|",
    ]

    def cell(lim, m):
        reach, allows = flows[m]["reaching"][lim.key], capacity(lim, load, m)
        over = reach > allows * (1 + 1e-9)
        return f"{num(reach)} | {'**' + num(allows) + '**' if over else num(allows)}"

    for lim in sorted(found, key=lambda lim: order.get(lim.key, len(order))):
        lines.append(f"| {lim.name} | {cell(lim, MODELS[0])} | {cell(lim, MODELS[1])} |")
    lines += ["", "A figure in bold is a limit the load is over.", ""]
    for m in MODELS:
        f = flows[m]
        over = [
            lim for lim in found
            if f["reaching"][lim.key] > capacity(lim, load, m) * (1 + 1e-9)
        ]
        job_path = sorted((lim for lim in over if lim.scope != "reads"), key=lambda lim: order[lim.key])
        reads = [lim for lim in over if lim.scope == "reads"]
        if job_path:
            first = job_path[0]
            verdict = (f"first to saturate: **{first.name}**, at {num(capacity(first, load, m))} jobs/s"
                       f" ({first.arithmetic}).")
        else:
            verdict = "nothing on a job's path saturates."
        lines += [f"**`{m}`**: {verdict}", ""]
        if over or f["full_after"] < load.seconds:
            seen = {}
            for lim in job_path + reads:
                seen.setdefault(lim.callers, []).append(lim.name)
            if f["full_after"] < load.seconds:
                seen.setdefault(by_key["active-jobs"].callers, []).append("`MaxActiveJobsPerOwner`, once the backlog fills it")
            lines.append("- Callers see, beside `202` for the jobs taken:")
            lines += [f"  - {callers} ({'; '.join(names)})" for callers, names in seen.items()]
        else:
            lines.append("- Callers see `202`, and their jobs run within seconds.")
        lines.append(
            f"- Of {num(jobs)} submits, about {num(f['taken'])} are taken"
            + (f" and {num(f['refused'])} refused, to be sent again after `Retry-After`" if f["refused"] > 0.5 else "")
            + f". Jobs are taken at up to {num(f['admitted'])} a second and run at up to {num(f['drain'])} a second."
        )
        if f["backlog"] >= 1:
            note = ""
            if f["full_after"] < load.seconds:
                note = (f" The backlog reaches every owner's quota ({load.owners:,} × {t['max_active_per_owner']}) after"
                        f" {duration(f['full_after'])}; from then on submits are answered `429` `too-many-active-jobs`"
                        " as fast as jobs run.")
            alarm = "past" if f["clear_after"] > t["age_alarm_s"] else "within"
            lines.append(
                f"- Backlog: {num(f['backlog'])} jobs `queued` at the end, {num(f['backlog'] / load.owners)} per owner.{note}"
                f" It takes {duration(f['clear_after'])} to run them ({alarm} the queue-age alarm's {duration(t['age_alarm_s'])})."
            )
        else:
            lines.append("- Backlog: none; jobs run as fast as they are taken.")
        lines.append(
            f"- Data at risk: none. A refused submit wrote and queued nothing; a taken job waits in the queue,"
            f" which keeps its message {duration(t['retention_s'])}, and a wait for the provider spends none of its"
            f" {t['max_receive_count']} receives."
        )
        per = costs[m]["aws"] + costs[m]["model"]
        lines.append(
            f"- Cost: {usd(costs[m]['aws'] * 1000)} of AWS and {usd(costs[m]['model'] * 1000)} of the model per 1,000 jobs:"
            f" the {num(f['taken'])} jobs taken cost {usd(per * f['taken'])}"
            + (f", {usd(per * f['taken'] * 86400 / load.seconds)} a day at this rate." if load.seconds < 86400 else " a day.")
        )
        lines.append("")
    return lines


def render_settings(t, found, cat):
    q = {k: v[0] for k, v in QUOTAS.items()}
    reservations = {n: r for n, r in t["reserved"].items() if r is not None}
    unreserved = q["lambda_account_concurrency"] - sum(reservations.values())
    by_key = {lim.key: lim for lim in found}
    # The parameter that sets each reservation, or the function's own setting when none does.
    params = {n: t["reserved_parameters"].get(n, f"{n}'s ReservedConcurrentExecutions") for n in t["reserved"]}
    provider = cat["models"][PAID_MODEL]["provider"]
    return [
        "## Settings to raise",
        "",
        "Each setting, what raising it buys, and what it costs. On-demand DynamoDB, SQS and Lambda bill",
        "per request: a higher ceiling costs nothing while idle, and each job costs the same whatever it is.",
        "",
        "| setting | now | raises | what raising it costs |",
        "|---|---|---|---|",
        f"| `{t['max_concurrency_parameter']}` with `{params['generate']}` | {t['max_concurrency']} and {t['reserved']['generate']} |"
        f" {by_key['generate'].name}, {t['batch_size']} jobs a second per invocation-second |"
        f" nothing idle; keep the reservation at least as large or the event source is throttled and spends receives;"
        f" the event source adds {q['sqs_esm_added_per_minute']} instances a minute, up to {num(q['sqs_esm_max_concurrency'])};"
        " with a paid model, more predictions at once |",
        f"| `{params['submit']}`, `{params['status']}`, `{params['content']}` | {t['reserved']['submit']}, {t['reserved']['status']}, {t['reserved']['content']} |"
        " the API functions' concurrency, and requests held by `Prefer: wait` |"
        f" nothing idle; every instance reserved is taken from the account's pool ({num(q['lambda_account_concurrency'])},"
        f" {num(unreserved)} unreserved now; AWS keeps {q['lambda_unreserved_minimum']} unreserved) |",
        f"| the stage throttle (`MethodSettings`) | {num(t['throttle_rate'])}/s, bursts of {t['throttle_burst']} |"
        " the first limit of every load here |"
        f" nothing; it is there so that a runaway caller costs little: a request over it is free, one under it costs its"
        f" API Gateway request and an invocation. Up to the account's {num(q['apigw_account_rps'])}/s |",
        f"| `MaxActiveJobsPerOwner`, or `mediagen-dev keys quota OWNER --max-active N` | {t['max_active_per_owner']} |"
        f" {by_key['active-jobs'].name} |"
        f" nothing per job; each active job adds {QUOTA_BYTES_PER_ACTIVE_JOB} bytes to the owner's `QUOTA#` record, so each of its"
        " admissions and give-backs takes more write units, and the record's partition allows fewer jobs a second |",
        "| a key's create limit, `mediagen-dev keys limits PREFIX --creates-per-minute N` | "
        f"{num(by_key['key-rate'].jobs_per_second['local'] * 60)} a minute | {by_key['key-rate'].name} | nothing; one write per request either way |",
        f"| the provider's rate: `rate_per_minute` of `[providers.{provider}]` in `models.toml`, with {provider} | "
        f"{num(cat['rates'][provider])} a minute | {by_key['provider'].name} |"
        " raise it only when the provider has raised the account's limit; the model's price per image stays the same |",
        f"| Lambda's concurrent executions (Service Quotas) | {num(q['lambda_account_concurrency'])} |"
        " room for larger reservations |"
        f" nothing; a request to AWS. A function grows by at most {num(q['lambda_burst_per_10s'])} instances every 10 s |",
        "",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=["render"], help="write docs/capacity.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/capacity.md is not what render writes")
    args = parser.parse_args()
    if args.check == bool(args.mode):
        parser.error("give either render or --check")
    text = render()
    if args.mode == "render":
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")
        return 0
    current = DOC.read_text() if DOC.exists() else ""
    if current == text:
        print(f"{DOC.relative_to(ROOT)} is current")
        return 0
    diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), "docs/capacity.md", "render", lineterm="", n=0))
    sys.stderr.write("\n".join(diff[:40]) + "\n")
    sys.stderr.write(
        f"{DOC.relative_to(ROOT)} is not current ({len(diff)} diff lines): run .venv/bin/python scripts/capacity.py render\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
