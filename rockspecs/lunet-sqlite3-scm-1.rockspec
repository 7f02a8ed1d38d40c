rockspec_format = "3.0"
package = "lunet-sqlite3"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lunet.git",
}
description = {
  summary = "SQLite driver for lunet: statements on libuv's thread pool, coroutines keep running",
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT
  "lunet",
}
external_dependencies = {
  SQLITE3 = { header = "sqlite3.h", library = "sqlite3" },
}
build = {
  -- Needs a Rust toolchain (cargo) and the SQLite development files.
  type = "command",
  build_command = "cargo build --release -p lunet-sqlite3 && bash scripts/stage.sh release",
  install = {
    lib = { ["lunet.sqlite3"] = "build/release/lunet/sqlite3.so" },
    lua = { ["lunet.sqlite3_tx"] = "build/release/lunet/sqlite3_tx.lua" },
  },
}
test = {
  -- Builds the rock (release), then runs its specs with busted under luajit
  -- (Debian: lua-busted); arguments after the rockspec go to busted.
  type = "command",
  command = "bash scripts/rock-test.sh lunet-sqlite3",
}
