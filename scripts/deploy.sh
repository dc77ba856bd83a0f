#!/usr/bin/env bash
# Deploys template.yaml: builds the five functions with `sam build` (cargo lambda, from the
# workspace), deploys the stack to LocalStack (samlocal) or AWS (sam), prints the API URL and
# runs a smoke test against it: submit a job, wait for it, download its image.
#   scripts/deploy.sh localstack|aws [--no-smoke]
# Settings: MEDIAGEN_STACK (stack name, default mediagen), MEDIAGEN_ARCH (arm64 or x86_64),
# MODEL_PROVIDER, REPLICATE_API_TOKEN, LOCALSTACK_URL (default http://localhost:4566),
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
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (usage: scripts/deploy.sh localstack|aws [--no-smoke])" ;;
  esac
done
[ -n "$target" ] || die "say where to deploy: scripts/deploy.sh localstack|aws [--no-smoke]"

started=$SECONDS
ensure_tools
prepare_target "$target"
# The resource names and queue settings the local stack uses: the template's defaults too.
# shellcheck source=local.env
set -a; source "$ROOT/scripts/local.env"; set +a
if [ "${MODEL_PROVIDER:-local}" = replicate ] && [ -z "${REPLICATE_API_TOKEN:-}" ]; then
  die "MODEL_PROVIDER=replicate needs REPLICATE_API_TOKEN"
fi

# On AWS, Graviton (arm64) unless told otherwise. LocalStack runs the functions in Docker
# containers of their architecture, so there it must be the Docker host's.
if [ "$target" = localstack ]; then arch=${MEDIAGEN_ARCH:-$(host_arch)}; else arch=${MEDIAGEN_ARCH:-arm64}; fi
if [ "$target" = localstack ] && [ "$arch" != "$(host_arch)" ]; then
  say "warning: functions for $arch on a $(host_arch) Docker host run only if the host emulates $arch (binfmt/QEMU)"
fi

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

build_functions "$arch"

overrides=(
  "Architecture=$arch"
  "TableName=$MEDIAGEN_TABLE"
  "QueueName=$MEDIAGEN_QUEUE"
  "DeadLetterQueueName=$MEDIAGEN_DEAD_LETTER_QUEUE"
  "BucketName=$bucket"
  "MaxReceiveCount=$MAX_RECEIVE_COUNT"
  "WebhooksQueueName=$MEDIAGEN_WEBHOOKS_QUEUE"
  "WebhooksDeadLetterQueueName=$MEDIAGEN_WEBHOOKS_DEAD_LETTER_QUEUE"
  "WebhookSecret=$webhook_secret"
  "ModelProvider=${MODEL_PROVIDER:-local}"
)
if [ -n "${REPLICATE_API_TOKEN:-}" ]; then
  overrides+=("ReplicateApiToken=$REPLICATE_API_TOKEN")
fi
if [ "$target" = localstack ]; then
  # Presigned URLs must name an address the client (this machine) reaches LocalStack's S3 at.
  overrides+=("PresignEndpointUrl=$LOCALSTACK_URL")
fi

say "deploying stack $STACK to $target (account $ACCOUNT, region $REGION)"
"$SAM" deploy \
  --stack-name "$STACK" \
  --resolve-s3 \
  --capabilities CAPABILITY_IAM \
  --no-confirm-changeset \
  --no-fail-on-empty-changeset \
  --parameter-overrides "${overrides[@]}"

url=$(api_url)
[ -n "$url" ] || die "stack $STACK has no API outputs; see the deploy output above"
say "the API is at $url"

if $smoke; then
  say "smoke test: submit a job, wait for it, download its image"
  py "$ROOT/scripts/smoke.py" "$url" --out "$ROOT/out" --timeout "${MEDIAGEN_SMOKE_TIMEOUT:-300}"
fi
say "deployed in $((SECONDS - started))s; the API is at $url"
