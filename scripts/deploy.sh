#!/usr/bin/env bash
# Deploys template.yaml: builds the five functions with `sam build` (cargo lambda, from the
# workspace), deploys the stack to LocalStack (samlocal) or AWS (sam), prints the API URL and
# runs a smoke test against it: submit a job, wait for it, download its image.
#   scripts/deploy.sh localstack|aws [--no-smoke]
# LocalStack runs in Docker where a Docker engine answers (start it yourself:
# localstack/docker-compose.yml), else on the host: this script starts it (scripts/localstack.sh;
# stop it with scripts/localstack.sh stop) and its functions run as host processes.
# Settings: MEDIAGEN_STACK (stack name, default mediagen), MEDIAGEN_ARCH (arm64 or x86_64),
# MODEL_PROVIDER, REPLICATE_API_TOKEN, OPENAI_API_KEY, MEDIAGEN_LOCALSTACK (docker or host), LOCALSTACK_URL (a
# LocalStack running elsewhere), MEDIAGEN_BUILD_MODE (release or debug; LocalStack's default is
# debug, AWS's release), MEDIAGEN_API_KEY (sent by the smoke test as a bearer token),
# MEDIAGEN_WEBHOOK_SECRET (the stack's webhook master key; made once and kept when unset).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/deploy-lib.sh"
cd "$ROOT"

target=""
smoke=true
for arg in "$@"; do
  case $arg in
    localstack | aws) target=$arg ;;
    --no-smoke) smoke=false ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (usage: scripts/deploy.sh localstack|aws [--no-smoke])" ;;
  esac
done
[ -n "$target" ] || die "say where to deploy: scripts/deploy.sh localstack|aws [--no-smoke]"

started=$SECONDS
ensure_tools
# On AWS, Graviton (arm64) unless told otherwise. LocalStack runs the functions in Docker
# containers of their architecture, or as host processes, so there it must be the host's.
if [ "$target" = localstack ]; then
  resolve_localstack_mode
  arch=${MEDIAGEN_ARCH:-$(host_arch)}
else
  arch=${MEDIAGEN_ARCH:-arm64}
fi
if [ "$target" = localstack ] && [ "$arch" != "$(host_arch)" ]; then
  [ "$LOCALSTACK_MODE" != host ] \
    || die "MEDIAGEN_ARCH=$arch: LocalStack without Docker runs the functions as processes of this $(host_arch) machine; build for $(host_arch)"
  say "warning: functions for $arch on a $(host_arch) Docker host run only if the host emulates $arch (binfmt/QEMU)"
fi
# A debug build is enough to prove the stack on LocalStack, and far quicker to make than the
# release profile (fat LTO); AWS gets the release build.
if [ "$target" = localstack ]; then export MEDIAGEN_BUILD_MODE=${MEDIAGEN_BUILD_MODE:-debug}; fi

prepare_target "$target" start
# The resource names and queue settings the local stack uses: the template's defaults too.
# shellcheck source=local.env
set -a; source "$ROOT/scripts/local.env"; set +a
case ",${MODEL_PROVIDER:-local}," in
  *,replicate,*) [ -n "${REPLICATE_API_TOKEN:-}" ] || die "MODEL_PROVIDER with replicate needs REPLICATE_API_TOKEN" ;;
esac
case ",${MODEL_PROVIDER:-local}," in
  *,openai,*) [ -n "${OPENAI_API_KEY:-}" ] || die "MODEL_PROVIDER with openai needs OPENAI_API_KEY" ;;
esac

bucket=$MEDIAGEN_BUCKET
if [ "$target" = aws ]; then
  # Bucket names are global; the stack's must not collide with anyone else's.
  bucket="$MEDIAGEN_BUCKET-$ACCOUNT-$REGION"
fi

# The master key of the stack's webhook signatures, never the local stack's public one: given,
# or made once per target and stack and kept readable by you only, since every owner's secret
# derives from it and changes if it does.
webhook_secret_file="$ROOT/.local/webhook-secret-$target-$STACK"
if [ -n "${MEDIAGEN_WEBHOOK_SECRET:-}" ]; then
  webhook_secret=$MEDIAGEN_WEBHOOK_SECRET
elif [ -f "$webhook_secret_file" ]; then
  webhook_secret=$(cat "$webhook_secret_file")
else
  mkdir -p "$(dirname "$webhook_secret_file")"
  webhook_secret=$(umask 077 && py -c 'import base64, os; print("whsec_" + base64.b64encode(os.urandom(32)).decode())' \
    | tee "$webhook_secret_file")
  say "made the stack's webhook master key, kept in ${webhook_secret_file#$ROOT/}"
fi

