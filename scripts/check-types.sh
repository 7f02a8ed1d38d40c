#!/usr/bin/env bash
# `make test-types`: type-checks code that uses lunet against the annotations
# in types/ with emmylua_check (EmmyLua's checker, from crates.io; `scripts/
# deps.sh test` installs it): examples/ and the README's complete programs
# (its Lua blocks that start with `local lunet = require("lunet")` and
# require nothing but lunet's modules), warnings
# as errors, with the project's .emmyrc.json. A control file that waits
# outside an async function must be flagged, so a run that lost the
# annotations cannot pass.
set -euo pipefail
cd "$(dirname "$0")/.."
check=${EMMYLUA_CHECK:-$(command -v emmylua_check || echo "$HOME/.cargo/bin/emmylua_check")}
[ -x "$check" ] || { echo "check-types: emmylua_check not found (scripts/deps.sh test installs it)" >&2; exit 1; }
work=$(mktemp -d /tmp/lunet-types-XXXXXX)
trap 'rm -rf "$work"' EXIT
# The config with types/ as an absolute path: the checked files live elsewhere.
sed "s|\"library\": \\[\"types\"\\]|\"library\": [\"$PWD/types\"]|" .emmyrc.json >"$work/emmyrc.json"
grep -q "\"$PWD/types\"" "$work/emmyrc.json" || { echo "check-types: .emmyrc.json has no \"library\": [\"types\"]" >&2; exit 1; }

mkdir "$work/readme" "$work/control"
OUT="$work/readme" luajit -e '
  local f = assert(io.open("README.md", "rb")); local s = f:read("*a"); f:close()
  local n = 0
  for block in s:gmatch("\n```lua\n(.-)```") do
    local foreign = false -- (a program that also needs lua-cjson, say: no types for it here)
    for m in block:gmatch("require%(\"([^\"]+)\"%)") do
      if m ~= "lunet" and not m:find("^lunet%.") then foreign = true end
    end
    if block:find("^local lunet = require%(\"lunet\"%)\n") and not foreign then
      n = n + 1
      local out = assert(io.open(("%s/program_%02d.lua"):format(os.getenv("OUT"), n), "wb"))
      out:write(block); out:close()
    end
  end
  assert(n > 0, "no complete program in README.md")
  io.write(n)' >"$work/count"
echo "check-types: examples/ and $(cat "$work/count") README programs"

status=0
"$check" -c "$work/emmyrc.json" --severity warn --warnings-as-errors examples || status=1
"$check" -c "$work/emmyrc.json" --severity warn --warnings-as-errors "$work/readme" || status=1

cat >"$work/control/waits_in_sync.lua" <<'LUA'
local lunet = require("lunet")
local function not_async() lunet.sleep(1) end
not_async()
LUA
if out=$("$check" -c "$work/emmyrc.json" --severity warn --warnings-as-errors "$work/control" 2>&1) || [[ $out != *await-in-sync* ]]; then
  echo "check-types: the control file was not flagged (are the annotations loaded?):" >&2
  echo "$out" >&2
  status=1
fi
[ $status -eq 0 ] && echo "check-types: no issues"
exit $status
