#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the console's browser tests, installing
# Debian's chromium and chromium-driver packages when the machine has none.
#   scripts/chromium.sh      → /usr/bin/chromium
set -euo pipefail

for exe in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$exe" ] && [ -x "$exe" ]; then
    echo "$exe"
    exit 0
  fi
done
echo "installing Debian's chromium and chromium-driver packages" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
echo /usr/bin/chromium
