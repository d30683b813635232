#!/usr/bin/env bash
# The pinned input of scripts/gen/pdf_cid2uni.py: Debian's poppler-data 0.4.12-1 (Adobe's CMaps and
# poppler's cidToUnicode tables), fetched with `apt-get download`, checked against its SHA-256 and
# unpacked into a cache (default <repo>/target/gen-inputs; reused while it is there). Prints the
# unpacked share/poppler directory, the argument pdf_cid2uni.py takes.
#
# Exit status: 0 done; 1 the download does not match the pinned SHA-256 (or unpacking failed);
# 3 the pinned package cannot be had here (no apt-get/dpkg-deb, or no reachable Debian suite carries
# that version, even after one `apt-get update` when run as root), which scripts/gen/check.sh
# reports as a skip.
#
# Usage: scripts/gen/poppler-data.sh
# Env:   GEN_CACHE (default <repo>/target/gen-inputs)
set -euo pipefail

PKG=poppler-data
VERSION=0.4.12-1
SHA256=7951512a24fc4ea05c246a0f9891dd1ec9844a886de6550ebd8c50e57db5441d

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${GEN_CACHE:-$ROOT/target/gen-inputs}"
DEST="$CACHE/${PKG}_$VERSION"
SHARE="$DEST/usr/share/poppler"

if [ -f "$DEST/.complete" ] && [ -d "$SHARE/cMap" ] && [ -d "$SHARE/cidToUnicode" ]; then
    echo "$SHARE"
    exit 0
fi
for tool in apt-get dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || { echo "poppler-data.sh: $tool not found: cannot get $PKG $VERSION" >&2; exit 3; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -qq "$PKG=$VERSION") >"$tmp/apt.log" 2>&1; }
if ! download; then
    if [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && download; then
        :
    else
        cat "$tmp/apt.log" >&2
        echo "poppler-data.sh: Debian's $PKG $VERSION cannot be downloaded here" >&2
        exit 3
    fi
fi
deb="$(ls "$tmp"/*.deb)"
got="$(sha256sum "$deb" | cut -d' ' -f1)"
if [ "$got" != "$SHA256" ]; then
    echo "poppler-data.sh: $(basename "$deb") has SHA-256 $got, pinned $SHA256" >&2
    exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
dpkg-deb -x "$deb" "$DEST"
[ -d "$SHARE/cMap" ] && [ -d "$SHARE/cidToUnicode" ] || { echo "poppler-data.sh: $SHARE lacks cMap/ or cidToUnicode/" >&2; exit 1; }
touch "$DEST/.complete"
echo "$SHARE"
