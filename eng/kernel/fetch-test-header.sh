#!/usr/bin/env bash
# Fetches the kernel source's iommufd_test.h (the test IOMMU's command struct; not a uapi header, so not in
# linux-libc-dev) from Debian trixie's linux-source-6.12 into a private folder and prints its path. Nothing is
# installed and the machine's apt configuration is untouched (private sources list, state and cache, then
# `apt-get download` and `dpkg -x`); the result is kept in .uapi/kernel-source and reused.
# Usage: eng/kernel/fetch-test-header.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=$repo/.uapi/kernel-source
header=$dest/drivers/iommu/iommufd/iommufd_test.h
if [[ -f $header ]]; then echo "$header"; exit 0; fi

# (Either file may be missing: the list is read whatever sed says about them.)
mirror=$({ sed -nE 's/^\s*URIs:\s*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' || true
           sed -nE 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
         grep -E '/debian/?$' | head -n1 || true)
[[ -n $mirror ]] || { echo "fetch-test-header: no Debian archive in this machine's apt sources" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/prefs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources.list"
private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
         -o "Dir::Etc::Preferences=$work/prefs/none" -o "Dir::Etc::PreferencesParts=$work/prefs"
         -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Get::List-Cleanup=0"
         -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${private[@]}" -qq update >&2
(cd "$work" && apt-get "${private[@]}" -qq download linux-source-6.12 >&2)
dpkg -x "$work"/linux-source-6.12_*.deb "$work/deb"
mkdir -p "$(dirname "$header")"
tar -xJf "$work"/deb/usr/src/linux-source-6.12.tar.xz -O linux-source-6.12/drivers/iommu/iommufd/iommufd_test.h >"$header.part"
mv "$header.part" "$header"
echo "$header"
