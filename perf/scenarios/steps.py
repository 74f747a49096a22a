#!/usr/bin/env python3
"""Per-rate table from rate-stepped runs (fanout.sh / chatmax.sh JSON lines).

Usage: steps.py LABEL FILE...   (each FILE one repetition, one JSON line per rate step)
One Markdown row per target rate: median (min–max) over the repetitions that reached that step,
of delivered %, deliveries/s, p50/p99/p99.9 ms, server CPU-µs per delivery and loadgen CPU %.
"""
import json
import sys
from collections import defaultdict

from summarize import cell


def main():
    label, paths = sys.argv[1], sys.argv[2:]
    by_rate = defaultdict(list)
    for p in paths:
        with open(p) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    by_rate[r["target_rate"]].append(r)
    print("| server | msg/s | reps | delivered % | deliveries/s | p50 ms | p99 ms | p99.9 ms "
          "| server CPU-µs/delivery | server CPU % | loadgen CPU % |")
    print("|" + "---|" * 11)
    for rate in sorted(by_rate):
        rs = by_rate[rate]
        srv = [r.get("server") or {} for r in rs]
        print("| " + " | ".join([
            label, f"{rate:g}", str(len(rs)),
            cell([100 * r["delivery_ratio"] for r in rs], "{:.1f}"),
            cell([r["deliveries_per_s"] for r in rs]),
            cell([r["latency_us"]["p50"] / 1000 for r in rs], "{:.1f}"),
            cell([r["latency_us"]["p99"] / 1000 for r in rs], "{:.1f}"),
            cell([r["latency_us"]["p999"] / 1000 for r in rs], "{:.1f}"),
            cell([s.get("cpu_us_per_delivery") for s in srv], "{:.2f}"),
            cell([100 * s["cpu_window_s"] / r["duration_s"] if s.get("cpu_window_s") is not None
                  else None for s, r in zip(srv, rs)]),
            cell([100 * r["loadgen_cpu_window_s"] / r["duration_s"] for r in rs]),
        ]) + " |")


if __name__ == "__main__":
    main()
