#!/usr/bin/env bash
# Cluster: the cost of a room whose members are split across two nodes over NATS, against the
# same room on one node. ROOMS (10) rooms x MEMBERS (200) members, one REST publisher per room,
# RATE (100) messages/s in all, for DURATION (5) s after WARMUP (1) s, REPS (3) fresh runs each.
#   one:   one node, one shard, every member on it;
#   split: two nodes of one shard each (--nodes 2) and nats-server, members alternating between
#          the nodes (loadgen --ws-url), the REST posts on node 0; every room's owner is on one
#          node, so half of each room's deliveries cross NATS (once per message and node).
# Every server process (the node(s), nats-server) runs on SERVER_CPU, the loadgen on LOADGEN_CPU;
# CPU per delivery is theirs together (loadgen --server-pid/--also-pids).
# Usage: perf/scenarios/cluster.sh   (needs target/release/{roomcast,loadgen} and nats-server)
source "$(dirname "$0")/common.sh"
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-200}
RATE=${RATE:-100}
NATS=${NATS:-$(command -v nats-server || echo /usr/sbin/nats-server)}
SECRET=perf-cluster-secret
LG_COMMON=(--target roomcast --connections $((ROOMS * MEMBERS)) --rooms "$ROOMS" --publishers-per-room 1
  --rate "$RATE" --duration "${DURATION:-5}" --warmup "${WARMUP:-1}" --payload-bytes "${PAYLOAD:-64}"
  --http-conns "${HTTP_CONNS:-32}" --threads 1)

wait_port() {
  local i
  for i in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

node() { # node PORT DIR [cluster args...]
  local port=$1 dir=$2
  shift 2
  taskset -c "$SERVER_CPU" "$BIN/roomcast" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
    --durability "${DURABILITY:-none}" --shards 1 --no-pin-cpus --jwt-secret "$SECRET" \
    --http-connections-per-ip-max 100000 "$@" >"$dir.log" 2>&1 &
}

run_one() { # run_one MODE REP
  local mode=$1 rep=$2 base=$((PORT_BASE + 10 * rep))
  local d0 d1 pids=() also=() ws=()
  d0=$(mktemp -d)
  d1=$(mktemp -d)
  printf '%s' "$SECRET" >"$d0/secret"
  if [[ $mode == one ]]; then
    node "$base" "$d0"
    pids+=($!)
    wait_port "$base"
  else
    taskset -c "$SERVER_CPU" "$NATS" -a 127.0.0.1 -p $((base + 5)) >"$d0.nats.log" 2>&1 &
    local nats=$!
    pids+=($nats)
    wait_port $((base + 5))
    local cl=(--cluster-url "nats://127.0.0.1:$((base + 5))" --nodes 2)
    node "$base" "$d0" "${cl[@]}" --node 0
    pids+=($!)
    node $((base + 1)) "$d1" "${cl[@]}" --node 1
    pids+=($!)
    wait_port "$base"
    wait_port $((base + 1))
    # Both nodes see each other before the run.
    until curl -s "http://127.0.0.1:$base/healthz" | grep -q '"status":"ok"'; do sleep 0.1; done
    ws=(--ws-url "http://127.0.0.1:$base,http://127.0.0.1:$((base + 1))")
    also=(--also-pids "${pids[2]},$nats")
  fi
  local main=${pids[-1]}
  [[ $mode == split ]] && main=${pids[1]}
  local f="$OUT_DIR/cluster-$mode-$rep.jsonl"
  taskset -c "$LOADGEN_CPU" timeout 300 "$BIN/loadgen" "${LG_COMMON[@]}" --url "http://127.0.0.1:$base" \
    --secret-file "$d0/secret" --server-pid "$main" "${also[@]}" "${ws[@]}" >"$f" 2>"$f.err" ||
    { echo "loadgen failed:" >&2; tail -5 "$f.err" >&2; }
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$d0" "$d1" "$d0.log" "$d1.log" "$d0.nats.log"
  echo "$f"
}

for mode in one split; do
  for rep in $(seq 1 "$REPS"); do
    log "cluster $mode rep $rep/$REPS"
    run_one "$mode" "$rep" >>"$OUT_DIR/files-$mode"
    sleep 1
  done
done
python3 - "$OUT_DIR" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| mode | deliveries/s | delivered | CPU µs/delivery (all server processes) | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|")
for mode in ("one", "split"):
    rows = []
    for f in (out / f"files-{mode}").read_text().split():
        lines = [json.loads(l) for l in pathlib.Path(f).read_text().splitlines() if l.strip()]
        if lines:
            rows.append(lines[-1])
    if not rows:
        print(f"| {mode} | failed | | | | |")
        continue
    med = lambda xs: statistics.median(xs)
    dps = med([r["deliveries_per_s"] for r in rows])
    ratio = med([r["delivery_ratio"] for r in rows])
    cpu = med([r["server"]["cpu_us_per_delivery"] for r in rows if r.get("server")])
    p50 = med([r["latency_us"]["p50"] for r in rows]) / 1000
    p99 = med([r["latency_us"]["p99"] for r in rows]) / 1000
    print(f"| {mode} ({len(rows)} runs) | {dps:.0f} | {ratio:.3f} | {cpu:.2f} | {p50:.2f} | {p99:.2f} |")
PY
