#!/usr/bin/env python3
"""Turns loadgen JSON lines from repeated runs into one Markdown table row per server.

Usage: summarize.py SCENARIO --header | summarize.py SCENARIO SERVER FILE...
Each FILE holds one repetition (one JSON line, or one per rate step for fanout). Cells are
"median (min–max)" over the repetitions.
"""
import json
import os
import statistics
import sys

# Highest passing step: p99 at most this (ms), >= 95 % delivered, >= 95 % of the rate sent.
P99_LIMIT_MS = float(os.environ.get("P99_LIMIT_MS", "50"))

HEADERS = {
    "idle": ["server", "conns held", "connect/s", "RSS before MiB", "RSS held MiB",
             "RSS bytes/conn", "kernel TCP bytes/conn", "reps", "errors"],
    "connect": ["server", "conns", "connect/s", "connect s", "server CPU-µs/conn",
                "server CPU % (storm)", "loadgen CPU % (storm)", "RSS held MiB", "reps", "errors"],
    "fanout": ["server", "max msg/s (p99 ≤ 50 ms)", "deliveries/s", "p50 ms", "p99 ms",
               "server CPU-µs/delivery", "loadgen CPU %", "reps", "errors"],
    "chatmax": ["server", "max msg/s (p99 ≤ 50 ms)", "deliveries/s", "p50 ms", "p99 ms",
                "p99.9 ms", "server CPU-µs/delivery", "loadgen CPU %", "reps", "errors"],
    "latency": ["server", "msg/s", "deliveries/s", "delivered %", "p50 ms", "p99 ms", "p99.9 ms",
                "server CPU-µs/delivery", "loadgen CPU %", "reps", "errors"],
    "chat": ["server", "msg/s", "deliveries/s", "delivered %", "p50 ms", "p99 ms", "p99.9 ms",
             "server CPU-µs/delivery", "loadgen CPU %", "reps", "errors"],
}


def cell(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def server(r, key):
    return (r.get("server") or {}).get(key)


def per_conn(r, before, after, scale):
    a, b = server(r, before), server(r, after)
    if a is None or b is None or not r["connected"]:
        return None
    return (b - a) * scale / r["connected"]


def row(scenario, name, runs):
    n = str(len(runs))
    if scenario in ("idle", "connect"):
        rs = [lines[-1] for lines in runs]
        errors = cell([r["errors"] for r in rs])
        if scenario == "connect":
            return [name, cell([r["connected"] for r in rs]), cell([r["connect_rate"] for r in rs]),
                    cell([r["connect_s"] for r in rs], "{:.2f}"),
                    cell([(server(r, "cpu_connect_s") or 0) * 1e6 / max(r["connected"], 1) for r in rs], "{:.1f}"),
                    cell([(server(r, "cpu_connect_s") or 0) * 100 / max(r["connect_s"], 1e-9) for r in rs], "{:.0f}"),
                    cell([r.get("loadgen_cpu_connect_s", 0) * 100 / max(r["connect_s"], 1e-9) for r in rs], "{:.0f}"),
                    cell([(server(r, "rss_connected_kb") or 0) / 1024 for r in rs], "{:.1f}"),
                    n, errors]
        return [name, cell([r["connected"] for r in rs]), cell([r["connect_rate"] for r in rs]),
                cell([(server(r, "rss_before_kb") or 0) / 1024 for r in rs], "{:.1f}"),
                cell([(server(r, "rss_connected_kb") or 0) / 1024 for r in rs], "{:.1f}"),
                cell([per_conn(r, "rss_before_kb", "rss_connected_kb", 1024) for r in rs]),
                cell([per_conn(r, "tcp_mem_pages_before", "tcp_mem_pages_connected", 4096)
                      for r in rs]),
                n, errors]
    if scenario in ("fanout", "chatmax"):
        best = []
        for lines in runs:
            ok = [r for r in lines if r["latency_us"]["p99"] <= P99_LIMIT_MS * 1000
                  and r["delivery_ratio"] >= 0.95
                  and r["achieved_rate"] >= 0.95 * r["target_rate"]]
            best.append(max(ok, key=lambda r: r["target_rate"]) if ok else None)
        got = [b for b in best if b]
        if scenario == "chatmax":
            return [name, cell([b["target_rate"] if b else 0 for b in best]),
                    cell([b["deliveries_per_s"] for b in got]),
                    cell([b["latency_us"]["p50"] / 1000 for b in got], "{:.1f}"),
                    cell([b["latency_us"]["p99"] / 1000 for b in got], "{:.1f}"),
                    cell([b["latency_us"]["p999"] / 1000 for b in got], "{:.1f}"),
                    cell([server(b, "cpu_us_per_delivery") for b in got], "{:.2f}"),
                    cell([100 * b["loadgen_cpu_window_s"] / b["duration_s"] for b in got]),
                    n, cell([lines[-1]["errors"] for lines in runs])]
        return [name, cell([b["target_rate"] if b else 0 for b in best]),
                cell([b["deliveries_per_s"] for b in got]),
                cell([b["latency_us"]["p50"] / 1000 for b in got], "{:.1f}"),
                cell([b["latency_us"]["p99"] / 1000 for b in got], "{:.1f}"),
                cell([server(b, "cpu_us_per_delivery") for b in got], "{:.2f}"),
                cell([100 * b["loadgen_cpu_window_s"] / b["duration_s"] for b in got]),
                n, cell([lines[-1]["errors"] for lines in runs])]
    rs = [lines[-1] for lines in runs]
    return [name, cell([r["achieved_rate"] for r in rs]), cell([r["deliveries_per_s"] for r in rs]),
            cell([100 * r["delivery_ratio"] for r in rs], "{:.1f}"),
            cell([r["latency_us"]["p50"] / 1000 for r in rs], "{:.1f}"),
            cell([r["latency_us"]["p99"] / 1000 for r in rs], "{:.1f}"),
            cell([r["latency_us"]["p999"] / 1000 for r in rs], "{:.1f}"),
            cell([server(r, "cpu_us_per_delivery") for r in rs], "{:.2f}"),
            cell([100 * r["loadgen_cpu_window_s"] / r["duration_s"] for r in rs]),
            n, cell([r["errors"] for r in rs])]


def main():
    scenario = sys.argv[1]
    if sys.argv[2] == "--header":
        h = [c.replace("≤ 50 ms", f"≤ {P99_LIMIT_MS:g} ms") for c in HEADERS[scenario]]
        print("| " + " | ".join(h) + " |")
        print("|" + "---|" * len(h))
        return
    runs = [lines for lines in (load(p) for p in sys.argv[3:]) if lines]
    if not runs:
        print(f"| {sys.argv[2]} | no successful repetition |")
        return
    print("| " + " | ".join(row(scenario, sys.argv[2], runs)) + " |")


if __name__ == "__main__":
    main()
