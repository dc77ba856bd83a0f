#!/usr/bin/env bash
# Every provider end to end (docs/models.md): a local stack of its own whose catalogue
# (tests/providers/models.toml) holds the local model and a model of each paid provider, each
# served by its stand-in (mediagen-dev mock-replicate, mock-openai, mock-bedrock), through the
# real functions: a job per provider, a fallback, a 120 s model, a cancel, a content filter, and
# 600 jobs against Replicate's rate (functions/devtools/tests/it/providers.rs, replicate_model.rs);
# and a slow job's progress stream read over plain HTTP (stream.rs). scripts/test.sh runs it beside
# the LocalStack deploy: it is mostly waiting, for the slow model and for the 600 jobs' pace.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_tools
started=$SECONDS
mkdir -p "$STATE"
say "providers: the stand-ins of Replicate, OpenAI and Bedrock"
cargo build --workspace --bins --locked
# Replicate's limit on creates, as tests/providers/models.toml declares it, with a burst of 20.
start_mock replicate --token test-token --rate-per-minute 120 --burst 20
export REPLICATE_MOCK_URL=$MOCK_URL REPLICATE_API_TOKEN=test-token REPLICATE_API_BASE_URL="$MOCK_URL/v1"
start_mock openai --token test-openai-key
export OPENAI_MOCK_URL=$MOCK_URL OPENAI_API_KEY=test-openai-key OPENAI_API_BASE_URL="$MOCK_URL/v1"
start_mock bedrock
# Bedrock is the one AWS service the emulators do not serve: its SDK client goes to the stand-in.
export BEDROCK_MOCK_URL=$MOCK_URL AWS_ENDPOINT_URL_BEDROCK_RUNTIME=$MOCK_URL
export MODEL_PROVIDER=local,replicate,openai,bedrock MODEL_CATALOGUE="$ROOT/tests/providers/models.toml"
# Past the 600 jobs' five minutes at 120 a minute; short of 40 jobs at 6 a minute.
export MAX_PROVIDER_WAIT_SECONDS=330
# A progress stream's heartbeat, short enough for stream:: to see some while a slow model runs.
export STREAM_HEARTBEAT_SECONDS=2
say "providers: a stack of its own"
start_own_stack
MEDIAGEN_API_URL="$API_URL" MEDIAGEN_PUMP_LOG="$STATE/pump.log" MEDIAGEN_RATE_REPORT="$STATE/rate.json" \
  cargo test -p mediagen-devtools --locked --test it -- --ignored replicate_model:: providers:: stream::
say "providers: what the stand-in Replicate saw of the 600 jobs: $(cat "$STATE/rate.json")"
stop_stack
say "providers run passed in $((SECONDS - started))s"
