#!/usr/bin/env bash
# Every scenario, roomcast and the three peers back to back (what perf/RESULTS.md's session-2
# section reports): idle, connect, fan-out (+ per-step tables), overload, 2-shard scaling, chat,
# chatmax, latency (at half the lowest knee and at half of each server's knee), ingest, profiles.
# Tables go to $R/*.md (default perf/out/all-DATE). Build first and point BIN at a private copy
# of target/release (roomcast, loadgen, ingest, peer-tokio-tungstenite). About 35 minutes.
# Usage: BIN=/path/to/bins perf/scenarios/all.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export BIN=${BIN:?BIN: a copy of target/release} SKIP_BUILD=1 REPS=${REPS:-3}
R=${R:-$PWD/perf/out/all-$(date +%Y%m%d-%H%M%S)}; mkdir -p "$R"
ulimit -n 20000
ts() { date -u +%H:%M:%S; }
echo "start $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" > $R/times
for sc in idle connect; do
  OUT_DIR=$R/$sc SERVERS="roomcast tt tt-tuned node" perf/scenarios/compare.sh $sc > $R/$sc.md 2>$R/$sc.err
  echo "$sc done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
done
OUT_DIR=$R/fanout SERVERS="roomcast tt tt-tuned node" perf/scenarios/compare.sh fanout > $R/fanout.md 2>$R/fanout.err
for s in roomcast tt tt-tuned node; do python3 perf/scenarios/steps.py $s $R/fanout/fanout-$s-[0-9].jsonl >> $R/fanout-steps.md 2>/dev/null; done
echo "fanout done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
for s in roomcast tt-tuned; do
  OUT_DIR=$R/overload SERVER=$s LABEL=$s-overload P99_LIMIT_MS=200 RATES=20,40,60,80,100,120,140,160,180,200,220,250 HEADER=0 perf/scenarios/fanout.sh >> $R/overload.md 2>>$R/overload.err
  python3 perf/scenarios/steps.py $s-overload $R/overload/fanout-$s-overload-[0-9].jsonl >> $R/overload-steps.md 2>/dev/null
done
echo "overload done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
OUT_DIR=$R/scaling SERVER=roomcast LABEL=roomcast-2sh SHARDS=2 SERVER_CPU=0,1 HEADER=0 perf/scenarios/fanout.sh > $R/scaling.md 2>$R/scaling.err
python3 perf/scenarios/steps.py roomcast-2sh $R/scaling/fanout-roomcast-2sh-[0-9].jsonl >> $R/scaling-steps.md 2>/dev/null
echo "scaling done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
for sc in chat chatmax; do
  OUT_DIR=$R/$sc SERVERS="roomcast tt tt-tuned node" perf/scenarios/compare.sh $sc > $R/$sc.md 2>$R/$sc.err
  echo "$sc done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
done
for s in roomcast tt tt-tuned node; do python3 perf/scenarios/steps.py $s $R/chatmax/chatmax-$s-[0-9].jsonl >> $R/chatmax-steps.md 2>/dev/null; done
# latency: a common rate all sustain (half the lowest knee), then half of each server's knee
python3 - "$R" > $R/knees <<'PY'
import json,glob,statistics,sys
for s in ["roomcast","tt","tt-tuned","node"]:
    ks=[]
    for f in sorted(glob.glob(f"{sys.argv[1]}/fanout/fanout-{s}-[0-9].jsonl")):
        best=0
        for l in open(f):
            j=json.loads(l)
            if j["latency_us"]["p99"]<=50000 and j["delivery_ratio"]>=0.95: best=max(best,j["target_rate"])
            else: break
        ks.append(best)
    print(s, int(statistics.median(ks)) if ks else 0)
PY
common=$(awk '{print $2}' $R/knees | sort -n | head -1); common=$((common/2)); [[ $common -lt 10 ]] && common=10
echo "common latency rate $common" >> $R/times
python3 perf/scenarios/summarize.py latency --header > $R/latency.md
while read s k; do
  OUT_DIR=$R/latency SERVER=$s LABEL="$s @$common" RATE=$common HEADER=0 perf/scenarios/latency.sh >> $R/latency.md 2>>$R/latency.err
done < $R/knees
while read s k; do
  half=$((k/2)); [[ $half -lt 5 ]] && half=5
  OUT_DIR=$R/latency SERVER=$s LABEL="$s @$half" RATE=$half HEADER=0 perf/scenarios/latency.sh >> $R/latency.md 2>>$R/latency.err
done < $R/knees
echo "latency done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
perf/scenarios/ingest.sh > $R/ingest.md 2>$R/ingest.err
echo "ingest done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
RATE=40 perf/profile.sh > $R/profile.md 2>$R/profile.err
RATE=40 CALLGRAPH=dwarf SVG=perf/flamegraph-fanout-dwarf.svg perf/profile.sh > $R/profile-dwarf.md 2>$R/profile-dwarf.err
ROOMS=5000 MEMBERS=2 RATE=10000 CALLGRAPH=dwarf SVG=perf/flamegraph-chat-dwarf.svg perf/profile.sh > $R/profile-chat.md 2>$R/profile-chat.err
echo "profile done $(ts) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $R/times
