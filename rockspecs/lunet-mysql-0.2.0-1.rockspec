rockspec_format = "3.0"
package = "lunet-mysql"
version = "0.2.0-1"
source = {
  url = "git+https://example.invalid/lunet.git",
  tag = "v0.2.0",
}
description = {
  summary = "MySQL/MariaDB driver for lunet: statements on libuv's thread pool, coroutines keep running",
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT
  "lunet == 0.2.0",
}
external_dependencies = {
  MARIADB = { header = "mariadb/mysql.h", library = "mariadb" },
}
build = {
  -- Needs a Rust toolchain (cargo) and MariaDB Connector/C's development
  -- files (Debian: libmariadb-dev).
  type = "command",
  build_command = "cargo build --release -p lunet-mysql && bash scripts/stage.sh release",
  install = {
    lib = { ["lunet.mysql"] = "build/release/lunet/mysql.so" },
    lua = { ["lunet.mysql_tx"] = "build/release/lunet/mysql_tx.lua" },
  },
}
test = {
  -- Builds the rock (release), then runs its specs with busted under luajit
  -- (Debian: lua-busted); arguments after the rockspec go to busted.
  type = "command",
  command = "bash scripts/rock-test.sh lunet-mysql",
}
