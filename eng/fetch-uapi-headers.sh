#!/usr/bin/env bash
# Fetches Debian trixie's linux-libc-dev (kernel uapi headers 6.12, which have iommufd's dirty tracking)
# into a private folder and prints the include directory. Nothing is installed and the system's apt
# configuration is left untouched (eng/debian-download.sh, then `dpkg -x`).
#
# Usage: eng/fetch-uapi-headers.sh [destination]   (default: .uapi in the repository root)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.uapi}
suite=${UAPI_SUITE:-trixie}

if [ -f "$dest/usr/include/linux/iommufd.h" ] && [ -f "$dest/usr/include/linux/vfio.h" ]; then
  echo "$dest/usr/include"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb=$(bash "$repo/eng/debian-download.sh" linux-libc-dev "$work" "$suite")
mkdir -p "$dest"
dpkg -x "$deb" "$dest"
basename "$deb" >"$dest/PACKAGE"
echo "$dest/usr/include"
