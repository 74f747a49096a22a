#!/usr/bin/env bash
# Profiles roomcast during the fan-out scenario: perf record (cpu-clock, call graphs) folded into
# a flame graph with inferno, then syscall and io_uring counts per delivery with perf stat.
#
# Usage: perf/profile.sh   (RATE 20 msg/s, ROOMS 10, MEMBERS 1000, PERF_S 5, STAT_S 5,
#                           CALLGRAPH "fp" (-g, frame pointers) or "dwarf", SHARDS 1, SVG path,
#                           SERVER roomcast; a peer (tt-tuned, …) works too: its deliveries are
#                           then taken as RATE x MEMBERS x seconds, nominal, as it has no metrics)
# Needs `perf` (Debian: apt-get install linux-perf); inferno (cargo install inferno) for the
# flame graph: without it the tables are still written and the SVG is skipped, said on stderr.
# Writes perf/out/profile-*/{perf.data,folded.txt,report-*.txt,stat.txt,metrics-*.txt} and the
# SVG (default perf/flamegraph-fanout.svg). roomcast runs on CPU 1, the loadgen on CPU 0.
SERVER=${SERVER:-roomcast}
source "$(dirname "$0")/scenarios/common.sh"
RATE=${RATE:-20}
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-1000}
PERF_S=${PERF_S:-5}
STAT_S=${STAT_S:-5}
CALLGRAPH=${CALLGRAPH:-fp}
OUT_DIR="$ROOT/perf/out/profile-$SERVER-$(date +%Y%m%d-%H%M%S)"
if [[ $SERVER == roomcast ]]; then SVG=${SVG:-$ROOT/perf/flamegraph-fanout.svg}; else SVG=${SVG:-$OUT_DIR/flamegraph.svg}; fi
mkdir -p "$OUT_DIR"
INFERNO_BIN=${INFERNO_BIN:-$HOME/.cargo/bin}
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
FLAME=1
[[ -x $INFERNO_BIN/inferno-flamegraph ]] || {
  echo "inferno is missing (cargo install inferno): no flame graph, tables only" >&2
  FLAME=0
}

build
port=$((PORT_BASE + 50))
start_server "$port"
trap 'stop_server' EXIT
conns=$((ROOMS * MEMBERS))
total_s=$((PERF_S + STAT_S + 25)) # perf record/stat start-up and write-out take seconds
log "loadgen: $ROOMS rooms x $MEMBERS members at $RATE msg/s for ${total_s}s"
taskset -c "$LOADGEN_CPU" "$BIN/loadgen" "${LG_TARGET[@]}" --threads 1 --server-pid "$SERVER_PID" \
  --connections "$conns" --rooms "$ROOMS" --publishers-per-room 1 --rate "$RATE" \
  --warmup 1 --duration "$total_s" --payload-bytes 64 >"$OUT_DIR/loadgen.jsonl" 2>"$OUT_DIR/loadgen.err" &
LG_PID=$!

established() { ss -Htn state established "( sport = :$port )" | wc -l; }
for _ in $(seq 1 600); do
  (($(established) >= conns)) && break
  sleep 0.1
done
log "connected: $(established) sockets; publishing warms up"
# Rechat publishers wait RECHAT_PAUSE s (5) after connecting before they publish (common.sh).
if [[ $SERVER == roomcast-rechat ]]; then sleep $((2 + ${RECHAT_PAUSE:-5})); else sleep 2; fi

metrics() { [[ $SERVER == roomcast* ]] || { : >"$1"; return; }; curl -s "http://127.0.0.1:$port/metrics" | grep -E '^roomcast_[a-z_]+(\{[^}]*\})? ' >"$1"; }
# counter NAME FILE: the counter summed over shards.
counter() { awk -v n="roomcast_$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }' "$2"; }

case $CALLGRAPH in
  dwarf) cg=(--call-graph dwarf,16384 -F 999) ;;
  *) cg=(-g) ;;
esac
metrics "$OUT_DIR/metrics-0.txt"
log "perf record ${cg[*]} for ${PERF_S}s"
perf record -e cpu-clock "${cg[@]}" -p "$SERVER_PID" -o "$OUT_DIR/perf.data" -- sleep "$PERF_S" \
  2>"$OUT_DIR/record.err" >/dev/null
