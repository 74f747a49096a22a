#!/usr/bin/env bash
# Soak: DURATION s (default 600) of connection churn against roomcast (RATE new authenticated
# WebSockets per second, each living LIFE_MIN_MS..LIFE_MAX_MS, a share posting through REST),
# plus slow readers and silent sockets (see perf/loadgen/src/bin/soak.rs). Samples the server's
# RSS, fd count and open connections every SAMPLE_S s into soak.csv, keeps sampling POST_S s
# after the churn stops, saves the final /metrics, and prints a summary.
# Usage: perf/scenarios/soak.sh   (DURATION, RATE, SAMPLE_S, POST_S, SOAK_ARGS to change)
# The server is roomcast with --durability none (as in the other scenarios), --shards 1, pinned,
# plus RC_ARGS (default --history-per-room-max 100).
SERVER=roomcast
# The in-memory history (10 000 messages per room by default) grows by design until full; a
# window of 100 fills in the first minute, so later growth is not the history filling up.
RC_ARGS=${RC_ARGS:---history-per-room-max 100}
source "$(dirname "$0")/common.sh"
DURATION=${DURATION:-600}
RATE=${RATE:-1000}
SAMPLE_S=${SAMPLE_S:-10}
POST_S=${POST_S:-30}
SOAK_ARGS=${SOAK_ARGS:-}

build
PORT=$((PORT_BASE + 50))
start_server "$PORT"
CSV="$OUT_DIR/soak.csv"
log "soak: server pid $SERVER_PID on port $PORT, ${DURATION}s at $RATE conn/s; out $OUT_DIR"

metric() { # metric NAME: the value summed over shards from a saved /metrics text on stdin
  awk -v n="$1" '$1 ~ "^"n"\\{" { s += $2 } END { print s + 0 }'
}
sample() { # one CSV row: t_s, rss_kb, fds, connections, websockets, http_phase_connections
  local t=$1 rss fds m
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
  fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
  m=$(curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" || true)
  echo "$t,$rss,$fds,$(metric roomcast_connections <<<"$m"),$(metric roomcast_websockets <<<"$m"),$(metric roomcast_http_phase_connections <<<"$m")"
}

echo "t_s,rss_kb,fds,connections,websockets,http_phase" >"$CSV"
T0=$(date +%s)
sample 0 >>"$CSV"
taskset -c "$LOADGEN_CPU" timeout $((DURATION + 120)) "$BIN/soak" --url "http://127.0.0.1:$PORT" \
  --secret-file "$DATA_DIR/jwt_secret" --duration "$DURATION" --rate "$RATE" $SOAK_ARGS \
  >"$OUT_DIR/soak.json" 2>"$OUT_DIR/soak.err" &
LG_PID=$!
NEXT=$SAMPLE_S
while kill -0 "$LG_PID" 2>/dev/null; do
  sleep 1
  T=$(($(date +%s) - T0))
  if ((T >= NEXT)); then
    sample "$T" >>"$CSV"
    NEXT=$((NEXT + SAMPLE_S))
  fi
done
wait "$LG_PID" || log "soak loadgen exited with $?"
END_LG=$(($(date +%s) - T0))
log "loadgen done at ${END_LG}s; sampling ${POST_S}s more with no client"
while (($(date +%s) - T0 < END_LG + POST_S)); do
  sleep 1
  T=$(($(date +%s) - T0))
  if ((T >= NEXT)); then
    sample "$T" >>"$CSV"
    NEXT=$((NEXT + SAMPLE_S))
  fi
done
sample "$(($(date +%s) - T0))" >>"$CSV"
curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$OUT_DIR/metrics-end.txt" || true
stop_server

python3 - "$CSV" "$OUT_DIR/metrics-end.txt" "$OUT_DIR/soak.json" "$DURATION" <<'EOF'
import csv, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
dur = float(sys.argv[4])
for r in rows:
    for k in r:
        r[k] = float(r[k] or 0)
churn = [r for r in rows if r["t_s"] <= dur]
mid = churn[len(churn) // 2]
def show(label, r):
    print(f"| {label} | {r['t_s']:.0f} | {r['rss_kb']/1024:.1f} | {r['fds']:.0f} | {r['connections']:.0f} | {r['websockets']:.0f} |")
print("| point | t s | RSS MiB | fds | connections | websockets |")
print("|---|---|---|---|---|---|")
show("start", rows[0]); show("first sample under churn", churn[1] if len(churn) > 1 else churn[0])
show("middle", mid); show("end of churn", churn[-1]); show("after the run", rows[-1])
mx = max(churn, key=lambda r: r["rss_kb"]); show("max RSS", mx)
mf = max(churn, key=lambda r: r["fds"]); show("max fds", mf)
half = [r for r in churn if r["t_s"] >= dur / 2]
def slope(key):
    n = len(half); xs = [r["t_s"] for r in half]; ys = [r[key] for r in half]
    mx_, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx_) ** 2 for x in xs)
    return sum((x - mx_) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
print(f"\nslope over the last half of the churn ({len(half)} samples): RSS {slope('rss_kb')*60:+.1f} KiB/min, fds {slope('fds')*60:+.2f} /min")
print("\nsample every 60 s:\n")
print("| t s | RSS MiB | fds | connections | websockets | http phase |")
print("|---|---|---|---|---|---|")
for r in rows:
    if int(r["t_s"]) % 60 == 0 or r is rows[-1]:
        print(f"| {r['t_s']:.0f} | {r['rss_kb']/1024:.1f} | {r['fds']:.0f} | {r['connections']:.0f} | {r['websockets']:.0f} | {r['http_phase']:.0f} |")
want = ["connections_accepted_total", "connections", "websockets", "http_requests_total",
        "timeouts_total", "slow_consumer_closes_total", "http_keepalive_closes_total",
        "protocol_errors_total", "auth_failures_total", "auth_cache_tokens", "rate_limited_total",
        "accept_errors_total", "connections_refused_total", "http_refused_ip_cap_total",
        "http_refused_shard_cap_total", "user_connection_limit_refused_total", "users",
        "events_delivered_total", "store_batches_total"]
tot = {}
for line in open(sys.argv[2]):
    if line.startswith("roomcast_") and "{" in line:
        name = line[len("roomcast_"):line.index("{")]
        tot[name] = tot.get(name, 0) + float(line.split()[-1])
print("\n/metrics at the end:", ", ".join(f"{k} {tot.get(k, 0):.0f}" for k in want))
try:
    lg = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
    print("\nsoak loadgen:", json.dumps(lg))
except Exception as e:
    print("no soak summary:", e)
EOF
