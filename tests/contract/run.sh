#!/usr/bin/env bash
# Contract test: schemathesis generates requests from /openapi.json against the
# real dev server (embedded backends, sandbox providers) and checks that no
# response is a server error and every response matches the spec.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
examples="${CONTRACT_EXAMPLES:-100}"
min_requests="${CONTRACT_MIN_REQUESTS:-1000}"

cargo build --quiet -p dev-server
work="$(mktemp -d /tmp/kpi-contract.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
secret="contract-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
(
  cd "$work"
  KPI_LISTEN="127.0.0.1:$port" KPI_AUTH_DEV_SECRET="$secret" KPI_SANDBOX=on RUST_LOG=warn \
    exec "$target/debug/dev-server" >"$work/server.log" 2>&1
) &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; [ -n "${KEEP_CONTRACT:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
token="$(python3 "$here/mint_token.py" "$secret" demo)"
base="http://127.0.0.1:$port"

# Something to find: one integration of each kind the API can create directly.
curl -fsS -o /dev/null -X POST "$base/v1/workspaces/demo/integrations" \
  -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"provider":"resend","api_key":"re_contract_123456"}'

set +e
# From the scratch folder: schemathesis keeps a cache in its working directory.
# One worker: with two threads, hypothesis parses lambda sources concurrently,
# and CPython 3.11's AST constructor then fails at random ("AST constructor
# recursion depth mismatch"), ending the run with a runtime error.
cd "$work"
st run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "$examples" \
  --phases examples,coverage,fuzzing \
  --seed 20261125 \
  --max-redirects 0 \
  --request-timeout 10 \
  --workers 1 \
  --no-color \
  --report har --report-har-path "$work/requests.har" \
  --warnings off
status=$?
set -e
# Every request sent is an entry of the HAR report.
requests="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["log"]["entries"]))' "$work/requests.har" 2>/dev/null || echo 0)"
echo "contract: schemathesis sent $requests requests (at least $min_requests required), exit $status"
if [ "$status" -ne 0 ]; then
  echo "contract: server log tail:"; tail -20 "$work/server.log"
  exit "$status"
fi
if [ "$requests" -lt "$min_requests" ]; then
  echo "contract: too few requests"
  exit 1
fi
