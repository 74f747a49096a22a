#!/usr/bin/env bash
# TLS next to plain (issue #13), one fresh server per run, plain and TLS alternated:
# - idle: RSS growth per connection with CONNS (5 000) Virola sockets held;
# - handshakes: connections (TLS 1.3, TLS 1.2, plain) each doing one GET /healthz, for DURATION
#   (10) with 32 in flight; per second and per server CPU-second;
# - fanout: one room of MEMBERS (1 000) Virola sockets, 200 posts at 50/s: server CPU per
#   delivery.
# The server (1 shard, --no-pin-cpus) runs on CPU 1, perf/loadgen's tls_bench on CPU 0.
# Usage: perf/scenarios/tls.sh [idle|handshakes|fanout ...]   (REPS=3, BIN=<dir of binaries>)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release"}
REPS=${REPS:-3}
CONNS=${CONNS:-5000}
MEMBERS=${MEMBERS:-1000}
SECONDS_RUN=${DURATION:-10}
PORT=${PORT:-19400}
SECRET=tls-bench-secret-0123456789
ulimit -n 20000 2>/dev/null || true
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$ROOT/.ci/tls-test-ca.sh" "$WORK/ca" >/dev/null

# run TLS MODE [tls_bench args]: a fresh server (TLS = 1: with the test certificate), one
# tls_bench run against it, its output line on stdout.
run() {
  local tls=$1 mode=$2
  shift 2
  PORT=$((PORT + 1))
  local serve=() client=()
  if [[ $tls == 1 ]]; then
    serve=(--tls-cert "$WORK/ca/cert.pem" --tls-key "$WORK/ca/key.pem")
    client=(--ca "$WORK/ca/ca.pem")
  fi
  taskset -c 1 "$BIN/roomcast" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data-$PORT" \
    --durability none --shards 1 --no-pin-cpus --http-connections-per-ip-max 100000 \
    --jwt-secret "$SECRET" "${serve[@]}" >"$WORK/server-$PORT.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  taskset -c 0 "$BIN/tls_bench" "$mode" --addr "127.0.0.1:$PORT" --pid "$pid" --secret "$SECRET" \
    "${client[@]}" "$@" || echo "tls_bench failed: $(tail -3 "$WORK/server-$PORT.log")"
  kill -TERM "$pid"
  wait "$pid" || true
}

modes=("$@")
[[ ${#modes[@]} == 0 ]] && modes=(idle handshakes fanout)
for mode in "${modes[@]}"; do
  for rep in $(seq 1 "$REPS"); do
    case $mode in
      idle)
        run 0 idle --conns "$CONNS"
        run 1 idle --conns "$CONNS"
        ;;
      handshakes)
        run 0 handshakes --seconds "$SECONDS_RUN"
        run 1 handshakes --seconds "$SECONDS_RUN"
        run 1 handshakes --seconds "$SECONDS_RUN" --tls12
        ;;
      fanout)
        run 0 fanout --conns "$MEMBERS"
        run 1 fanout --conns "$MEMBERS"
        ;;
    esac
  done
done
