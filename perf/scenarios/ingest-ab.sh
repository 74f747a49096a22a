#!/usr/bin/env bash
# Interleaved A/B of ingest.sh: ROUNDS rounds (3), each one fresh-server run (REPS=1) of every
# build in VARIANTS, a list of NAME=BIN_DIR (each BIN_DIR holding roomcast and ingest, copied
# aside). Prints a table of medians (min–max) per variant and poster count. Knobs as ingest.sh
# (DURABILITIES fsync, POSTERS "10 100"); raw JSON in perf/out/ingest-ab-DATE/NAME/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${VARIANTS:?VARIANTS=\"base=/path/to/bin log=/path/to/bin\"}"
AB=${AB:-$ROOT/perf/out/ingest-ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$AB"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for v in $VARIANTS; do
    name=${v%%=*} bin=${v#*=}
    mkdir -p "$AB/$name"
    BIN=$bin SKIP_BUILD=1 REPS=1 DURABILITIES=${DURABILITIES:-fsync} POSTERS=${POSTERS:-"10 100"} \
      SHARDS2=0 OUT_DIR="$AB/$name/round" "$ROOT/perf/scenarios/ingest.sh" >/dev/null 2>>"$AB/log.txt"
    for f in "$AB/$name"/round/ingest-*-1.json*; do
      b=$(basename "$f")
      mv "$f" "$AB/$name/${b/-1.json/-$round.json}"
    done
    echo "$(date +%T) round $round $name done, load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$AB/log.txt"
  done
done
python3 - "$AB" <<'PY'
import glob, json, os, statistics, sys
ab = sys.argv[1]
def cell(v, f="{:.0f}"):
    v = [x for x in v if x is not None]
    return "n/a" if not v else f"{f.format(statistics.median(v))} ({f.format(min(v))}–{f.format(max(v))})"
print("| variant | durability | posters | acked msg/s | p50 ms | p99 ms | server CPU-µs/ack | batches/commit | runs |")
print("|---|---|---|---|---|---|---|---|---|")
for v in sorted(d for d in os.listdir(ab) if os.path.isdir(f"{ab}/{d}")):
    for k in sorted({os.path.basename(f).rsplit("-", 1)[0] for f in glob.glob(f"{ab}/{v}/ingest-*.json")}):
        runs = [json.loads(open(f).readline()) for f in sorted(glob.glob(f"{ab}/{v}/{k}-*.json"))]
        _, dur, p, _ = k.split("-")
        lat = lambda q: cell([r["latency_us"][q] / 1000 for r in runs], "{:.1f}")
        print(f"| {v} | {dur} | {p[1:]} | {cell([r['acked_per_s'] for r in runs])} | {lat('p50')} | {lat('p99')} "
              f"| {cell([(r.get('server') or {}).get('cpu_us_per_ack') for r in runs], '{:.1f}')} "
              f"| {cell([(r.get('store_window') or {}).get('batches_per_commit') for r in runs], '{:.1f}')} | {len(runs)} |")
PY
