#!/usr/bin/env bash
# Runs every check: format, lints, unit tests, integration tests against the emulator, and the
# end-to-end run through `cargo lambda watch`. Installs what it needs first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_tools
started=$SECONDS

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "unit tests"
cargo test --workspace --locked --lib --bins

say "integration tests against moto server"
start_emulator 0
aws_env
MEDIAGEN_TEST_ENDPOINT="$EMULATOR_URL" cargo test --workspace --locked --test '*'

say "end-to-end through cargo lambda watch"
start_stack "$(free_port)" --ignore-changes
MEDIAGEN_API_URL="$API_URL" cargo test -p mediagen-devtools --locked --test end_to_end -- --ignored
stop_stack

say "end-to-end with MODEL_PROVIDER=replicate against the mock Replicate API"
start_mock_replicate test-token
export MODEL_PROVIDER=replicate REPLICATE_API_TOKEN=test-token REPLICATE_API_BASE_URL="$REPLICATE_MOCK_URL/v1"
start_stack "$(free_port)" --ignore-changes
MEDIAGEN_API_URL="$API_URL" cargo test -p mediagen-devtools --locked --test end_to_end_replicate -- --ignored

say "all checks passed in $((SECONDS - started))s"
