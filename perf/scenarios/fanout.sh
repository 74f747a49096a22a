#!/usr/bin/env bash
# Fan-out: ROOMS (10) rooms x MEMBERS (1 000) members, one publisher per room; the total publish
# rate is stepped up (RATES, messages/s) until p99 > P99_LIMIT_MS (50) or deliveries fall below 95 %.
# Reports the highest passing rate, deliveries/s there and server CPU-us per delivery.
# Usage: SERVER=roomcast|roomcast-rechat|tt|tt-tuned|node perf/scenarios/fanout.sh   (REPS, RATES, DURATION, WARMUP)
source "$(dirname "$0")/common.sh"
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-1000}
run_reps fanout --connections $((ROOMS * MEMBERS)) --rooms "$ROOMS" --publishers-per-room 1 \
  --rate-steps "${RATES:-10,15,20,25,30,35,40,50,60,70,80,100,120,150,200,250,300,400}" --stop-p99-ms "${P99_LIMIT_MS:-50}" \
  --duration "${DURATION:-2}" --warmup "${WARMUP:-1}" --payload-bytes "${PAYLOAD:-64}"
