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

say "all checks passed in $((SECONDS - started))s"
