#!/usr/bin/env bash
# Runs every check: format, lints, unit tests, integration tests against the emulator, the
# end-to-end run through the local API Gateway, and the chaos run. Installs what it needs first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_tools
started=$SECONDS

# LocalStack's own venv and DynamoDB Local (about 80 s from a fresh clone, mostly downloads)
# install while the checks below compile; the deploy test at the end finds them installed.
mkdir -p "$STATE"
say "installing LocalStack in the background for the deploy test (log: ${STATE#$ROOT/}/localstack-install.log)"
start_bg "$STATE/localstack-install.log" scripts/localstack.sh install
LOCALSTACK_INSTALL_PID=${BG_PIDS[-1]}

say "the README and docs/: every relative link and anchor resolves, every route is described"
python3 scripts/check-docs.py

say "template.yaml: cfn-lint, sam validate --lint, its expansion and the local stack's names"
export SAM_CLI_TELEMETRY=0
"$VENV/bin/cfn-lint" template.yaml
"$VENV/bin/sam" validate --lint --template template.yaml
"$VENV/bin/python" -m unittest discover -s tests/template -v
# The bench's cost per 1,000 jobs: its arithmetic, template.yaml as it reads it, its price sources.
"$VENV/bin/python" -m unittest discover -s tests/bench -v
# docs/capacity.md is what scripts/capacity.py renders from template.yaml, prices.json and models.toml.
"$VENV/bin/python" scripts/capacity.py --check
# moto server as the scripts start it (scripts/moto_server.py): its patch applies and changes no answer.
"$VENV/bin/python" -m unittest discover -s tests/emulator -v
if [ "${MEDIAGEN_SAM_BUILD:-0}" = 1 ]; then
  # Opt-in: from scratch it takes 6 to 12 minutes on 2 cores (scripts/deploy.sh builds anyway).
  source "$ROOT/scripts/deploy-lib.sh"
  build_functions "${MEDIAGEN_ARCH:-arm64}" "$STATE/sam-build"
fi

say "layers of functions/core/src: no import loop, no arrow out of its layer"
python3 scripts/check-layers.py

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "unit tests"
# The libraries' tests; the CLI's, in its binary, run with the clients below (scripts/test-clients.sh),
# and the functions' binaries have none.
cargo test --workspace --locked --lib
# The hosted functions of the pumps and the gateway: crashes, timeouts, rebuilds, with no stack.
cargo test -p mediagen-devtools --locked --test it -- hosted::

say "integration tests against DynamoDB Local and moto server"
start_emulator 0
aws_env
# With the Bedrock adapter, which only generate links (the core's `bedrock` feature).
MEDIAGEN_TEST_ENDPOINT="$EMULATOR_URL" cargo test -p mediagen-core --locked --features bedrock --test it

say "end-to-end through the local API Gateway"
# A key of the test run's own, never the developer's.
KEY_FILE="$STATE/api-key"
rm -f "$KEY_FILE"
start_stack "$(free_port)"
lift_limits "${MEDIAGEN_OWNER:-local}"
MEDIAGEN_API_URL="$API_URL" cargo test -p mediagen-devtools --locked --test it -- --ignored local_model:: webhooks::

say "the official replicate client against the same stack (tests/replicate_client/)"
MEDIAGEN_OTHER_API_KEY=$("$CARGO_TARGET_DIR/debug/mediagen-dev" keys create --owner someone-else 2>/dev/null)
MEDIAGEN_API_URL="$API_URL" MEDIAGEN_OTHER_API_KEY="$MEDIAGEN_OTHER_API_KEY" \
  "$VENV/bin/python" -W ignore::ResourceWarning -m unittest discover -s tests/replicate_client -v

# The same client for Node, pinned by tests/replicate_npm/package-lock.json: about a second to
# install from npm's cache and two to run. Node and npm come from Debian's packages if missing, as
# Chromium does (scripts/test-clients.sh).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "installing Debian's nodejs and npm (apt-get) for the replicate npm client's test"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq nodejs npm >/dev/null || die "apt-get install nodejs npm failed"
fi
say "the official replicate npm client against the same stack: stream(), predictions.create(), run() (tests/replicate_npm/)"
npm ci --prefix tests/replicate_npm --prefer-offline --no-audit --no-fund --loglevel=error
MEDIAGEN_API_URL="$API_URL" node --test tests/replicate_npm/replicate.test.mjs

say "the official openai SDK against the same stack (tests/openai_client/)"
MEDIAGEN_API_URL="$API_URL" "$VENV/bin/python" -W ignore::ResourceWarning -m unittest discover -s tests/openai_client -v

say "the mediagen CLI and the web playground in headless Chromium against the same stack"
MEDIAGEN_API_URL="$API_URL" scripts/test-clients.sh

say "schemathesis: the API against its OpenAPI description, every check (tests/schemathesis/)"
# It fuzzes POST /media/webhooks/secret/rotate too, moving the test run's owner's webhook secret:
# every test that checks that owner's deliveries runs before it, and those after it use keys of
# their own (docs/design.md, "Webhooks").
(cd tests/schemathesis && SCHEMATHESIS_HOOKS=hooks PYTHONPATH=. "$VENV/bin/st" --config-file schemathesis.toml \
  run "$API_URL/openapi.json" --url "$API_URL" --checks all --max-examples 40 --workers 2 \
  --request-timeout 30 --seed "${MEDIAGEN_SCHEMATHESIS_SEED:-1}" --no-color) | tee "$STATE/schemathesis.log"
