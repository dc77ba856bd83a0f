#!/usr/bin/env bash
# Builds release artifacts and measures them beside their baselines: init time, first and warm
# invocation latency, peak RSS, artifact size, handler overhead, presign cost, pipeline throughput,
# the DynamoDB index writes of a job, 100 progress streams held at once and what one costs a minute,
# and from them the cost per 1,000 jobs (scripts/bench/prices.json).
# Writes target/bench/summary.json and docs/benchmarks.md. Takes several minutes; not part of test.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

started=$SECONDS
ensure_tools
say "building release artifacts (cargo lambda build --release --output-format zip)"
cargo lambda build --release --output-format zip --locked \
  --bin submit --bin generate --bin status --bin content --bin bare
for function in submit generate status content bare; do
  # The zip is the artifact; the bench runs the binary inside it.
  "$VENV/bin/python" -m zipfile -e "$CARGO_TARGET_DIR/lambda/$function/bootstrap.zip" "$CARGO_TARGET_DIR/lambda/$function/"
  chmod +x "$CARGO_TARGET_DIR/lambda/$function/bootstrap"
done
say "building the local tools"
cargo build --locked -p mediagen-devtools --bin mediagen-dev

start_emulator 0
aws_env
# The local stack's settings, and the bench's own resources apart from the ones it uses below.
set -a; source scripts/local.env; set +a
eval "$(MEDIAGEN_TABLE=bench-jobs MEDIAGEN_QUEUE=bench-jobs MEDIAGEN_DEAD_LETTER_QUEUE=bench-jobs-dlq \
  MEDIAGEN_BUCKET=bench-media MEDIAGEN_WEBHOOKS_QUEUE=bench-webhooks MEDIAGEN_WEBHOOKS_DEAD_LETTER_QUEUE=bench-webhooks-dlq \
  "$CARGO_TARGET_DIR/debug/mediagen-dev" setup)"
# The functions' events carry it, as a client's requests do.
MEDIAGEN_API_KEY=$("$CARGO_TARGET_DIR/debug/mediagen-dev" keys create --owner bench 2>/dev/null)
export MEDIAGEN_API_KEY
lift_limits bench

say "handler overhead and presign cost (criterion)"
cargo bench --locked -p mediagen-core --bench handlers -- --noplot

say "init, latency, memory and size of each function"
"$VENV/bin/python" scripts/bench/bench.py functions --artifacts "$CARGO_TARGET_DIR/lambda" --emulator "$EMULATOR_URL" >/dev/null

say "DynamoDB index writes of one job, beside the figures before issue 27 (tests/it/capacity.rs)"
MEDIAGEN_TEST_ENDPOINT="$EMULATOR_URL" MEDIAGEN_CAPACITY_REPORT=1 cargo test --locked -p mediagen-core --test it \
  -- capacity:: --nocapture > "$STATE/capacity-report.txt"
"$VENV/bin/python" scripts/bench/bench.py indexes --capacity-report "$STATE/capacity-report.txt"

# The stack's own cost is what is measured, not the debug build's: a debug submit spends about
# 5 ms of CPU in our code, a release one 1.4 ms (docs/design.md, "Local stack").
say "the local stack (release build: MEDIAGEN_BUILD_MODE=release scripts/dev.sh runs the same)"
KEY_FILE="$STATE/bench-api-key"
rm -f "$KEY_FILE"
MEDIAGEN_BUILD_MODE=release start_stack "$(free_port)"
# The stack's key is its owner's (start_stack), not the bench owner's above.
lift_limits "${MEDIAGEN_OWNER:-local}"
# First, while the stack is fresh.
say "a day of use: 20 jobs on the fresh stack, then again after 5,000 more (about 5 minutes)"
"$VENV/bin/python" scripts/bench/bench.py soak --api "$API_URL" --emulator-pids "${EMULATOR_PIDS[@]}"

say "pipeline throughput on the local stack"
"$VENV/bin/python" scripts/bench/bench.py pipeline --api "$API_URL"

say "the local stack beside the emulators' bound, at 1 and 30 clients"
"$VENV/bin/python" scripts/bench/bench.py load --api "$API_URL" --stack-pids "${EMULATOR_PIDS[@]}" "${STACK_PIDS[@]}" \
  --jobs-pump-pid "$PUMP_PID"

# A stack of its own whose jobs wait for a model limited to 6 a minute (tests/providers/models.toml),
# so that each stream stays open; a heartbeat every 5 s, so that the hold sees some.
say "100 progress streams held open at once for 60 s, then their jobs canceled"
stop_stack
KEY_FILE="$STATE/bench-stream-api-key"
rm -f "$KEY_FILE"
MODEL_PROVIDER=local MODEL_CATALOGUE="$ROOT/tests/providers/models.toml" DEFAULT_MODEL=local \
  MAX_PROVIDER_WAIT_SECONDS=1800 STREAM_HEARTBEAT_SECONDS=5 MEDIAGEN_FUNCTION_CONCURRENCY=110 \
  MEDIAGEN_BUILD_MODE=release start_stack "$(free_port)"
lift_limits "${MEDIAGEN_OWNER:-local}"
"$VENV/bin/python" scripts/bench/bench.py streams --api "$API_URL" --functions-log "$STATE/functions.log"

say "wrote target/bench/summary.json and docs/benchmarks.md in $((SECONDS - started))s"
