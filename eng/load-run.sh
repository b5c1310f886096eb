#!/usr/bin/env bash
# Runs the time-bound test categories N times in a row (20 by default) beside two CPU-burning processes, as a loaded
# CI machine would, and prints one line per run. Build first: dotnet build DirtyLog.sln -c Release.
# usage: eng/load-run.sh [runs]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
filter='TestCategory=Kvm|TestCategory=Userfaultfd|TestCategory=Concurrency|FullyQualifiedName~Emulated|FullyQualifiedName~DirtyRing|FullyQualifiedName~Harvest|FullyQualifiedName~CopyBeforeWrite'
yes > /dev/null & burner1=$!
yes > /dev/null & burner2=$!
trap 'kill $burner1 $burner2 2>/dev/null' EXIT
failed_runs=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  log=$(dotnet test tests/DirtyLog.Tests -c Release --no-build --filter "$filter" 2>&1)
  rc=$?
  [ $rc -eq 0 ] || failed_runs=$((failed_runs + 1))
  counts=$(printf '%s\n' "$log" | grep -E '^\s+(total|failed|succeeded|skipped):' | tr -s ' ' | tr '\n' ' ')
  echo "run $i rc=$rc ${counts}load=$(cut -d' ' -f1 /proc/loadavg) secs=$(( $(date +%s) - start ))"
  [ $rc -eq 0 ] || printf '%s\n' "$log" | grep -E -A12 '^failed' | head -40
done
echo "$((runs - failed_runs)) of $runs runs passed"
[ $failed_runs -eq 0 ]
