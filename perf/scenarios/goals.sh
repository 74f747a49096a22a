#!/usr/bin/env bash
# Issue #14's goals in one run: roomcast against tt-tuned, every cell ROUNDS (3) fresh-server
# repetitions interleaved round by round (roomcast, tt-tuned; then tt-tuned, roomcast; …), so a
# busy moment lands on both. Writes one Markdown file per goal into $R and a summary of the
# ratios into $R/goals.md. About 35 minutes on the 2-CPU machine.
#
#   fan-out   10 rooms x 1 000 members at 10, 40, 150 msg/s (DURATION 5 s: a 10 ms CPU tick is
#             0.2 µs per delivery at 10 msg/s): server CPU-µs per delivery, ratio to tt-tuned
#   overload  the same at 400 msg/s offered: delivered %, p99, CPU-µs per delivery
#   scaling   roomcast --shards 2 on CPUs 0-1 against --shards 1 on CPU 1, at 40 msg/s
#   idle      15 000 authenticated idle connections: server RSS bytes per connection
#   connect   10 000 authenticated connections, 1 000 in flight: server CPU-µs per connection
#   chat      in-band durable chat (Rechat Message.Send, --durability fsync), 5 000 rooms x 2,
#             rate stepped to p99 <= 50 ms, against tt-tuned's relay
#   ingest    acknowledged REST posts/s with fsync, 10 and 100 posters
#   syscalls  perf/profile.sh at 40 msg/s (perf stat of the server; flame graph)
#
# Usage: BIN=/copy/of/target/release perf/scenarios/goals.sh   (R, ROUNDS, ONLY="fanout idle …")
set -uo pipefail
cd "$(dirname "$0")/../.."
export BIN=${BIN:?BIN: a private copy of target/release (roomcast, loadgen, ingest, peer-tokio-tungstenite)}
export SKIP_BUILD=1
R=${R:-$PWD/perf/out/goals-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$R"
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-"fanout overload scaling idle connect chat ingest syscalls"}
ulimit -n 20000
ts() { echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) $*" >>"$R/times"; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# cell SCENARIO LABEL ROUND [VAR=VALUE …]: one fresh-server repetition into $R/SCENARIO/rROUND.
cell() {
  local sc=$1 label=$2 round=$3
  shift 3
  ts "start $sc $label r$round"
  env "$@" LABEL="$label" REPS=1 HEADER=0 OUT_DIR="$R/$sc/r$round" perf/scenarios/"${SC_SCRIPT:-$sc}".sh \
    >/dev/null 2>>"$R/$sc.err" || echo "$sc $label round $round failed" >>"$R/$sc.err"
}

# pair SCENARIO SCRIPT: roomcast and tt-tuned alternated over the rounds, extra env in "$@".
pair() {
  local sc=$1 script=$2 round
  shift 2
  for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order="roomcast tt-tuned"; else order="tt-tuned roomcast"; fi
    for s in $order; do
      local srv=$s
      [[ $s == roomcast && -n ${ROOMCAST_AS:-} ]] && srv=$ROOMCAST_AS
      SC_SCRIPT=$script cell "$sc" "$s" "$round" SERVER="$srv" "$@"
    done
  done
}

table() { # table SCENARIO SUMMARY-KIND LABEL…: medians over rounds, one row per label
  local sc=$1 kind=$2
  shift 2
  python3 perf/scenarios/summarize.py "$kind" --header
  for l in "$@"; do python3 perf/scenarios/summarize.py "$kind" "$l" "$R/$sc"/r*/"$kind-$l-1.jsonl"; done
}

steps() { # steps SCENARIO KIND LABEL…: per-rate tables (fixed-rate runs)
  local sc=$1 kind=$2
  shift 2
  for l in "$@"; do python3 perf/scenarios/steps.py "$l" "$R/$sc"/r*/"$kind-$l-1.jsonl"; echo; done
}

ts "begin"
if want fanout; then
  pair fanout fanout RATES=10,40,150 P99_LIMIT_MS=100000 DURATION=5
  steps fanout fanout roomcast tt-tuned >"$R/fanout.md"
fi
if want overload; then
  pair overload fanout RATES=400 P99_LIMIT_MS=100000 DURATION=5
  steps overload fanout roomcast tt-tuned >"$R/overload.md"
fi
if want scaling; then
  for round in $(seq 1 "$ROUNDS"); do
    SC_SCRIPT=fanout cell scaling roomcast-1sh "$round" SERVER=roomcast RATES=40,150 P99_LIMIT_MS=100000 DURATION=5
    SC_SCRIPT=fanout cell scaling roomcast-2sh "$round" SERVER=roomcast SHARDS=2 SERVER_CPU=0,1 RATES=40,150 P99_LIMIT_MS=100000 DURATION=5
  done
  steps scaling fanout roomcast-1sh roomcast-2sh >"$R/scaling.md"
fi
if want idle; then
  pair idle idle
  table idle idle roomcast tt-tuned >"$R/idle.md"
fi
if want connect; then
  pair connect connect
  table connect connect roomcast tt-tuned >"$R/connect.md"
fi
if want chat; then
  ROOMCAST_AS=roomcast-rechat pair chat chatmax DURABILITY=fsync \
    RATES=5000,7500,10000,12500,15000,20000,25000,30000,40000,50000
  { table chat chatmax roomcast tt-tuned; echo; steps chat chatmax roomcast tt-tuned; } >"$R/chat.md"
fi
if want ingest; then
  ts "start ingest"
  OUT_DIR="$R/ingest" REPS=$ROUNDS DURABILITIES=fsync POSTERS="10 100" SHARDS2=0 \
    perf/scenarios/ingest.sh >"$R/ingest.md" 2>"$R/ingest.err"
fi
if want syscalls; then
  ts "start syscalls"
  SERVER=roomcast RATE=40 PERF_S=3 STAT_S=5 SVG="$R/flamegraph-fanout.svg" \
    perf/profile.sh >"$R/syscalls-fanout.md" 2>"$R/syscalls-fanout.err"
  SERVER=roomcast-rechat DURABILITY=fsync ROOMS=5000 MEMBERS=2 RATE=5000 PERF_S=3 STAT_S=5 \
    CALLGRAPH=dwarf SVG="$R/flamegraph-chat-inband.svg" \
    perf/profile.sh >"$R/syscalls-chat.md" 2>"$R/syscalls-chat.err"
fi
ts "end"
echo "tables in $R"
