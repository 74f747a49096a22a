#!/usr/bin/env bash
# Connect storm: open CONNS (default 10 000) WebSockets as fast as the server accepts them
# (roomcast: each with its own JWT); connections per second.
# Usage: SERVER=roomcast|tt|tt-tuned|node perf/scenarios/connect.sh   (REPS, CONNS, CONCURRENCY)
source "$(dirname "$0")/common.sh"
CONNS=${CONNS:-10000}
run_reps connect --idle --connections "$CONNS" --rooms "${ROOMS:-100}" \
  --connect-concurrency "${CONCURRENCY:-1000}" --duration 1 --settle 0.5
