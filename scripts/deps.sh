#!/usr/bin/env bash
# Installs the Debian packages lunet needs to build and test, if any are missing.
# Usage: scripts/deps.sh [build|test|bench]
#   test  = build + runtime/test tools + DB servers
#   bench = build + what bench/net.sh compares against and measures with
set -euo pipefail

want=(pkg-config libclang-dev clang build-essential binutils luajit libluajit-5.1-dev
      libsqlite3-dev libmariadb-dev libpq-dev)
if [ "${1:-build}" = test ]; then
  want+=(lua-busted lua-luv luarocks curl wrk openssl ca-certificates python3 python3-websockets lua-cjson mariadb-server mariadb-client postgresql postgresql-client)
fi
if [ "${1:-build}" = bench ]; then
  want+=(wrk lua-luv nginx openssl strace linux-perf)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# The type checker of `make test-types` (EmmyLua's, from crates.io), built
# once into ~/.cargo/bin after the packages it needs to build. Unoptimised
# (--debug): it builds in half the time (about 4 minutes on 2 busy cores,
# against 8.5 optimised) and still checks this project in a second or two.
emmylua() {
  [ "${1:-build}" = test ] || return 0
  command -v emmylua_check >/dev/null || [ -x "$HOME/.cargo/bin/emmylua_check" ] && return 0
  echo "deps: building emmylua_check with cargo install (a few minutes, once)" >&2
  ${CARGO:-cargo} install --quiet --debug --locked --version "$EMMYLUA_VERSION" emmylua_check
}
EMMYLUA_VERSION=0.25.1
if [ ${#missing[@]} -eq 0 ]; then emmylua "${1:-build}"; exit; fi

echo "deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The benchmark starts nginx itself on 127.0.0.1 with its own configuration;
# the package must not start the system service (port 80) when it installs.
# Unless the machine has a policy-rc.d of its own, one that refuses every
# start is put in place for the duration of that install.
policy=
if [ "${1:-build}" = bench ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
fi
rc=0
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
[ -n "$policy" ] && $SUDO rm -f "$policy"
[ $rc -eq 0 ] || exit $rc
emmylua "${1:-build}"
