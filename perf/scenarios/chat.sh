#!/usr/bin/env bash
# Many small rooms: ROOMS (5 000) rooms x 2 members, every room has a publisher; RATE messages/s
# in total (default 5 000, i.e. 1 per room per second). Latency, deliveries/s, CPU-us/delivery.
# Usage: SERVER=roomcast|roomcast-rechat|tt|tt-tuned|node perf/scenarios/chat.sh   (REPS, RATE, DURATION, WARMUP)
source "$(dirname "$0")/common.sh"
ROOMS=${ROOMS:-5000}
run_reps chat --connections $((ROOMS * 2)) --rooms "$ROOMS" --publishers-per-room 1 \
  --rate "${RATE:-5000}" --duration "${DURATION:-4}" --warmup "${WARMUP:-2}" \
  --payload-bytes "${PAYLOAD:-64}"
