# Shared by scripts/deploy.sh and scripts/destroy.sh (and the opt-in build of scripts/test.sh):
# the target (LocalStack or AWS) and what it needs, the build, the stack's outputs. Source
# scripts/lib.sh first.
# shellcheck shell=bash

STACK="${MEDIAGEN_STACK:-mediagen}"
# LocalStack: in Docker (localstack/docker-compose.yml, http://localhost:4566) where a Docker
# engine answers, else on the host (scripts/localstack.sh, http://127.0.0.1:4599, functions run
# as host processes). MEDIAGEN_LOCALSTACK=docker|host chooses; a LOCALSTACK_URL of your own
# (and no MEDIAGEN_LOCALSTACK) means a LocalStack already running there, used as it is.
LOCALSTACK_MODE="${MEDIAGEN_LOCALSTACK:-}"
if [ -z "$LOCALSTACK_MODE" ] && [ -n "${LOCALSTACK_URL:-}" ]; then LOCALSTACK_MODE=external; fi
export SAM_CLI_TELEMETRY=0

# Python of .venv/, with boto3 (a dependency of aws-sam-cli).
py() { "$VENV/bin/python" "$@"; }

# prepare_target TARGET [start]: checks what the target needs and sets the environment for it.
# Sets TARGET, SAM (samlocal or sam), REGION, ACCOUNT; for LocalStack also LOCALSTACK_MODE,
# LOCALSTACK_URL and LOCALSTACK_UP (see prepare_localstack).
prepare_target() {
  TARGET=$1
  case $TARGET in
    localstack) prepare_localstack "${2:-}" ;;
    aws) prepare_aws ;;
    *) die "unknown target '$TARGET': use localstack or aws" ;;
  esac
  command -v "$SAM" >/dev/null \
    || die "$SAM not found in .venv/bin: scripts/requirements.txt pins it; remove .venv/.requirements and run again to reinstall the tools"
}

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

# Sets LOCALSTACK_MODE (docker, host or external; see the top of this file) if not yet set.
resolve_localstack_mode() {
  if [ -z "$LOCALSTACK_MODE" ]; then
    if docker_answers; then LOCALSTACK_MODE=docker; else LOCALSTACK_MODE=host; fi
  fi
}

# prepare_localstack [start]: with "start", starts the host-mode LocalStack if it is the one to
# use and is not running (scripts/deploy.sh); without, a stopped one is left stopped and
# LOCALSTACK_UP=false (scripts/destroy.sh: nothing to remove, it keeps no state).
prepare_localstack() {
  SAM=samlocal
  # shellcheck disable=SC2034 # LOCALSTACK_UP is for the scripts that source this file
  LOCALSTACK_UP=true
  resolve_localstack_mode
  case $LOCALSTACK_MODE in
    docker)
      LOCALSTACK_URL="${LOCALSTACK_URL:-http://localhost:4566}"
      docker_answers \
        || die "no Docker engine answers (docker info failed): start Docker, or use LocalStack without Docker (MEDIAGEN_LOCALSTACK=host, scripts/localstack.sh)"
      ;;
    external) ;;
    host)
      # Its port is MEDIAGEN_LOCALSTACK_PORT's (default 4599).
      LOCALSTACK_URL=$("$ROOT/scripts/localstack.sh" url)
      if [ "${1:-}" = start ]; then
        "$ROOT/scripts/localstack.sh" start
      elif ! "$ROOT/scripts/localstack.sh" status >/dev/null; then
        # shellcheck disable=SC2034
        LOCALSTACK_UP=false
        return 0
      fi
      ;;
    *) die "MEDIAGEN_LOCALSTACK=$LOCALSTACK_MODE: use docker or host (or set LOCALSTACK_URL alone)" ;;
  esac
  local health
  health=$(curl -sf "$LOCALSTACK_URL/_localstack/health") \
    || die "LocalStack is not running at $LOCALSTACK_URL: start it with
    LOCALSTACK_AUTH_TOKEN=<your token> docker compose -f localstack/docker-compose.yml up -d --wait
  (LocalStack asks for an account token even for its free edition; see localstack/README.md),
  or without Docker with scripts/localstack.sh start (MEDIAGEN_LOCALSTACK=host),
  or set LOCALSTACK_URL if it listens elsewhere"
  local missing
  missing=$(py -c '
import json, sys
services = json.loads(sys.argv[1]).get("services", {})
needed = "cloudformation iam lambda apigateway dynamodb sqs s3 logs cloudwatch sts events".split()
print(" ".join(s for s in needed if services.get(s) not in ("available", "running")))
' "$health")
  [ -z "$missing" ] \
    || die "LocalStack at $LOCALSTACK_URL does not offer: $missing (SERVICES in localstack/docker-compose.yml)"
  unset AWS_ENDPOINT_URL_DYNAMODB
  export AWS_ENDPOINT_URL="$LOCALSTACK_URL" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="$AWS_REGION" DISABLE_DEPRECATION_NOTICE=1
  REGION=$AWS_REGION
  ACCOUNT=$(py -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])') \
    || die "LocalStack at $LOCALSTACK_URL did not answer sts get-caller-identity"
}

