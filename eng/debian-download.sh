#!/usr/bin/env bash
# Downloads one package of a Debian suite (trixie by default) into a folder and prints the .deb's path, without
# installing anything or touching the machine's apt configuration: a private sources list (whose mirror is the
# first Debian archive of this machine's own apt sources, deb822 or one-line), private state and cache folders,
# then `apt-get download`. The eng/ scripts that need a newer kernel's headers or source share it.
# Usage: eng/debian-download.sh PACKAGE FOLDER [SUITE]
set -euo pipefail
package=$1 folder=$2 suite=${3:-trixie}

# Either sources file may be missing: the list is read whatever sed says about them.
mirror=$({ sed -nE 's/^\s*URIs:\s*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' || true
           sed -nE 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
         grep -E '/debian/?$' | head -n1 || true)
[[ -n $mirror ]] || { echo "debian-download: no Debian archive in this machine's apt sources" >&2; exit 1; }

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts" "$state/prefs" "$folder"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$state/sources.list"
private=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/parts"
         -o "Dir::Etc::Preferences=$state/prefs/none" -o "Dir::Etc::PreferencesParts=$state/prefs"
         -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "APT::Get::List-Cleanup=0"
         -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
echo "debian-download: $package from $suite at $mirror" >&2
apt-get "${private[@]}" -qq update >&2
(cd "$folder" && apt-get "${private[@]}" -qq download "$package/$suite" >&2)
ls "$folder/${package}"_*.deb | head -n1
