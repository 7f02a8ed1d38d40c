#!/usr/bin/env bash
# What `luarocks test rockspecs/<rock>-<version>.rockspec` runs (the rockspecs'
# `test` section): builds the workspace (release) into build/release, then runs
# the rock's specs with busted under luajit, as `make test-spec` does.
#   lunet            every spec in spec/ (the ones touching MySQL and
#                    PostgreSQL need the test servers: `make db-up`)
#   lunet-<driver>   spec/<driver>_spec.lua
# Arguments are passed on to busted; spec files among them replace the rock's
# list (`luarocks test rockspecs/lunet-scm-1.rockspec spec/fs_spec.lua`).
# Usage: scripts/rock-test.sh <rock> [busted arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
rock=${1:?usage: scripts/rock-test.sh <rock> [busted arguments...]}
shift
case $rock in
  lunet) specs=(spec) ;;
  lunet-sqlite3|lunet-mysql|lunet-postgres) specs=("spec/${rock#lunet-}_spec.lua") ;;
  *) echo "rock-test: unknown rock $rock" >&2; exit 2 ;;
esac
for a in "$@"; do
  if [ "${a#-}" = "$a" ]; then specs=(); break; fi
done
busted=$(command -v busted) || { echo "rock-test: busted not found (Debian: apt-get install lua-busted)" >&2; exit 1; }
${CARGO:-cargo} build --release --workspace
bash scripts/stage.sh release
# --ignore-lua: already under luajit (.busted's `lua` would start it again).
LUNET_BUILD=build/release exec luajit "$busted" --ignore-lua "$@" "${specs[@]}"
