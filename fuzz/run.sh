#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: build every cargo-fuzz target (with debug assertions), then
# run each (or the TARGETs named) for SECONDS with libFuzzer, one after another, from its seed
# corpus fuzz/seeds/<target>/ (read only) and its grown corpus fuzz/corpus/<target>/ (not
# committed). Exits non-zero when any target crashes, fails an invariant or times out; the
# input is left in fuzz/artifacts/<target>/ and the log in fuzz/logs/<target>.log.
# Needs cargo-fuzz and, on a stable toolchain, RUSTC_BOOTSTRAP=1 (set here) for its -Z flags.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets (is cargo-fuzz installed?)" >&2
  exit 1
fi

start=$(date +%s)
cargo fuzz build -a
echo "fuzz: build took $(($(date +%s) - start)) s"

mkdir -p logs
failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="logs/$target.log"
  # -timeout: one input taking 10 s is a finding too; -print_final_stats: executions.
  if cargo fuzz run -a "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  echo "fuzz: $target $status: ${runs:-?} executions; $last"
  if [ "$status" = FAILED ]; then tail -n 60 "$log"; fi
done
echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed, $(($(date +%s) - start)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)"
  exit 1
fi