metrics "$OUT_DIR/metrics-1.txt"

log "perf stat syscalls and io_uring for ${STAT_S}s"
STAT_EVENTS=${STAT_EVENTS:-syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_futex,syscalls:sys_enter_madvise,syscalls:sys_enter_mmap,syscalls:sys_enter_munmap,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_cqe_overflow,io_uring:io_uring_task_work_run,io_uring:io_uring_short_write,io_uring:io_uring_queue_async_work}
# STAT_EVENTS='syscalls:sys_enter_*' counts every syscall, but setting up ~350 tracepoints takes
# seconds, which the metrics window around it then includes (per-delivery figures come out low).
perf stat -x, -e "$STAT_EVENTS" \
  -p "$SERVER_PID" -o "$OUT_DIR/stat.csv" -- sleep "$STAT_S" 2>"$OUT_DIR/stat.err" >/dev/null
metrics "$OUT_DIR/metrics-2.txt"
wait "$LG_PID" || true

{
  d1=$(($(counter events_delivered_total "$OUT_DIR/metrics-1.txt") - $(counter events_delivered_total "$OUT_DIR/metrics-0.txt")))
  d2=$(($(counter events_delivered_total "$OUT_DIR/metrics-2.txt") - $(counter events_delivered_total "$OUT_DIR/metrics-1.txt")))
  for c in events_delivered_total frames_out_total writev_total http_requests_total bytes_out_total; do
    echo "metric $c during perf stat: $(($(counter $c "$OUT_DIR/metrics-2.txt") - $(counter $c "$OUT_DIR/metrics-1.txt")))"
  done
  if [[ $SERVER != roomcast* ]]; then
    d1=$((RATE * MEMBERS * PERF_S)) d2=$((RATE * MEMBERS * STAT_S))
    echo "($SERVER has no metrics: deliveries below are nominal, RATE x MEMBERS x seconds)"
  fi
  echo "deliveries during perf record: $d1 (${PERF_S}s), during perf stat: $d2 (${STAT_S}s)"
  # The metrics snapshots bracket perf stat's start-up and exit too, so they over-count the
  # window; below a rate every server sustains, deliveries = RATE x MEMBERS x STAT_S is exact.
  nominal=$(awk -v r="$RATE" -v m="$MEMBERS" -v s="$STAT_S" 'BEGIN { printf "%d", r * m * s }')
  echo "event,count,per_delivery(metrics window),per_delivery(nominal $nominal) (perf stat -p $SERVER_PID, ${STAT_S}s, nonzero only)"
  awk -F, -v d="$d2" -v n="$nominal" '$1 ~ /^[0-9]+$/ && $1 > 0 {
      printf "%s,%d,%.4f,%.4f\n", $3, $1, (d > 0 ? $1 / d : 0), $1 / n }' \
    "$OUT_DIR/stat.csv" | sort -t, -k2,2nr
} | tee "$OUT_DIR/stat.txt"

if ((FLAME)); then
  log "folding and rendering"
  perf script -i "$OUT_DIR/perf.data" 2>/dev/null | "$INFERNO_BIN/inferno-collapse-perf" >"$OUT_DIR/folded.txt"
  "$INFERNO_BIN/inferno-flamegraph" --title "$SERVER fan-out ($ROOMS x $MEMBERS, $RATE msg/s, --shards ${SHARDS}, cpu-clock, $CALLGRAPH)" \
    --width 1600 <"$OUT_DIR/folded.txt" >"$SVG"
fi
perf report -i "$OUT_DIR/perf.data" --no-children --sort sym --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | sed -n 1,60p >"$OUT_DIR/report-self.txt" || true
perf report -i "$OUT_DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | sed -n 1,20p >"$OUT_DIR/report-dso.txt" || true
echo "--- self time by dso"; cat "$OUT_DIR/report-dso.txt"
echo "--- top symbols (self)"; sed -n 1,40p "$OUT_DIR/report-self.txt"
cat "$OUT_DIR/loadgen.jsonl"
if ((FLAME)); then log "wrote $SVG and $OUT_DIR"; else log "wrote $OUT_DIR (no flame graph)"; fi
