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
  want+=(wrk lua-luv nginx libpcre3 openssl strace linux-perf)
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
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

# OpenResty's core for bench/net.sh's `openresty` row: Debian's nginx Lua
# module (lua-nginx-module, with lua-resty-core and OpenResty's LuaJIT
# branch), unpacked into .tmp/bench/lua-nginx and NOT installed: installing
# it replaces Debian's luajit, which lunet runs on (libluajit2-5.1-2
# conflicts with libluajit-5.1-2; apt would remove luajit). nginx loads it
# from there (load_module, LD_LIBRARY_PATH for the LuaJIT branch).
LUA_NGINX_DEBS=(libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache libluajit2-5.1-2)
lua_nginx() {
  [ "${1:-build}" = bench ] || return 0
  local dir tmp
  dir="$(cd "$(dirname "$0")/.." && pwd)/.tmp/bench/lua-nginx"
  [ -e "$dir/usr/lib/nginx/modules/ngx_http_lua_module.so" ] && return 0
  echo "deps: unpacking ${LUA_NGINX_DEBS[*]} into $dir (for bench/net.sh; not installed)" >&2
  tmp=$(mktemp -d)
  # apt-get download wants current package lists; refresh them if it fails.
  if ! (cd "$tmp" && apt-get download -qq "${LUA_NGINX_DEBS[@]}" 2>/dev/null); then
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq "${LUA_NGINX_DEBS[@]}" 2>/dev/null)
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$tmp"
}
if [ ${#missing[@]} -eq 0 ]; then
  emmylua "${1:-build}"
  lua_nginx "${1:-build}"
  exit
fi

echo "deps: installing ${missing[*]}" >&2
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
lua_nginx "${1:-build}"
