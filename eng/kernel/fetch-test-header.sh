#!/usr/bin/env bash
# Fetches the kernel source's iommufd_test.h (the test IOMMU's command struct; not a uapi header, so not in
# linux-libc-dev) from Debian trixie's linux-source-6.12 into a private folder and prints its path. Nothing is
# installed and the machine's apt configuration is untouched (eng/debian-download.sh, then `dpkg -x`); the result
# is kept in .uapi/kernel-source and reused.
# Usage: eng/kernel/fetch-test-header.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest=$repo/.uapi/kernel-source
header=$dest/drivers/iommu/iommufd/iommufd_test.h
if [[ -f $header ]]; then echo "$header"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb=$(bash "$repo/eng/debian-download.sh" linux-source-6.12 "$work")
dpkg -x "$deb" "$work/deb"
mkdir -p "$(dirname "$header")"
tar -xJf "$work"/deb/usr/src/linux-source-6.12.tar.xz -O linux-source-6.12/drivers/iommu/iommufd/iommufd_test.h >"$header.part"
mv "$header.part" "$header"
echo "$header"
