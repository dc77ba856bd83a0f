#!/usr/bin/env bash
# The deploy test: template.yaml deployed for real onto LocalStack without Docker, then checked.
#   1. installs LocalStack (scripts/localstack.sh install) and runs the host executor's tests
#   2. starts LocalStack on loopback (scripts/localstack.sh start; ENFORCE_IAM=1)
#   3. scripts/deploy.sh localstack: sam build (debug), samlocal deploy, smoke test (submit ->
#      the SQS event source runs generate -> status -> content -> the image from S3)
#   4. tests/localstack/: what the expanded template cannot show (405 and the no-route 404
#      through the gateway, the DLQ redrive and event source, the roles, the logs)
#   5. scripts/destroy.sh localstack, checks the stack is gone, stops LocalStack
# and prints how long each step took. Needs a LocalStack of its own: it refuses to run while
# scripts/localstack.sh already runs one (whose stacks would collide with the test's).
# From a fresh clone on 2 cores: about 5 minutes, half of it the first debug build (which takes
# up to 6 minutes while something else compiles); again, about a minute.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/deploy-lib.sh"
cd "$ROOT"

export MEDIAGEN_LOCALSTACK=host
# A free port rather than the fixed default, which anything else may hold.
MEDIAGEN_LOCALSTACK_PORT="${MEDIAGEN_LOCALSTACK_PORT:-$(free_port)}"
export MEDIAGEN_LOCALSTACK_PORT
export MEDIAGEN_LOCALSTACK_ENFORCE_IAM="${MEDIAGEN_LOCALSTACK_ENFORCE_IAM:-1}"
mkdir -p "$STATE"
TIMINGS="$STATE/timings"
: >"$TIMINGS"
started=$SECONDS
we_started=false

# timed NAME CMD...: runs CMD and records how long it took under NAME.
timed() {
  local name=$1 t=$SECONDS
  shift
  "$@"
  echo "$name $((SECONDS - t))" >>"$TIMINGS"
}

summary() {
  local line
  line=$(awk '{printf "%s%s %ss", sep, $1, $2; sep=", "}' "$TIMINGS")
  say "LocalStack deploy test: ${line:-nothing ran} (total $((SECONDS - started))s)"
}

on_exit() {
  local status=$?
  if [ "$status" != 0 ] && [ -f "$ROOT/.localstack/localstack.log" ]; then
    printf '\n--- last lines of .localstack/localstack.log ---\n' >&2
    tail -40 "$ROOT/.localstack/localstack.log" >&2 || true
  fi
  if $we_started; then
    "$ROOT/scripts/localstack.sh" stop || true
  fi
  summary
  cleanup
  exit "$status"
}
trap on_exit EXIT

ensure_tools

say "installing LocalStack (its own venv, DynamoDB Local)"
timed install "$ROOT/scripts/localstack.sh" install

say "the host executor's unit tests"
timed executor-tests "$ROOT/.localstack/venv/bin/python" -m unittest discover -s localstack/host_executor/tests

if "$ROOT/scripts/localstack.sh" status >/dev/null; then
  die "LocalStack already runs ($("$ROOT/scripts/localstack.sh" status)): the test needs its own; stop it with scripts/localstack.sh stop (its stacks are lost)"
fi
we_started=true
timed start "$ROOT/scripts/localstack.sh" start

MEDIAGEN_TIMINGS_FILE="$TIMINGS" "$ROOT/scripts/deploy.sh" localstack

say "checks against the deployed stack (tests/localstack/)"
prepare_target localstack
MEDIAGEN_API_URL=$(api_url)
MEDIAGEN_API_KEY=$(cat "$ROOT/.local/deploy-localstack-api-key")
export MEDIAGEN_API_URL MEDIAGEN_API_KEY MEDIAGEN_STACK="$STACK"
# shellcheck source=local.env
set -a; source "$ROOT/scripts/local.env"; set +a
timed checks py -m unittest discover -s tests/localstack -v

timed destroy "$ROOT/scripts/destroy.sh" localstack
[ -z "$(stack_output status)" ] || die "stack $STACK is still there after scripts/destroy.sh: $(stack_output status)"
say "stack $STACK is gone"

we_started=false
timed stop "$ROOT/scripts/localstack.sh" stop
