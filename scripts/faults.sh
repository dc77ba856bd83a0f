#!/usr/bin/env bash
# The store faults run (docs/design.md, "Failure rules"): 200 jobs through a local stack of its
# own while DynamoDB's emulator is paused (SIGSTOP) for 10 s, then again while the SQS emulator
# is; every answer must be a 2xx or a clean problem+json 503, and every accepted job must end
# final with its images (scripts/faults.py). scripts/test.sh runs it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_tools
started=$SECONDS
say "faults: a stack of its own"
# A batch whose claims failed while DynamoDB was paused comes back after its visibility timeout.
start_own_stack
# start_emulator starts DynamoDB Local first, when it is installed; moto serves SQS and S3 (and
# DynamoDB too without Java).
moto_pid=${EMULATOR_PIDS[-1]}
dynamodb_pid=${EMULATOR_PIDS[0]}
for fault in "dynamodb $dynamodb_pid" "sqs $moto_pid"; do
  set -- $fault
  say "faults: ${FAULT_JOBS:-200} jobs while the $1 emulator is paused for ${FAULT_SECONDS:-10} s"
  "$VENV/bin/python" scripts/faults.py --api "$API_URL" --pause-pid "$2" --what "$1" \
    --jobs "${FAULT_JOBS:-200}" --pause "${FAULT_SECONDS:-10}"
done
stop_stack
say "faults run passed in $((SECONDS - started))s"
