rockspec_format = "3.0"
package = "lunet"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lunet.git",
}
description = {
  summary = "Coroutine networking for LuaJIT on libuv: timers, TCP/Unix sockets, UDP, files, signals",
  detailed = [[
    lunet runs many coroutines on one libuv event loop: a call that has to wait
    (a socket read, a timer, a file read) suspends only its coroutine. Tasks
    can be joined and cancelled, and every wait can time out. Includes
    lunet.test, a helper for running lunet code in busted specs. Written
    in Rust; loads into stock LuaJIT. Database drivers are separate rocks:
    lunet-sqlite3, lunet-mysql, lunet-postgres.
  ]],
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT
}
build = {
  -- Needs a Rust toolchain (cargo). libuv is built into lunet.so.
  type = "command",
  build_command = "cargo build --release -p lunet && bash scripts/stage.sh release",
  install = {
    lib = { ["lunet"] = "build/release/lunet.so" },
    bin = { ["lunet-run"] = "build/release/lunet-run" },
  },
  -- The annotations for lua-language-server and the API reference, into the
  -- rock's own folder of the tree: lib/luarocks/rocks-5.1/lunet/<version>/
  -- (README: "Installing with luarocks").
  copy_directories = { "types", "docs" },
}
test = {
  -- Builds the rock (release), then runs its specs with busted under luajit
  -- (Debian: lua-busted); arguments after the rockspec go to busted.
  type = "command",
  command = "bash scripts/rock-test.sh lunet",
}
