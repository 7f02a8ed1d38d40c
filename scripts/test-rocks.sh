#!/usr/bin/env bash
# Installs every rockspec into a temporary tree with Debian's luarocks (Lua 5.1
# mode, which runs LuaJIT), then checks what a user would do with it:
# require each module from plain luajit after `luarocks path`, and run a
# script that uses a driver with the installed lunet-run.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d /tmp/lunet-rocks-XXXXXX)
trap 'rm -rf "$tree"' EXIT
rocks() { luarocks --lua-version 5.1 --tree "$tree" "$@"; }
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }

# Every rockspec, the versioned ones included, passes luarocks' checks, and
# the versioned ones are what the scm-1 ones and the Cargo version make.
for spec in rockspecs/*.rockspec; do
  if out=$(rocks lint "$spec" 2>&1); then ok "luarocks lint $(basename "$spec")"; else bad "luarocks lint $spec: $out"; fi
done
if out=$(luajit scripts/gen-rockspecs.lua --check 2>&1); then
  ok "versioned rockspecs match the scm-1 ones and Cargo.toml's version"
else
  bad "versioned rockspecs: $out"
fi
version=$(luajit -e 'io.write(dofile("scripts/gen-rockspecs.lua").version())')

# The core first: the drivers depend on it.
specs=(rockspecs/lunet-scm-1.rockspec)
for s in rockspecs/lunet-*-scm-1.rockspec; do specs+=("$s"); done
for spec in "${specs[@]}"; do
  name=$(basename "$spec" -scm-1.rockspec)
  if rocks make "$spec" >"$tree/build-$name.log" 2>&1; then
    ok "luarocks make $name"
  else
    bad "luarocks make $name"; tail -20 "$tree/build-$name.log" | sed 's/^/    /'
  fi
done

# Every module, from plain luajit with the tree's paths, outside the repo.
# The core's submodules are the luaopen_lunet_* functions lunet.so exports.
modules=(lunet)
for sym in $(nm -D --defined-only "$tree/lib/lua/5.1/lunet.so" | grep -o 'luaopen_lunet_[a-z0-9_]*'); do
  modules+=("lunet.${sym#luaopen_lunet_}")
done
for s in "${specs[@]:1}"; do
  d=$(basename "$s" -scm-1.rockspec); d=${d#lunet-}
  if [ "$d" = http ]; then
    modules+=(lunet.http lunet.httpc) # the lunet-http rock: two modules, no driver helper
  else
    modules+=("lunet.$d" "lunet.${d}_tx")
  fi
done
for m in "${modules[@]}"; do
  if out=$(cd / && eval "$(rocks path)" && luajit -e "
      local m = require('$m')
      assert(type(m) == 'table', 'module is not a table')
      assert(package.searchpath('lunet', package.cpath):find('$tree', 1, true), 'not loaded from the tree')
      print('loaded')" 2>&1) && [ "$out" = loaded ]; then
    ok "require('$m') from the tree"
  else
    bad "require('$m') from the tree: $out"
  fi
done

# Runs Lua source (stdin) with the installed launcher, outside the repo, and
# checks its exit status and output. Usage: installed_run NAME RC OUTPUT <<'LUA'
installed_run() {
  local name=$1 want_rc=$2 want_out=$3 script out rc
  script=$(mktemp /tmp/lunet-rock-script-XXXXXX.lua)
  cat >"$script"
  set +e
  out=$(cd / && "$tree/bin/lunet-run" "$script" 2>&1); rc=$?
  set -e
  rm -f "$script"
  if [ "$rc" -eq "$want_rc" ] && [ "$out" = "$want_out" ]; then
    ok "$name"
  else
    bad "$name (exit $rc): $out"
  fi
}

installed_run "installed lunet-run runs a script using lunet.sqlite3" 7 "answer 42" <<'LUA'
local lunet = require("lunet")
local db = require("lunet.sqlite3")
lunet.spawn(function()
  local c = assert(db.open())
  local rows = assert(db.query(c, "SELECT 40 + ? AS answer", 2))
  print("answer " .. rows[1].answer)
  db.close(c)
  __lunet_exit_code = 7
end)
LUA

installed_run "installed lunet-run serves and fetches with lunet.http / lunet.httpc" 0 "200 hi /rock" <<'LUA'
local lunet, http, httpc = require("lunet"), require("lunet.http"), require("lunet.httpc")
local srv = assert(http.serve({ port = 0 }, function(req) return 200, nil, "hi " .. req.path end))
lunet.spawn(function()
  local _, port = srv:address()
  local r = assert(httpc.request({ url = "http://127.0.0.1:" .. port .. "/rock" }))
  print(r.status .. " " .. r.body)
  srv:close()
  httpc.close_idle()
end)
LUA

# The core rock installs the annotations and the API reference where the
# README tells editors to look.
rockdir=$(rocks show --rock-dir lunet 2>/dev/null || true)
if [ -f "$rockdir/types/lunet.lua" ] && [ -f "$rockdir/types/lunet/socket.lua" ] && [ -f "$rockdir/docs/API.md" ]; then
  ok "types/ and docs/ installed in $rockdir"
else
  bad "types/ and docs/ not installed in the rock's folder ($rockdir)"
fi

# `luarocks test` runs the rock's specs (here one file, to keep this short).
if out=$(rocks test rockspecs/lunet-scm-1.rockspec spec/loading_spec.lua 2>&1) && [[ $out == *" successes / 0 failures / 0 errors"* ]]; then
  ok "luarocks test runs the specs"
else
  bad "luarocks test: $(tail -5 <<<"$out")"
fi

# Binary rocks: packed from the tree, installed into a second tree by a
# luarocks that cannot find cargo, and used there.
packed=$(mktemp -d /tmp/lunet-packed-XXXXXX)
tree2=$(mktemp -d /tmp/lunet-rocks2-XXXXXX)
trap 'rm -rf "$tree" "$packed" "$tree2"' EXIT
nocargo="/usr/local/bin:/usr/bin:/bin"
for spec in "${specs[@]}"; do
  name=$(basename "$spec" -scm-1.rockspec)
  if (cd "$packed" && rocks pack "$name" scm-1 >/dev/null 2>&1) \
     && out=$(cd / && PATH=$nocargo luarocks --lua-version 5.1 --tree "$tree2" install "$packed/$name-scm-1".*.rock 2>&1); then
    ok "binary rock $name installs without cargo"
  else
    bad "binary rock $name: $out"
  fi
done
if out=$(cd / && PATH=$nocargo "$tree2/bin/lunet-run" --version 2>&1) && [ "$out" = "lunet-run $version" ] \
   && out=$(cd / && eval "$(luarocks --lua-version 5.1 --tree "$tree2" path)" && PATH=$nocargo luajit -e "
      print(require('lunet.sqlite3')._VERSION, require('lunet.socket')._VERSION)" 2>&1) && [ "$out" = "$version	$version" ]; then
  ok "binary rocks: lunet-run --version and the modules' _VERSION say $version"
else
  bad "binary rocks in use: $out"
fi

# The supervisor starts each worker the way the wrapper started it.
script=$(mktemp /tmp/lunet-rock-XXXXXX.lua)
echo 'print("worker " .. require("lunet").worker().id)' >"$script"
set +e
out=$(cd / && timeout 30 "$tree/bin/lunet-run" --workers 2 "$script" 2>/dev/null | sort | tr '\n' ' '); rc=$?
set -e
rm -f "$script"
if [ "$rc" -eq 0 ] && [ "$out" = "worker 1 worker 2 " ]; then
  ok "installed lunet-run --workers 2 starts two workers"
else
  bad "installed lunet-run --workers 2 (exit $rc): $out"
fi

echo "rocks: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
