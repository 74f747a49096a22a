#!/usr/bin/env bash
# One scenario for every server in ROUNDS (3) rounds, each round one fresh-server repetition of
# every server in turn (server order rotated by one each round), then one Markdown table of
# medians (min–max) over the rounds. Interleaving spreads a busy machine's noise over all
# servers instead of landing on whichever ran during a build. Logs the load average at each
# repetition's edges into $OUT_DIR/load.log. For rate-stepped scenarios, per-step tables too.
# Usage: perf/scenarios/rounds.sh chat|fanout|chatmax|latency|idle|connect
#        (SERVERS="roomcast roomcast-rechat tt tt-tuned node", ROUNDS, OUT_DIR, and the
#        scenario's own knobs)
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
scenario=${1:?usage: rounds.sh SCENARIO}
[[ -x $dir/$scenario.sh ]] || { echo "no scenario $scenario" >&2; exit 2; }
read -r -a servers <<<"${SERVERS:-roomcast roomcast-rechat tt tt-tuned node}"
out=${OUT_DIR:-$dir/../out/rounds-$scenario-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
load() { echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg) $*" >>"$out/load.log"; }
n=${#servers[@]}
for round in $(seq 1 "${ROUNDS:-3}"); do
  for i in $(seq 0 $((n - 1))); do
    s=${servers[$(((i + round - 1) % n))]}
    load "start $s round $round"
    SERVER=$s REPS=1 HEADER=0 OUT_DIR="$out/r$round" "$dir/$scenario.sh" >/dev/null ||
      echo "$scenario $s round $round failed" >&2
    load "end $s round $round"
  done
done
python3 "$dir/summarize.py" "$scenario" --header
for s in "${servers[@]}"; do
  python3 "$dir/summarize.py" "$scenario" "$s" "$out"/r*/"$scenario-$s-1.jsonl"
done
if [[ $scenario == fanout || $scenario == chatmax ]]; then
  for s in "${servers[@]}"; do
    echo
    python3 "$dir/steps.py" "$s" "$out"/r*/"$scenario-$s-1.jsonl"
  done
fi
