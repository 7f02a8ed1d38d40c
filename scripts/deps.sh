#!/usr/bin/env bash
# Installs the Debian packages lunet needs to build and test, if any are missing.
# Usage: scripts/deps.sh [build|test]   (test = build + runtime/test tools + DB servers)
set -euo pipefail

want=(pkg-config libclang-dev clang build-essential binutils luajit libluajit-5.1-dev
      libsqlite3-dev libmariadb-dev libpq-dev)
if [ "${1:-build}" = test ]; then
  want+=(lua-busted luarocks curl mariadb-server mariadb-client postgresql postgresql-client)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
