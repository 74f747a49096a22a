#!/usr/bin/env bash
# Latency at one fixed fan-out rate: ROOMS (10) rooms x MEMBERS (1 000) members, one publisher
# per room, RATE messages/s in total for DURATION (6) s after WARMUP (2) s; p50/p99/p99.9.
# Usage: SERVER=... RATE=15 perf/scenarios/latency.sh
source "$(dirname "$0")/common.sh"
ROOMS=${ROOMS:-10}
MEMBERS=${MEMBERS:-1000}
run_reps latency --connections $((ROOMS * MEMBERS)) --rooms "$ROOMS" --publishers-per-room 1 \
  --rate "${RATE:?RATE (messages/s) is required}" --duration "${DURATION:-6}" \
  --warmup "${WARMUP:-2}" --payload-bytes "${PAYLOAD:-64}"