cases=$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$STATE/schemathesis.log" | tail -1)
[ "${cases:-0}" -ge 500 ] || die "schemathesis ran ${cases:-no} cases; at least 500 are wanted"
say "limits under load: one key allowed 100 creates a minute bursting 150, another 50; 50 submits of an owner allowed 5 jobs at once (tests/limits/)"
dev="$CARGO_TARGET_DIR/debug/mediagen-dev"
for owner in burst calm; do "$dev" keys quota "$owner" --max-active 5000 >/dev/null; done
"$dev" keys quota capped --max-active 5 >/dev/null
MEDIAGEN_BURST_KEY=$("$dev" keys create --owner burst 2>/dev/null)
# A limit of its own, so that the burst fits a minute's window whatever the stack's pace.
"$dev" keys limits "${MEDIAGEN_BURST_KEY:0:12}" --creates-per-minute 100 >/dev/null
MEDIAGEN_BURST_KEY=$MEDIAGEN_BURST_KEY \
MEDIAGEN_CALM_KEY=$("$dev" keys create --owner calm 2>/dev/null) \
MEDIAGEN_CAPPED_KEY=$("$dev" keys create --owner capped 2>/dev/null) \
MEDIAGEN_API_URL="$API_URL" "$VENV/bin/python" -m unittest discover -s tests/limits -v
stop_stack
say "no API key and no webhook secret in the functions' logs"
for secret in "$MEDIAGEN_API_KEY" "${MEDIAGEN_API_KEY:4}" mgk_refusedrefusedrefusedrefused1234 "${WEBHOOK_SECRET:6}"; do
  for log in "$STATE/functions.log" "$STATE"/pump*.log; do
    if grep -qF -- "$secret" "$log"; then
      die "an API key or the webhook secret (or most of one) is in $log"
    fi
  done
done

say "the functions under cargo lambda watch (scripts/dev.sh --watch): every events/ file, a job, a rebuild"
start_stack "$(free_port)" watch
MEDIAGEN_API_URL="$API_URL" MEDIAGEN_FUNCTIONS_LOG="$STATE/functions.log" \
  "$VENV/bin/python" -m unittest discover -s tests/watch -v
stop_stack

# These three are mostly waiting (returned messages come back after their visibility timeout, a
# provider's rate or a slow model is waited out), so they run beside the LocalStack deploy below,
# each on emulators and a stack of its own.
say "the chaos run, beside the deploy: 200 jobs while generate is killed (scripts/chaos.sh; log: ${STATE#$ROOT/}/chaos.log)"
start_bg "$STATE/chaos.log" scripts/chaos.sh
CHAOS_PID=${BG_PIDS[-1]}
say "store faults, beside the deploy: 200 jobs while DynamoDB's emulator, then SQS's, is paused for 10 s (scripts/faults.sh; log: ${STATE#$ROOT/}/faults.log)"
start_bg "$STATE/faults.log" scripts/faults.sh
FAULTS_PID=${BG_PIDS[-1]}
say "every provider end to end, beside the deploy: a job on each stand-in, a fallback, a 120 s model, a cancel, a content filter (scripts/providers.sh; log: ${STATE#$ROOT/}/providers.log)"
start_bg "$STATE/providers.log" scripts/providers.sh
PROVIDERS_PID=${BG_PIDS[-1]}

say "template.yaml deployed onto LocalStack without Docker, smoke-tested, checked, destroyed"
stop_stack
if ! wait "$LOCALSTACK_INSTALL_PID"; then
  cat "$STATE/localstack-install.log" >&2
  die "installing LocalStack failed (${STATE#$ROOT/}/localstack-install.log)"
fi
# A clean slate: nothing of the local stacks above (their model, key or emulator) may leak in.
env -u MODEL_PROVIDER -u MODEL_CATALOGUE -u REPLICATE_API_TOKEN -u REPLICATE_API_BASE_URL -u MEDIAGEN_API_KEY \
  -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB -u ALLOW_LOCAL_URLS scripts/test-localstack.sh

say "the chaos run"
if ! wait "$CHAOS_PID"; then
  cat "$STATE/chaos.log" >&2
  die "the chaos run failed (${STATE#$ROOT/}/chaos.log)"
fi
grep -E '^chaos:|run passed' "$STATE/chaos.log" >&2

say "the store faults run"
if ! wait "$FAULTS_PID"; then
  cat "$STATE/faults.log" >&2
  die "the store faults run failed (${STATE#$ROOT/}/faults.log)"
fi
grep -E '^faults:|run passed' "$STATE/faults.log" >&2

say "the providers run"
if ! wait "$PROVIDERS_PID"; then
  cat "$STATE/providers.log" >&2
  die "the providers run failed (${STATE#$ROOT/}/providers.log)"
fi
grep -E '^test |run passed' "$STATE/providers.log" >&2

say "all checks passed in $((SECONDS - started))s"
