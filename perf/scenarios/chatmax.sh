#!/usr/bin/env bash
# Chat at rising load: ROOMS (5 000) rooms x 2 members, every room publishing; the total rate is
# stepped up (RATES, messages/s) until p99 > P99_LIMIT_MS (50) or deliveries fall below 95 %.
# Reports the highest passing rate ("max sustained"), deliveries/s there and CPU-us/delivery.
# Usage: SERVER=roomcast|roomcast-rechat|tt|tt-tuned|node perf/scenarios/chatmax.sh   (REPS, RATES, DURATION, WARMUP)
source "$(dirname "$0")/common.sh"
ROOMS=${ROOMS:-5000}
HTTP_CONNS=${HTTP_CONNS:-128} # roomcast: enough keep-alive connections for 30 000 requests/s
run_reps chatmax --connections $((ROOMS * 2)) --rooms "$ROOMS" --publishers-per-room 1 \
  --rate-steps "${RATES:-5000,7500,10000,12500,15000,20000,25000,30000}" \
  --stop-p99-ms "${P99_LIMIT_MS:-50}" --duration "${DURATION:-2}" --warmup "${WARMUP:-1}" \
  --payload-bytes "${PAYLOAD:-64}"
