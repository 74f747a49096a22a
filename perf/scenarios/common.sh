#!/usr/bin/env bash
# Shared helpers for the scenario scripts: build, start a pinned server, run the pinned loadgen,
# summarise. Sourced, not run. Servers run on CPU 1 and the loadgen on CPU 0 (taskset).
# SERVER: roomcast (= roomcast-virola: the Virola dialect, /api/v1/events, publishing over REST),
# roomcast-rechat (the same server through its Rechat dialect, Socket.IO v4 over WebSocket,
# publishing with Message.Send), or a peer: tt, tt-tuned, node.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCEN_DIR="$ROOT/perf/scenarios"
# BIN: where the built binaries are; point it at a private copy when the target dir is shared
# (another build can replace target/release/roomcast in the middle of a run).
BIN=${BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release"}
SERVER=${SERVER:-tt}
REPS=${REPS:-3}
PORT_BASE=${PORT_BASE:-19100}
SERVER_CPU=${SERVER_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SHARDS=${SHARDS:-1}            # roomcast only: --shards
RC_ARGS=${RC_ARGS:-}           # roomcast only: extra `serve` flags
LABEL=${LABEL:-$SERVER}        # row name in the summary table
OUT_DIR=${OUT_DIR:-$ROOT/perf/out/$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$OUT_DIR"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log() { echo "[$(date +%T)] $*" >&2; }

# build: compiles what $SERVER needs plus the loadgen (SKIP_BUILD=1 to skip).
build() {
  [[ ${SKIP_BUILD:-0} == 1 ]] && return 0
  log "building for SERVER=$SERVER"
  case $SERVER in
    roomcast | roomcast-virola | roomcast-rechat) (cd "$ROOT" && cargo build --release -q -p roomcast -p loadgen) ;;
    tt | tt-tuned) (cd "$ROOT" && cargo build --release -q -p loadgen -p peer-tokio-tungstenite) ;;
    node)
      (cd "$ROOT" && cargo build --release -q -p loadgen)
      (cd "$ROOT/perf/peers/node-ws" && { [[ -d node_modules/ws ]] || npm ci --no-audit --no-fund --silent; })
      ;;
    *) echo "unknown SERVER=$SERVER (roomcast|roomcast-virola|roomcast-rechat|tt|tt-tuned|node)" >&2; return 1 ;;
  esac
}

# start_server PORT: starts $SERVER pinned to $SERVER_CPU; sets SERVER_PID, URL and LG_TARGET
# (loadgen --target/--url/--secret-file arguments), and waits until the port accepts.
start_server() {
  local port=$1
  SERVER_LOG="$OUT_DIR/server-$SERVER-$port.log"
  DATA_DIR=""
  case $SERVER in
    tt) taskset -c "$SERVER_CPU" "$BIN/peer-tokio-tungstenite" --listen "127.0.0.1:$port" >"$SERVER_LOG" 2>&1 & ;;
    tt-tuned) taskset -c "$SERVER_CPU" "$BIN/peer-tokio-tungstenite" --tuned --listen "127.0.0.1:$port" >"$SERVER_LOG" 2>&1 & ;;
    node) taskset -c "$SERVER_CPU" node "$ROOT/perf/peers/node-ws/server.js" --listen "127.0.0.1:$port" >"$SERVER_LOG" 2>&1 & ;;
    roomcast | roomcast-virola | roomcast-rechat)
      DATA_DIR=$(mktemp -d)
      # The loadgen is a few loopback addresses with thousands of connections each: lift the
      # per-address cap on connections in the HTTP phase (64 per shard by default).
      taskset -c "$SERVER_CPU" "$BIN/roomcast" serve --listen "127.0.0.1:$port" --data-dir "$DATA_DIR" \
        --durability "${DURABILITY:-none}" --shards "$SHARDS" --http-connections-per-ip-max 100000 $RC_ARGS \
        >"$SERVER_LOG" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server $SERVER exited; log:" >&2; cat "$SERVER_LOG" >&2; return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      if [[ -z $DATA_DIR || -s "$DATA_DIR/jwt_secret" ]]; then break; fi
    fi
    sleep 0.05
    if [[ $i == 200 ]]; then echo "server $SERVER not ready on port $port" >&2; return 1; fi
  done
  case $SERVER in
    # Publishing over REST is closed-loop per HTTP connection (one request in flight each), so
    # the connection count caps the publish rate: HTTP_CONNS (32; chatmax.sh 128) connections.
    roomcast | roomcast-virola) LG_TARGET=(--target roomcast --url "http://127.0.0.1:$port" --secret-file "$DATA_DIR/jwt_secret"
      --http-conns "${HTTP_CONNS:-32}") ;;
    # Rechat publishers write Message.Send on their own sockets (open loop; counted on the ack);
    # RECHAT_PAUSE s (5) after connecting let the presence events of the connect phase drain.
    roomcast-rechat) LG_TARGET=(--target rechat --url "http://127.0.0.1:$port" --secret-file "$DATA_DIR/jwt_secret"
      --rechat-auth "${RECHAT_AUTH:-connect}" --pause "${RECHAT_PAUSE:-5}") ;;
    *) LG_TARGET=(--target plain --url "ws://127.0.0.1:$port") ;;
  esac
  sleep 0.3 # let the server's RSS settle before the loadgen samples it
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  if [[ -n ${DATA_DIR:-} ]]; then rm -rf "$DATA_DIR"; fi
  DATA_DIR=""
}

# loadgen OUTFILE ARGS...: runs the loadgen pinned to $LOADGEN_CPU against the running server.
loadgen() {
  local out=$1
  shift
  taskset -c "$LOADGEN_CPU" timeout "${LOADGEN_TIMEOUT:-300}" "$BIN/loadgen" "${LG_TARGET[@]}" \
    --threads 1 --server-pid "$SERVER_PID" ${LG_ARGS:-} "$@" >"$out" 2>"$out.err" || {
    echo "loadgen failed (exit $?); stderr:" >&2; tail -5 "$out.err" >&2; return 1
  }
}

# run_reps SCENARIO ARGS...: REPS fresh-server repetitions, then a Markdown row on stdout.
run_reps() {
  local scenario=$1
  shift
  build
  local rep files=()
  for rep in $(seq 1 "$REPS"); do
    local port=$((PORT_BASE + rep))
    log "$scenario SERVER=$LABEL rep $rep/$REPS"
    start_server "$port"
    local f="$OUT_DIR/$scenario-$LABEL-$rep.jsonl"
    if loadgen "$f" "$@"; then files+=("$f"); fi
    stop_server
    sleep 1 # let the closed sockets leave the kernel before the next repetition
  done
  if [[ ${HEADER:-1} == 1 ]]; then python3 "$SCEN_DIR/summarize.py" "$scenario" --header; fi
  python3 "$SCEN_DIR/summarize.py" "$scenario" "$LABEL" "${files[@]}"
}
