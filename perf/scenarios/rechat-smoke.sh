#!/usr/bin/env bash
# Sanity check of the loadgen's Rechat target (not a measurement): a small run against roomcast
# with a short Engine.IO ping interval (300 ms, so every socket must answer several pings or be
# dropped), once per authentication mode; fails unless every message was acknowledged and
# delivered, with no error and no duplicate. A few seconds.
# Usage: perf/scenarios/rechat-smoke.sh   (SKIP_BUILD=1, BIN as in common.sh)
SERVER=roomcast-rechat
REPS=1
RC_ARGS="${RC_ARGS:-} --rechat-ping-interval-ms 300 --rechat-ping-timeout-ms 300"
source "$(dirname "$0")/common.sh"
build
status=0
for auth in connect event; do
  RECHAT_AUTH=$auth
  start_server $((PORT_BASE + 50))
  f="$OUT_DIR/rechat-smoke-$auth.jsonl"
  loadgen "$f" --connections 200 --rooms 20 --publishers-per-room 1 --rate 100 \
    --duration 2 --warmup 1 || status=1
  stop_server
  python3 - "$f" "$auth" <<'PY' || status=1
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
ok = (r["connected"] == r["connections"] and r["sent_in_window"] > 0 and r["deliveries"] > 0
      and r["deliveries"] == r["expected_deliveries"] and r["errors"] == 0
      and r["duplicate_deliveries"] == 0)
print(f"rechat smoke ({sys.argv[2]}): {'ok' if ok else 'FAILED'}: connected {r['connected']}, "
      f"sent {r['sent_in_window']}, deliveries {r['deliveries']}/{r['expected_deliveries']}, "
      f"errors {r['errors']} {r['error_kinds']}")
sys.exit(0 if ok else 1)
PY
done
exit $status