prepare_aws() {
  SAM=sam
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    say "ignoring AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL for the aws target"
    unset AWS_ENDPOINT_URL
  fi
  unset AWS_ENDPOINT_URL_DYNAMODB
  local identity
  identity=$(py -c '
import boto3, botocore.exceptions, os, sys
try:
    session = boto3.Session()
    region = os.environ.get("AWS_REGION") or session.region_name
    if not region:
        sys.exit("no AWS region: set AWS_REGION, or a region in your profile (aws configure)")
    account = session.client("sts", region_name=region).get_caller_identity()["Account"]
except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
    sys.exit("no AWS credentials: set AWS_PROFILE (aws configure, aws sso login) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
    sys.exit(f"the AWS credentials do not work: {err}")
print(account, region)
') || die "AWS is out of reach (see above)"
  # shellcheck disable=SC2034 # ACCOUNT is for the scripts that source this file
  read -r ACCOUNT REGION <<<"$identity"
  export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
}

# stack_output KEY: one output of the deployed stack, or nothing; `stack_output status` is the
# stack's status (CREATE_COMPLETE, ...), or nothing when there is no such stack.
stack_output() {
  py -c '
import boto3, botocore.exceptions, sys
try:
    stack = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0]
except botocore.exceptions.ClientError as err:
    if "does not exist" in str(err):
        sys.exit(0)
    sys.exit(f"cannot read stack {sys.argv[1]}: {err}")
except botocore.exceptions.BotoCoreError as err:
    sys.exit(f"cannot read stack {sys.argv[1]}: {err}")
if sys.argv[2] == "status":
    print(stack["StackStatus"])
else:
    print(next((o["OutputValue"] for o in stack.get("Outputs", []) if o["OutputKey"] == sys.argv[2]), ""))
' "$STACK" "$1"
}

# The API's base URL: API Gateway's on AWS; LocalStack serves every API under one path.
api_url() {
  if [ "$TARGET" = localstack ]; then
    echo "$LOCALSTACK_URL/_aws/execute-api/$(stack_output ApiId)/prod"
  else
    stack_output ApiUrl
  fi
}

host_arch() {
  case $(uname -m) in
    aarch64 | arm64) echo arm64 ;;
    *) echo x86_64 ;;
  esac
}

# build_functions ARCH [BUILD_DIR]: `sam build` of the five functions for ARCH (arm64 or
# x86_64), each `cargo lambda build --release [--arm64] --bin NAME` from the workspace root.
# MEDIAGEN_BUILD_MODE=debug builds without --release (SAM_BUILD_MODE=debug): much quicker than
# the release profile's fat LTO, for LocalStack only; the default is release.
build_functions() {
  local arch=$1 build_dir=${2:-$ROOT/.aws-sam/build} rust_target started=$SECONDS mode=${MEDIAGEN_BUILD_MODE:-release}
  case $arch in
    arm64) rust_target=aarch64-unknown-linux-gnu ;;
    x86_64) rust_target=x86_64-unknown-linux-gnu ;;
    *) die "architecture $arch: use arm64 or x86_64" ;;
  esac
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$rust_target"; then
    say "adding the Rust target $rust_target"
    rustup target add "$rust_target" || die "rustup target add $rust_target failed: cargo lambda needs it to build for $arch"
  fi
  if [ "$arch" != "$(host_arch)" ] && ! command -v zig >/dev/null && ! py -m ziglang version >/dev/null 2>&1; then
    die "zig not found: cargo lambda cross-compiles for $arch with zig (the ziglang package cargo-lambda brings into .venv/)"
  fi
  case $mode in
    release) say "building the functions for $arch with sam build (from scratch: 6 to 12 minutes on 2 cores)" ;;
    debug) say "building the functions for $arch with sam build, debug build (from scratch: about 6 minutes on 2 cores)" ;;
    *) die "MEDIAGEN_BUILD_MODE=$mode: use release or debug" ;;
  esac
  # A debug build without debug info, for LocalStack: it compiles and links sooner, and its
  # binaries are smaller to zip and upload (the tests' own builds keep theirs).
  if [ "$mode" = debug ]; then export CARGO_PROFILE_DEV_DEBUG=0; fi
  SAM_BUILD_MODE=$mode sam build --template "$ROOT/template.yaml" --build-dir "$build_dir" --parameter-overrides "Architecture=$arch"
  say "built in $((SECONDS - started))s: $(cd "$build_dir" && du -h ./*/bootstrap | tr '\n\t' '  ')"
}
