#!/usr/bin/env bash
# Adds every public symbol that the build reports as undeclared (RS0016) to the project's
# PublicAPI.Unshipped.txt, then sorts it. Review the diff: it is the public API change.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
dotnet build DirtyLog.sln -p:TreatWarningsAsErrors=false -p:WarningsAsErrors=RS9999 --no-incremental >"$log" 2>&1 || true
grep -oE "RS0016: Symbol '.*' is not part of the declared public API.*\[[^]]*\.csproj\]" "$log" |
  sed -E "s/RS0016: Symbol '(.*)' is not part of the declared public API.*\[(.*)\/[^/]*\.csproj\]/\2\t\1/" |
  sort -u | while IFS=$'\t' read -r dir symbol; do
    printf '%s\n' "$symbol" >>"$dir/PublicAPI.Unshipped.txt"
  done
# Lines for symbols that no longer exist (RS0017) are removed.
grep -oE "RS0017: Symbol '.*' is part of the declared API.*\[[^]]*\.csproj\]" "$log" |
  sed -E "s/RS0017: Symbol '(.*)' is part of the declared API.*\[(.*)\/[^/]*\.csproj\]/\2\t\1/" |
  sort -u | while IFS=$'\t' read -r dir symbol; do
    grep -vxF -- "$symbol" "$dir/PublicAPI.Unshipped.txt" >"$dir/PublicAPI.Unshipped.txt.tmp" || true
    mv "$dir/PublicAPI.Unshipped.txt.tmp" "$dir/PublicAPI.Unshipped.txt"
  done
for f in src/*/PublicAPI.Unshipped.txt; do
  { echo '#nullable enable'; grep -v '^#nullable enable$' "$f" | sort -u || true; } >"$f.tmp"
  mv "$f.tmp" "$f"
done
rm -f "$log"
git --no-pager diff --stat -- 'src/*/PublicAPI.*.txt' || true
# The lenient build above leaves up-to-date outputs that would hide other warnings: rebuild strictly.
dotnet build DirtyLog.sln --no-incremental -v q -nologo | grep -E "error|Error" || true
