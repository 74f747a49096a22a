#!/usr/bin/env bash
# Idle memory: hold CONNS (default 15 000) idle WebSockets; server RSS per connection.
# Usage: SERVER=roomcast|tt|tt-tuned|node perf/scenarios/idle.sh   (REPS, CONNS, HOLD to change)
source "$(dirname "$0")/common.sh"
CONNS=${CONNS:-15000}
run_reps idle --idle --connections "$CONNS" --rooms "${ROOMS:-100}" \
  --duration "${HOLD:-6}" --settle "${SETTLE:-2}"
