#!/usr/bin/env bash
# Durable ingest: acknowledged messages/s over REST and ack latency, closed-loop posters,
# roomcast with --durability fsync and none, at 1, 10 and 100 posters (one shard pinned to
# CPU 1, the `ingest` loadgen on CPU 0), plus --shards 2 unpinned for fsync at 100 posters.
# Each cell is REPS runs, each on a fresh server and a fresh data directory.
#
# Knobs: DURABILITIES ("fsync none"), POSTERS ("1 10 100"), ROOMS (10, capped at the posters),
# DURATION (5 s), WARMUP (2 s), PAYLOAD (64 bytes), REPS (3), SHARDS2 (1: run the 2-shard case),
# INGEST_PORT_BASE (19600), SKIP_BUILD=1. Raw JSON lines and each run's final /metrics stay in perf/out/.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DURABILITIES=${DURABILITIES:-"fsync none"}
POSTERS=${POSTERS:-"1 10 100"}
ROOMS=${ROOMS:-10}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
PAYLOAD=${PAYLOAD:-64}
SHARDS2=${SHARDS2:-1}
# Own port range (other scenarios use 19100+); ports in use are skipped.
PORT=${INGEST_PORT_BASE:-19600}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building roomcast and ingest"
  (cd "$ROOT" && cargo build --release -q --bin roomcast && cargo build --release -q -p loadgen --bin ingest)
fi
# Private copies: the target directory may be shared and rebuilt by others during the run.
mkdir -p "$OUT_DIR/bin"
cp "$BIN/roomcast" "$BIN/ingest" "$OUT_DIR/bin/"
RC="$OUT_DIR/bin/roomcast"
ING="$OUT_DIR/bin/ingest"

probe_dir=$(mktemp -d)
log "temp dir filesystem: $(df -T "$probe_dir" | awk 'NR==2 {print $1, $2}')"
df -T "$probe_dir" >"$OUT_DIR/df.txt"
rmdir "$probe_dir"

# run_one DURABILITY POSTERS SHARDS PIN OUTFILE: one fresh server, one ingest run, final /metrics.
run_one() {
  local dur=$1 posters=$2 shards=$3 pin=$4 out=$5
  local rooms=$((posters < ROOMS ? posters : ROOMS))
  PORT=$((PORT + 1))
  while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
  local data_dir
  data_dir=$(mktemp -d)
  local server_cmd=("$RC" serve --listen "127.0.0.1:$PORT" --data-dir "$data_dir" --shards "$shards"
    --durability "$dur" --no-pin-cpus
    # Every poster connects from 127.0.0.1: lift the per-address HTTP connection cap (64).
    --http-connections-per-ip-max 100000
    # Each poster is one user posting as fast as it is answered; the per-user REST rate limit
    # (100/s by default) would cap the benchmark, which measures the store, not abuse control.
    --actions-per-second 1000000 --actions-burst 1000000)
  if [[ $pin == 1 ]]; then server_cmd=(taskset -c "$SERVER_CPU" "${server_cmd[@]}"); fi
  "${server_cmd[@]}" >"$out.server.log" 2>&1 &
  local pid=$!
  local i ok=0
  for i in $(seq 1 200); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if [[ -s "$data_dir/jwt_secret" ]] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; then
      ok=1
      break
    fi
    sleep 0.05
  done
  if [[ $ok == 1 ]]; then
    taskset -c "$LOADGEN_CPU" timeout 120 "$ING" --url "http://127.0.0.1:$PORT" \
      --secret-file "$data_dir/jwt_secret" --posters "$posters" --rooms "$rooms" \
      --duration "$DURATION" --warmup "$WARMUP" --payload-bytes "$PAYLOAD" --threads 1 \
      --durability "$dur" --server-pid "$pid" >"$out" 2>"$out.err" ||
      { echo "ingest failed (exit $?):" >&2; tail -5 "$out.err" >&2; }
    curl -s "http://127.0.0.1:$PORT/metrics" >"$out.metrics" || true
  else
    echo "server not ready on port $PORT; log:" >&2
    tail -20 "$out.server.log" >&2
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data_dir"
  sleep 0.5
}

rows=()
for dur in $DURABILITIES; do
  for posters in $POSTERS; do
    for rep in $(seq 1 "$REPS"); do
      log "durability=$dur posters=$posters shards=1 rep $rep/$REPS"
      run_one "$dur" "$posters" 1 1 "$OUT_DIR/ingest-$dur-p$posters-s1-$rep.json"
    done
    rows+=("$dur 1 $posters pinned")
  done
done
if [[ $SHARDS2 == 1 ]]; then
  for rep in $(seq 1 "$REPS"); do
    log "durability=fsync posters=100 shards=2 (unpinned) rep $rep/$REPS"
    run_one fsync 100 2 0 "$OUT_DIR/ingest-fsync-p100-s2-$rep.json"
  done
  rows+=("fsync 2 100 unpinned")
fi

log "raw results in $OUT_DIR"
python3 - "$OUT_DIR" "${rows[@]}" <<'EOF'
import glob, json, re, statistics, sys

out = sys.argv[1]

def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"

def metric(text, name):
    return sum(int(m) for m in re.findall(rf"^{name}{{[^}}]*}} (\d+)$", text, re.M))

print("| durability | shards | posters | acked msg/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
      "| batches/commit (window) | commits, batches (end) | server CPU-µs/ack | loadgen CPU % | reps | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for line in sys.argv[2:]:
    dur, shards, posters, pin = line.split()
    runs, ends = [], []
    for f in sorted(glob.glob(f"{out}/ingest-{dur}-p{posters}-s{shards}-*.json")):
        try:
            with open(f) as fh:
                runs.append(json.loads(fh.readline()))
        except (OSError, ValueError):
            continue
        try:
            with open(f + ".metrics") as fh:
                text = fh.read()
            ends.append((metric(text, "roomcast_store_commits_total"),
                         metric(text, "roomcast_store_batches_total")))
        except OSError:
            pass
    lat = lambda k: cell([r["latency_us"][k] / 1000 for r in runs], "{:.1f}")
    sw = lambda r: (r.get("store_window") or {}).get("batches_per_commit")
    srv = lambda r: (r.get("server") or {}).get("cpu_us_per_ack")
    end = "; ".join(f"{c}, {b}" for c, b in ends) or "n/a"
    label = shards if pin == "pinned" else f"{shards} (unpinned)"
    print(f"| {dur} | {label} | {posters} | {cell([r['acked_per_s'] for r in runs])} | {lat('p50')} "
          f"| {lat('p90')} | {lat('p99')} | {lat('p999')} | {lat('max')} "
          f"| {cell([sw(r) for r in runs], '{:.1f}')} | {end} "
          f"| {cell([srv(r) for r in runs], '{:.1f}')} "
          f"| {cell([100 * r['loadgen_cpu_window_s'] / r['duration_s'] for r in runs])} "
          f"| {len(runs)} | {cell([r['errors'] for r in runs])} |")
EOF
