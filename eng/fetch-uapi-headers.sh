#!/usr/bin/env bash
# Fetches Debian trixie's linux-libc-dev (kernel uapi headers 6.12, which have iommufd's dirty tracking)
# into a private folder and prints the include directory. Nothing is installed and the system's apt
# configuration is left untouched: a private sources list (whose mirror is taken from this machine's
# own apt sources), private state and cache folders, `apt-get download`, then `dpkg -x`.
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

# The machine's own Debian mirror: the first "debian" archive URI of its apt sources (deb822 or one-line).
mirror=$( { grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -E 's/^\s*URIs:\s*//' | tr ' ' '\n'
            grep -hE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/'
          } | grep -E '/debian/?$' | head -1 || true)
if [ -z "$mirror" ]; then
  echo "fetch-uapi-headers: no Debian archive found in this machine's apt sources" >&2
  exit 1
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/prefs"
echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::Etc::Preferences=$work/prefs/none"
  -o "Dir::Etc::PreferencesParts=$work/prefs"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
echo "fetch-uapi-headers: linux-libc-dev from $suite at $mirror" >&2
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work" && apt-get "${apt_opts[@]}" -qq download "linux-libc-dev/$suite" >&2)
deb=$(ls "$work"/linux-libc-dev_*.deb)
mkdir -p "$dest"
dpkg -x "$deb" "$dest"
basename "$deb" >"$dest/PACKAGE"
echo "$dest/usr/include"