# The key that signs the Replicate-compatible API's file links, made and kept the same way.
file_url_secret_file="$ROOT/.local/file-url-secret-$target-$STACK"
if [ ! -f "$file_url_secret_file" ]; then
  mkdir -p "$(dirname "$file_url_secret_file")"
  (umask 077 && py -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file_url_secret_file")
fi

build_started=$SECONDS
build_functions "$arch"
build_seconds=$((SECONDS - build_started))

overrides=(
  "Architecture=$arch"
  "TableName=$MEDIAGEN_TABLE"
  "QueueName=$MEDIAGEN_QUEUE"
  "DeadLetterQueueName=$MEDIAGEN_DEAD_LETTER_QUEUE"
  "BucketName=$bucket"
  "MaxReceiveCount=$MAX_RECEIVE_COUNT"
  "WebhooksQueueName=$MEDIAGEN_WEBHOOKS_QUEUE"
  "WebhooksDeadLetterQueueName=$MEDIAGEN_WEBHOOKS_DEAD_LETTER_QUEUE"
  "ModelProvider=${MODEL_PROVIDER:-local}"
)
# keep_secret NAME VALUE: the value goes to SSM Parameter Store as a SecureString, /STACK/NAME; the
# functions get only its name, and read it at cold start (docs/design.md, "Configuration").
keep_secret() {
  SECRET_VALUE="$2" py -c 'import os, sys, boto3
boto3.client("ssm", region_name=sys.argv[2]).put_parameter(
    Name=sys.argv[1], Value=os.environ["SECRET_VALUE"], Type="SecureString", Overwrite=True)' \
    "/$STACK/$1" "$REGION" || die "could not store the $1 in SSM as /$STACK/$1"
}
keep_secret webhook-secret "$webhook_secret"
keep_secret file-url-secret "$(cat "$file_url_secret_file")"
overrides+=("WebhookSecretParameter=/$STACK/webhook-secret" "FileUrlSecretParameter=/$STACK/file-url-secret")
if [ -n "${REPLICATE_API_TOKEN:-}" ]; then
  keep_secret replicate-api-token "$REPLICATE_API_TOKEN"
  overrides+=("ReplicateApiTokenParameter=/$STACK/replicate-api-token")
fi
if [ -n "${OPENAI_API_KEY:-}" ]; then
  keep_secret openai-api-key "$OPENAI_API_KEY"
  overrides+=("OpenAiApiKeyParameter=/$STACK/openai-api-key")
fi
if [ "${MEDIAGEN_RESERVED_CONCURRENCY:-on}" = off ]; then
  # An account whose quota cannot spare any, such as a new one's 10 (docs/deploy.md, "Concurrency").
  for function in Submit Status Content Generate Deliver Sweeper; do
    overrides+=("${function}ReservedConcurrency=-1")
  done
fi
if [ "$target" = localstack ]; then
  # Presigned URLs must name an address the client (this machine) reaches LocalStack's S3 at.
  overrides+=("PresignEndpointUrl=$LOCALSTACK_URL")
fi

say "deploying stack $STACK to $target${LOCALSTACK_MODE:+ ($LOCALSTACK_MODE, $LOCALSTACK_URL)} (account $ACCOUNT, region $REGION)"
deploy_started=$SECONDS
"$SAM" deploy \
  --stack-name "$STACK" \
  --resolve-s3 \
  --capabilities CAPABILITY_IAM \
  --no-confirm-changeset \
  --no-fail-on-empty-changeset \
  --parameter-overrides "${overrides[@]}"

deploy_seconds=$((SECONDS - deploy_started))

url=$(api_url)
[ -n "$url" ] || die "stack $STACK has no API outputs; see the deploy output above"
say "the API is at $url"

# An API key for the smoke test and for you, made in the deployed table and kept (readable by
# you only) in .local/: a later deploy registers the same key again.
if [ -z "${MEDIAGEN_API_KEY:-}" ]; then
  cargo build -p mediagen-devtools --bins --locked --quiet
  MEDIAGEN_API_KEY=$(JOBS_TABLE=$(stack_output TableName) "$CARGO_TARGET_DIR/debug/mediagen-dev" \
    keys create --owner "${MEDIAGEN_OWNER:-deploy}" --key-file "$ROOT/.local/deploy-$target-api-key")
  export MEDIAGEN_API_KEY
  say "API key in .local/deploy-$target-api-key (mint more: mediagen-dev keys create --owner NAME)"
fi

smoke_seconds=-
if $smoke; then
  say "smoke test: submit a job, wait for it, download its image"
  smoke_started=$SECONDS
  py "$ROOT/scripts/smoke.py" "$url" --out "$ROOT/out" --timeout "${MEDIAGEN_SMOKE_TIMEOUT:-300}"
  smoke_seconds=$((SECONDS - smoke_started))
fi
if [ -n "${MEDIAGEN_TIMINGS_FILE:-}" ]; then
  printf 'build %s\ndeploy %s\nsmoke %s\n' "$build_seconds" "$deploy_seconds" "$smoke_seconds" >>"$MEDIAGEN_TIMINGS_FILE"
fi
say "deployed in $((SECONDS - started))s (build ${build_seconds}s, deploy ${deploy_seconds}s, smoke ${smoke_seconds}s); the API is at $url"
