#!/usr/bin/env bash
# Copies cargo's output into the user-facing layout:
#   build/<profile>/lunet-run, build/<profile>/lunet.so,
#   build/<profile>/lunet/<driver>.so (and <driver>_tx.lua), build/<profile>/lunet/http{,c}.so,
#   build/<profile>/test/<test module>.so
# Usage: scripts/stage.sh release|debug
set -euo pipefail
profile=$1
src=target/$profile
out=build/$profile
mkdir -p "$out/lunet" "$out/test"
install -m 0755 crates/lunet/lunet-run "$out/lunet-run"
install -m 0755 "$src/liblunet.so" "$out/lunet.so"
for drv in sqlite3 mysql postgres; do
  if [ -f "$src/liblunet_$drv.so" ]; then
    install -m 0755 "$src/liblunet_$drv.so" "$out/lunet/$drv.so"
    # require("lunet.<driver>_tx"): the transaction helper, which lives in the driver.
    printf -- '-- require("lunet.%s_tx"): the transaction helper of lunet.%s.\nreturn require("lunet.%s").tx\n' \
      "$drv" "$drv" "$drv" > "$out/lunet/${drv}_tx.lua"
  fi
done
# lunet-http: one library holding both modules, installed under each name
# (Lua's C loader looks for luaopen_lunet_http in lunet/http.so, and for
# luaopen_lunet_httpc in lunet/httpc.so).
if [ -f "$src/liblunet_http.so" ]; then
  install -m 0755 "$src/liblunet_http.so" "$out/lunet/http.so"
  install -m 0755 "$src/liblunet_http.so" "$out/lunet/httpc.so"
fi
if [ -f "$src/liblunet_testmod.so" ]; then
  install -m 0755 "$src/liblunet_testmod.so" "$out/test/lunet_testmod.so"
fi
