#!/usr/bin/env bash
# Profiles roomcast during a connect storm (CONNS, default 10 000, CONCURRENCY 1 000 in flight):
# perf record -g of the server while the loadgen opens authenticated WebSockets.
# Usage: perf/profile-connect.sh   (writes perf/out/profile-connect-*/)
SERVER=roomcast
source "$(dirname "$0")/scenarios/common.sh"
CONNS=${CONNS:-10000}
OUT_DIR="$ROOT/perf/out/profile-connect-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT_DIR"
build
port=$((PORT_BASE + 60))
start_server "$port"
trap 'stop_server' EXIT
perf record -e cpu-clock -g -p "$SERVER_PID" -o "$OUT_DIR/perf.data" -- sleep "${RECORD_S:-6}" \
  >/dev/null 2>"$OUT_DIR/record.err" &
REC=$!
sleep 0.5
loadgen "$OUT_DIR/loadgen.jsonl" --idle --connections "$CONNS" --rooms 100 \
  --connect-concurrency "${CONCURRENCY:-1000}" --duration 1 --settle 0.5
echo "server CPU s so far: $(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$SERVER_PID/stat")"
wait "$REC" || true
python3 - "$OUT_DIR/loadgen.jsonl" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("connect_rate", r["connect_rate"], "connect_s", r["connect_s"], "setup_s", r["setup_s"],
      "loadgen_cpu_s", r["loadgen_cpu_s"], "errors", r["errors"])
PY
perf report -i "$OUT_DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed -n 1,6p
perf report -i "$OUT_DIR/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed -n 1,30p
