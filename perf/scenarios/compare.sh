#!/usr/bin/env bash
# Runs one scenario for every server back to back in the same run, printing one Markdown table.
# Usage: perf/scenarios/compare.sh idle|fanout|chat|chatmax|connect|latency   (SERVERS="roomcast tt tt-tuned node";
# add roomcast-rechat for the Rechat dialect of the same server)
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
scenario=${1:?usage: compare.sh idle|fanout|chat|chatmax|connect|latency}
[[ -x $dir/$scenario.sh ]] || { echo "no scenario $scenario" >&2; exit 2; }
python3 "$dir/summarize.py" "$scenario" --header
for server in ${SERVERS:-roomcast tt tt-tuned node}; do
  SERVER=$server HEADER=0 "$dir/$scenario.sh" || echo "| $server | failed (see stderr) |"
done
