#!/usr/bin/env bash
# Removes the stack scripts/deploy.sh made: empties its media bucket (CloudFormation deletes
# only an empty bucket), then deletes the stack and the artifacts SAM uploaded for it.
#   scripts/destroy.sh localstack|aws [--yes]
# On AWS it asks first, unless --yes. MEDIAGEN_STACK names the stack (default mediagen).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/deploy-lib.sh"
cd "$ROOT"

target=""
yes=false
for arg in "$@"; do
  case $arg in
    localstack | aws) target=$arg ;;
    --yes) yes=true ;;
    -h | --help) sed -n '2,5p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (usage: scripts/destroy.sh localstack|aws [--yes])" ;;
  esac
done
[ -n "$target" ] || die "say what to remove: scripts/destroy.sh localstack|aws [--yes]"

ensure_tools
prepare_target "$target"
if [ "$target" = localstack ] && ! $LOCALSTACK_UP; then
  say "LocalStack (without Docker) is not running, and it keeps no state: nothing to remove"
  exit 0
fi

status=$(stack_output status)
if [ -z "$status" ]; then
  say "no stack $STACK in $target (account $ACCOUNT, region $REGION); nothing to remove"
  exit 0
fi
bucket=$(stack_output BucketName)

if [ "$target" = aws ] && ! $yes; then
  [ -t 0 ] || die "not a terminal: pass --yes to delete stack $STACK in account $ACCOUNT ($REGION)"
  read -r -p "Delete stack $STACK ($status) in account $ACCOUNT ($REGION), its table, queues and every image in $bucket? [y/N] " answer
  [ "$answer" = y ] || [ "$answer" = Y ] || die "nothing deleted"
fi

if [ -n "$bucket" ]; then
  say "emptying bucket $bucket"
  py -c '
import boto3, sys
bucket = boto3.resource("s3").Bucket(sys.argv[1])
try:
    bucket.object_versions.delete()
    bucket.objects.delete()
except boto3.exceptions.botocore.exceptions.ClientError as err:
    if err.response["Error"]["Code"] != "NoSuchBucket":
        raise
' "$bucket"
fi

say "deleting stack $STACK"
if [ "$target" = localstack ]; then
  # LocalStack deletes a stack in about a second, but `sam delete` polls every 30 s; SAM's
  # artifacts bucket there goes with LocalStack's state.
  py -c '
import boto3, sys, time
cloudformation = boto3.client("cloudformation")
cloudformation.delete_stack(StackName=sys.argv[1])
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        status = cloudformation.describe_stacks(StackName=sys.argv[1])["Stacks"][0]["StackStatus"]
    except cloudformation.exceptions.ClientError as err:
        if "does not exist" in str(err):
            sys.exit(0)
        raise
    if status == "DELETE_COMPLETE":
        sys.exit(0)
    if status == "DELETE_FAILED":
        sys.exit(f"stack {sys.argv[1]}: DELETE_FAILED")
    time.sleep(1)
sys.exit(f"stack {sys.argv[1]} still {status} after 300 s")
' "$STACK"
else
  "$SAM" delete --stack-name "$STACK" --region "$REGION" --no-prompts
fi
say "stack $STACK removed from $target"
