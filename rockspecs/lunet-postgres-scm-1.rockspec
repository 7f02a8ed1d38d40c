rockspec_format = "3.0"
package = "lunet-postgres"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lunet.git",
}
description = {
  summary = "PostgreSQL driver for lunet: statements on libuv's thread pool, coroutines keep running",
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT
  "lunet",
}
external_dependencies = {
  PQ = { header = "postgresql/libpq-fe.h", library = "pq" },
}
build = {
  -- Needs a Rust toolchain (cargo) and libpq's development
  -- files (Debian: libpq-dev).
  type = "command",
  build_command = "cargo build --release -p lunet-postgres && bash scripts/stage.sh release",
  install = {
    lib = { ["lunet.postgres"] = "build/release/lunet/postgres.so" },
    lua = { ["lunet.postgres_tx"] = "build/release/lunet/postgres_tx.lua" },
  },
}
test = {
  -- Builds the rock (release), then runs its specs with busted under luajit
  -- (Debian: lua-busted); arguments after the rockspec go to busted.
  type = "command",
  command = "bash scripts/rock-test.sh lunet-postgres",
}
