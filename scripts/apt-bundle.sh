#!/usr/bin/env bash
# Air-gapped GPU nodes: CUDA and torch are installed there, but no package registry is reachable.
#
#   on a connected Debian 12 machine:   bash scripts/apt-bundle.sh make  xft-apt-bundle.tar.gz
#   copy the tarball to the node, then: bash scripts/apt-bundle.sh install xft-apt-bundle.tar.gz
#                                       XFT_PYTHON=$(command -v python3) bash scripts/test.sh
#
# `make` downloads the Debian packages the build needs (setup.sh's list) with every dependency
# not already part of a minimal Debian 12 system; `install` installs them with dpkg, offline.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
packages=$(grep -oP '^apt_packages=\(\K[^)]*' "$root/scripts/setup.sh")
cmd=${1:-}; tarball=${2:-xft-apt-bundle.tar.gz}
case "$cmd" in
  make)
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/debs"
    apt-get update -qq
    # Resolve the full dependency closure, then download each .deb (no install here).
    deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
             --no-enhances $packages | grep -E '^[a-zA-Z0-9]' | sort -u)
    (cd "$work/debs" && apt-get download $deps 2>/dev/null || true)
    (cd "$work/debs" && for p in $packages; do ls ${p}_*.deb > /dev/null 2>&1 || apt-get download "$p"; done)
    echo "$packages" > "$work/debs/PACKAGES"
    # gloo's headers only (unpacked, not installed; see setup.sh).
    mkdir -p "$work/headers" && (cd "$work/headers" && apt-get download libgloo-dev)
    tar -C "$work" -czf "$tarball" debs headers
    echo "apt-bundle: $(ls "$work/debs" | grep -c '\.deb$') packages in $tarball"
    ;;
  install)
    work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
    tar -C "$work" -xzf "$tarball"
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    # dpkg -i on the whole set resolves order among them; already-installed versions are kept.
    $sudo dpkg -i --skip-same-version "$work"/debs/*.deb > /dev/null
    for p in $(cat "$work/debs/PACKAGES"); do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || { echo "apt-bundle: $p did not install" >&2; exit 1; }
    done
    if ls "$work"/headers/libgloo-dev_*.deb > /dev/null 2>&1; then
      mkdir -p "$root/.deps/gloo" && dpkg-deb -x "$work"/headers/libgloo-dev_*.deb "$root/.deps/gloo"
    fi
    echo "apt-bundle: installed $(cat "$work/debs/PACKAGES")"
    echo "now build against the node's torch: XFT_PYTHON=\$(command -v python3) bash scripts/test.sh"
    ;;
  *) echo "usage: $0 make|install TARBALL" >&2; exit 2 ;;
esac
