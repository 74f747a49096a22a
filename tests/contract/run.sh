#!/usr/bin/env bash
# tests/contract/run.sh [BIN]: the REST API's OpenAPI contract test (CI runs it; it runs by hand
# too). Starts BIN (default $ROOMCAST_BIN, else the release build) on a fresh data directory
# and a free loopback port, mints a service token and a user token with `BIN token`, and runs
# schemathesis (`st`, from .venv: pip install -r tests/contract/requirements.txt) over every
# operation of the contract the server serves at /api/v1/openapi.json, once with each token.
# Checks: no 5xx, every status, content type, header and body as documented (errors
# included: `{"error":{"code","message"}}`), schema-violating requests refused with a 4xx
# (tests/contract/schemathesis.toml), 405s with their Allow header, and 401 without a token.
# Exits non-zero on any failure, or if the server died.
#
# Environment: ST (the schemathesis CLI, default .venv/bin/st), CONTRACT_MAX_EXAMPLES (test
# cases per operation and phase, default 30), CONTRACT_SEED (schemathesis --seed, default
# random: the run prints the seed it used), CONTRACT_REPORT_DIR (keep the JUnit reports there).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-${ROOMCAST_BIN:-${CARGO_TARGET_DIR:-target}/release/roomcast}}
st=${ST:-.venv/bin/st}
max_examples=${CONTRACT_MAX_EXAMPLES:-30}
[ -x "$bin" ] || { echo "contract: no server binary at $bin (cargo build --release)" >&2; exit 2; }
[ -x "$st" ] || { echo "contract: no schemathesis at $st (see tests/contract/requirements.txt)" >&2; exit 2; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# Two shards, so that owners answer across the mesh. User writes are not rate limited here:
# the 429 is documented, but a limited user would hide the operations behind it.
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --shards 2 --no-pin-cpus \
  --actions-per-second 1000000 --actions-burst 1000000 >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$url/healthz" >/dev/null

service=$("$bin" token --user contract-backend --role service --data-dir "$work/data")
user=$("$bin" token --user contract-user --data-dir "$work/data")

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance,negative_data_rejection
checks+=,unsupported_method,allow_header_conformance,ignored_auth
# One worker: schemathesis' parallel workers trip a CPython 3.11 bug in ast.parse from threads
# ("AST constructor recursion depth mismatch", a runtime error of the run, not of the server).
args=(--checks "$checks" --max-examples "$max_examples" --workers 1 --request-timeout 10)
[ -n "${CONTRACT_SEED:-}" ] && args+=(--seed "$CONTRACT_SEED")

status=0
for who in service user; do
  if [ "$who" = service ]; then token=$service; else token=$user; fi
  report=()
  if [ -n "${CONTRACT_REPORT_DIR:-}" ]; then
    mkdir -p "$CONTRACT_REPORT_DIR"
    report=(--report junit --report-junit-path "$CONTRACT_REPORT_DIR/$who.xml")
  fi
  echo "--- schemathesis with the $who token"
  "$st" --config-file tests/contract/schemathesis.toml run "$url/api/v1/openapi.json" -H "Authorization: Bearer $token" "${args[@]}" \
    "${report[@]}" || status=1
done

if ! kill -0 "$server" 2>/dev/null; then
  echo "contract: the server died" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 40 lines)"
  tail -n 40 "$work/server.log"
fi
exit "$status"
