#!/usr/bin/env bash
# `make deploy`: deploys the built stack (.aws-sam/build) to kpi-integrations-$STAGE
# with `sam deploy`, without a prompt. The Makefile builds first and passes its
# variables in the environment; docs/deploy.md explains them.
#
# Parameters come from the variables that are set. On an update, a parameter
# left out keeps the value the stack already has.
#
# Without PUBLIC_URL and DOMAIN_NAME, a new stack is deployed twice: first with
# a placeholder public URL, then with the API's own URL (the ApiUrl output). The
# URL cannot be given to the functions in one step: the API's routes name the
# functions, so a reference from the functions back to the API would be circular.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${STAGE:?STAGE is required, e.g. make deploy STAGE=prod}"
stack="kpi-integrations-$STAGE"
placeholder="https://placeholder.invalid"

region=()
if [ -n "${REGION:-}" ]; then region=(--region "$REGION"); fi

# The value of one output of the stack; empty when the stack or output does not exist.
output() {
  sam list stack-outputs --stack-name "$stack" "${region[@]}" --output json 2>/dev/null |
    python3 -c 'import json, sys
text = sys.stdin.read().strip()
outputs = {o["OutputKey"]: o["OutputValue"] for o in json.loads(text)} if text else {}
print(outputs.get(sys.argv[1], ""))' "$1" || true
}

params=("Stage=$STAGE")
set_param() { if [ -n "$2" ]; then params+=("$1=$2"); fi; }
set_param AuthJwksUrl "${AUTH_JWKS_URL:-}"
set_param AuthIssuer "${AUTH_ISSUER:-}"
set_param AuthAudience "${AUTH_AUDIENCE:-}"
set_param AuthWorkspacesClaim "${AUTH_WORKSPACES_CLAIM:-}"
set_param AuthAdminClaim "${AUTH_ADMIN_CLAIM:-}"
set_param OidcIssuer "${OIDC_ISSUER:-}"
set_param OidcClientId "${OIDC_CLIENT_ID:-}"
set_param CorsOrigins "${CORS_ORIGINS:-}"
set_param DomainName "${DOMAIN_NAME:-}"
set_param CertificateArn "${CERTIFICATE_ARN:-}"
set_param AlarmTopicArn "${ALARM_TOPIC_ARN:-}"
set_param PublicFunctionConcurrency "${PUBLIC_FUNCTION_CONCURRENCY:-}"
set_param LogRetentionDays "${LOG_RETENTION_DAYS:-}"

deploy() {
  echo "sam deploy --stack-name $stack ${region[*]} --parameter-overrides ${params[*]} $*"
  sam deploy --stack-name "$stack" "${region[@]}" \
    --no-confirm-changeset --no-fail-on-empty-changeset \
    --parameter-overrides "${params[@]}" "$@"
}

if [ -n "${PUBLIC_URL:-}" ] || [ -n "${DOMAIN_NAME:-}" ]; then
  deploy ${PUBLIC_URL:+"PublicUrl=$PUBLIC_URL"}
else
  current="$(output PublicUrl)"
  if [ -z "$current" ]; then
    for name in AUTH_JWKS_URL AUTH_ISSUER AUTH_AUDIENCE; do
      if [ -z "${!name:-}" ]; then
        echo "$stack does not exist yet: $name is required (see docs/deploy.md)" >&2
        exit 1
      fi
    done
    echo "$stack is new and neither PUBLIC_URL nor DOMAIN_NAME is set:"
    echo "step 1 of 2: deploy with the placeholder PublicUrl $placeholder"
    deploy "PublicUrl=$placeholder"
    current="$placeholder"
  fi
  if [ "$current" = "$placeholder" ]; then
    api="$(output ApiUrl)"
    if [ -z "$api" ]; then
      echo "no ApiUrl output on $stack: deploy again with PUBLIC_URL set" >&2
      exit 1
    fi
    echo "step 2 of 2: deploy again with PublicUrl = the ApiUrl output, $api"
    deploy "PublicUrl=$api"
  else
    echo "PublicUrl stays $current"
    deploy
  fi
fi

echo
echo "Outputs of $stack (paste them as docs/deploy.md says):"
sam list stack-outputs --stack-name "$stack" "${region[@]}" --output table
