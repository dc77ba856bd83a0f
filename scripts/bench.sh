#!/usr/bin/env bash
# Builds release artifacts and measures them beside their baselines: init time, first and warm
# invocation latency, peak RSS, artifact size, handler overhead, presign cost, pipeline throughput,
# and from them the cost per 1,000 jobs (scripts/bench/prices.json).
# Writes target/bench/summary.json and BENCHMARKS.md. Takes several minutes; not part of test.sh.
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
export MAX_RECEIVE_COUNT=5
# The bench's own resources, apart from the ones the local stack uses below.
eval "$(MEDIAGEN_TABLE=bench-jobs MEDIAGEN_QUEUE=bench-jobs MEDIAGEN_DEAD_LETTER_QUEUE=bench-jobs-dlq \
  MEDIAGEN_BUCKET=bench-media QUEUE_VISIBILITY_TIMEOUT=180 "$CARGO_TARGET_DIR/debug/mediagen-dev" setup)"

say "handler overhead and presign cost (criterion)"
MEDIAGEN_BENCH_ENDPOINT="$EMULATOR_URL" cargo bench --locked -p mediagen-core --bench handlers -- --noplot

say "init, latency, memory and size of each function"
"$VENV/bin/python" scripts/bench/bench.py functions --artifacts "$CARGO_TARGET_DIR/lambda" --emulator "$EMULATOR_URL" >/dev/null

say "pipeline throughput on the local stack"
start_stack "$(free_port)" --ignore-changes
"$VENV/bin/python" scripts/bench/bench.py pipeline --api "$API_URL"

say "wrote target/bench/summary.json and BENCHMARKS.md in $((SECONDS - started))s"
