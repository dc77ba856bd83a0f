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
"$SAM" delete --stack-name "$STACK" --region "$REGION" --no-prompts
say "stack $STACK removed from $target"
