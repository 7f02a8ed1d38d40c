#!/usr/bin/env bash
# `make rocks`: a binary rock for every rock, for machines without a Rust
# toolchain. Each versioned rockspec (rockspecs/<rock>-<version>-1.rockspec,
# the version from the Cargo workspace) is built and installed into a
# temporary tree with `luarocks make`, then packed from there with `luarocks
# pack` into dist/ (or the folder given): <rock>-<version>-1.linux-<arch>.rock,
# holding the built libraries, lunet-run, and for the core types/ and docs/.
# Usage: scripts/make-rocks.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
version=$(luajit -e 'io.write(dofile("scripts/gen-rockspecs.lua").version())')
tree=$(mktemp -d /tmp/lunet-pack-XXXXXX)
trap 'rm -rf "$tree"' EXIT
rocks() { luarocks --lua-version 5.1 --tree "$tree" "$@"; }
# The core first: the drivers depend on it.
names=(lunet)
for s in rockspecs/lunet-*-"$version"-1.rockspec; do
  n=$(basename "$s" "-$version-1.rockspec")
  names+=("$n")
done
for name in "${names[@]}"; do
  spec=rockspecs/$name-$version-1.rockspec
  [ -f "$spec" ] || { echo "make-rocks: $spec is missing (make rockspecs)" >&2; exit 1; }
  rocks make "$spec" >"$tree/make-$name.log" 2>&1 || { tail -20 "$tree/make-$name.log" >&2; exit 1; }
  (cd "$out" && rocks pack "$name" "$version-1" >/dev/null)
done
ls -1 "$out"/*-"$version"-1.*.rock
