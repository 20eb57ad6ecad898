#!/usr/bin/env bash
# Installs the TypeScript compiler from the npm registry into the cache (outside git) and prints
# the path of its tsc. make test uses it to type-check the packages generate-types writes.
# Node.js and npm come from the machine (Debian's nodejs/npm packages are installed when missing).
set -euo pipefail
version=${TYPESCRIPT_VERSION:-7.0.2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/erpstream/typescript-$version
tsc=$cache/node_modules/.bin/tsc
log() { echo "typescript: $*" >&2; }
if [ ! -x "$tsc" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    log "installing Debian's nodejs and npm packages"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  log "installing typescript@$version from the npm registry into $cache"
  mkdir -p "$cache"
  npm install --silent --no-audit --no-fund --prefix "$cache" "typescript@$version" >"$cache/npm.log" 2>&1 ||
    { tail -n 20 "$cache/npm.log" >&2; exit 1; }
fi
echo "$tsc"
