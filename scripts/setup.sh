#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian 12 machine with the CUDA toolkit:
# Debian's -dev packages, and LibTorch as the pinned PyPI torch wheel in a project-local venv.
# Re-running is quick and changes nothing once everything is in place.
#
# XFT_PYTHON=/path/to/python3  use that interpreter's torch instead of the venv (a GPU machine's
#                              own torch 2.11, say); nothing is installed into it.
# XFT_SKIP_APT=1               skip the Debian packages (air-gapped nodes install them from the
#                              bundle made by scripts/apt-bundle.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

apt_packages=(nlohmann-json3-dev libsentencepiece-dev sentencepiece libcli11-dev libpcre2-dev libutf8proc-dev zlib1g-dev libgtest-dev libgmock-dev ninja-build clang-format
  # MultiPL-E's toolchains (the evaluation compiles and runs C++, Java, JavaScript, TypeScript, Rust, Go, PHP
  # and Bash programs in its sandbox)
  g++ default-jdk-headless nodejs node-typescript rustc golang-go php-cli)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${XFT_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Gloo's headers (the Gloo code itself is inside libtorch; the wheel ships c10d's headers but not
# gloo's): Debian's libgloo-dev, unpacked into .deps/gloo without installing its dependencies.
if [ ! -f /usr/include/gloo/context.h ] && [ ! -f "$root/.deps/gloo/usr/include/gloo/context.h" ]; then
  if [ "${XFT_SKIP_APT:-0}" != 1 ]; then
    echo "setup: fetching gloo headers (libgloo-dev) into .deps/gloo"
    tmp=$(mktemp -d); chmod 777 "$tmp"
    (cd "$tmp" && { apt-get download libgloo-dev >/dev/null 2>&1 ||
                    { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get update -qq && apt-get download libgloo-dev >/dev/null; }; })
    mkdir -p "$root/.deps/gloo"
    dpkg-deb -x "$tmp"/libgloo-dev_*.deb "$root/.deps/gloo"
    rm -rf "$tmp"
  fi
fi

if [ -n "${XFT_PYTHON:-}" ]; then
  "$XFT_PYTHON" -c 'import torch' || { echo "setup: XFT_PYTHON=$XFT_PYTHON has no torch" >&2; exit 1; }
  echo "setup: using torch from $XFT_PYTHON ($("$XFT_PYTHON" -c 'import torch; print(torch.__version__)'))"
  exit 0
fi

venv="$root/.venv"
stamp="$venv/.requirements.sha256"
want=$(cat scripts/requirements.txt scripts/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $venv is up to date"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --progress-bar off -r scripts/requirements.txt
"$venv/bin/python" -m pip install -q --progress-bar off --no-deps -r scripts/requirements-nodeps.txt
echo "$want" > "$stamp"
echo "setup: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') in $venv"
