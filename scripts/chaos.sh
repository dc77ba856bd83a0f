#!/usr/bin/env bash
# The chaos run (docs/design.md, "Local stack"): jobs through a local stack of its own while the
# generate process is killed (SIGKILL) at random moments; then every job must be final, none
# queued or processing, and the bucket must hold exactly the images of the succeeded jobs.
# CHAOS_JOBS (200) and CHAOS_KILLS (3) set the size; scripts/test.sh runs it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_tools
started=$SECONDS
say "chaos: a stack of its own"
start_own_stack
say "chaos: ${CHAOS_JOBS:-200} jobs, generate killed at least ${CHAOS_KILLS:-3} times"
"$VENV/bin/python" scripts/chaos.py --api "$API_URL" --pump-pid "$PUMP_PID" \
  --jobs "${CHAOS_JOBS:-200}" --kills "${CHAOS_KILLS:-3}" --timeout "${CHAOS_TIMEOUT:-600}"
stop_stack
say "chaos run passed in $((SECONDS - started))s"
