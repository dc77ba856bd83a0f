#!/usr/bin/env bash
# Runs the whole service locally without Docker: DynamoDB Local and moto server as AWS, the HTTP
# functions behind the local API Gateway, the SQS-triggered ones under their event-source
# stand-ins; then submits a demo job and writes its image to out/. Keeps running until Ctrl-C,
# rebuilding the functions on every edit; with --once, stops after the demo. With --watch, every
# function runs under `cargo lambda watch` instead (docs/local-stack.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

once=false runner=gateway
for arg in "$@"; do
  case $arg in
    --once) once=true ;;
    --watch) runner=watch ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (try --once or --watch)" ;;
  esac
done

started=$SECONDS
ensure_tools
say "starting the emulators: moto server on 127.0.0.1:${MEDIAGEN_EMULATOR_PORT:-4566}, DynamoDB Local on the next port"
start_emulator "${MEDIAGEN_EMULATOR_PORT:-4566}"
aws_env
start_stack "${MEDIAGEN_API_PORT:-9000}" "$runner"

say "your local API key (kept in ${KEY_FILE#$ROOT/}): $MEDIAGEN_API_KEY"
say "submitting a demo job"
"$STACK_BIN/mediagen-dev" demo --api "$API_URL" --out "$ROOT/out"
say "demo done in $((SECONDS - started))s"

if $once; then
  exit 0
fi
# Each function's next invocation after a rebuild starts its new binary
# (functions/devtools/src/runtime_api.rs); cargo lambda watch rebuilds its functions itself.
if [ "$runner" = gateway ]; then
  start_bg "$STATE/rebuild.log" watchfiles --filter default "${BUILD_COMMAND[*]}" functions Cargo.toml Cargo.lock
fi
cat >&2 <<EOT

The service runs at $API_URL. Try:
  export MEDIAGEN_API_KEY=\$(cat ${KEY_FILE#$ROOT/})
  curl -s -X POST $API_URL/media/generate -H "authorization: Bearer \$MEDIAGEN_API_KEY" \\
       -H 'content-type: application/json' -d '{"prompt":"a red fox in the snow","width":512,"height":512}'
  curl -s $API_URL/media/status/<job_id> -H "authorization: Bearer \$MEDIAGEN_API_KEY"
Edit the code: the functions are rebuilt (.local/dev/rebuild.log, or functions.log under --watch) and the next request runs the new build.
Logs: .local/dev/functions.log, .local/dev/pump.log, .local/dev/pump-webhooks.log. Ctrl-C stops everything.
EOT
wait
