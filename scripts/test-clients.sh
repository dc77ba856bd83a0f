#!/usr/bin/env bash
# Tests the two clients of issue 14: the `mediagen` CLI (functions/cli) and the web playground
# (web/playground.html, in headless Chromium).
#
#   MEDIAGEN_API_URL=http://127.0.0.1:9000 MEDIAGEN_API_KEY=<key> scripts/test-clients.sh
#
# With a running stack (MEDIAGEN_API_URL, MEDIAGEN_API_KEY) it runs, in order: the CLI's unit
# tests and its tests against a wiremock stand-in of the API; the CLI against the stack (generate
# into a temporary folder and decode the files, then each error's message and exit code); the
# playground against the stack (key, prompt, 512×384, follow the job's progress stream, wait for
# the image, check its size in the browser, screenshot to target/playground.png; the stream refused,
# the page polls). Without MEDIAGEN_API_URL the stack parts are
# skipped and the playground runs against tests/playground/stub_api.py.
# MEDIAGEN_FAILURE_PROMPT (e.g. '[fail] x' with the mock Replicate model) adds the failed-job case.
#
# Installs what it needs: Debian's chromium (apt-get, as root) and the pinned Playwright package
# (tests/playground/requirements.txt) into .venv/. No browser is downloaded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
started=$SECONDS
declare -a timings=()
phase() { timings+=("$(printf '%5ss  %s' "$((SECONDS - $1))" "$2")"); }

# ---- tools -------------------------------------------------------------------------------------
t=$SECONDS
CHROMIUM="${MEDIAGEN_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  say "installing Debian's chromium (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null \
    || die "apt-get install chromium failed"
fi
[ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM"
REQUIREMENTS="$ROOT/tests/playground/requirements.txt"
stamp="$VENV/.requirements-playground"
if [ ! -f "$stamp" ] || ! cmp -s "$REQUIREMENTS" "$stamp"; then
  say "installing Playwright into .venv/ (tests/playground/requirements.txt)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" || die "pip install failed"
  cp "$REQUIREMENTS" "$stamp"
fi
phase "$t" "tools (chromium, playwright)"

# ---- the CLI ---------------------------------------------------------------------------------
t=$SECONDS
say "mediagen CLI: build, unit tests, tests against the mock API"
cargo test -p mediagen-cli --locked
phase "$t" "CLI: build, unit and mock tests"

if [ -n "${MEDIAGEN_API_URL:-}" ]; then
  t=$SECONDS
  say "mediagen CLI against the stack at $MEDIAGEN_API_URL"
  [ -n "${MEDIAGEN_FAILURE_PROMPT:-}" ] \
    || say "(no MEDIAGEN_FAILURE_PROMPT: the failed-job case is skipped; the local model never fails)"
  cargo test -p mediagen-cli --locked --test it -- --ignored stack::
  phase "$t" "CLI against the stack"
else
  say "MEDIAGEN_API_URL is not set: the CLI's stack tests are skipped, the playground uses the stub API"
fi

# ---- the playground ------------------------------------------------------------------------------
t=$SECONDS
say "playground in headless Chromium (${MEDIAGEN_API_URL:-stub API})"
MEDIAGEN_CHROMIUM="$CHROMIUM" "$VENV/bin/python" -m unittest discover -s tests/playground -v
phase "$t" "playground in Chromium"

say "client tests passed in $((SECONDS - started))s; screenshot: target/playground.png"
printf '%s\n' "${timings[@]}" >&2
