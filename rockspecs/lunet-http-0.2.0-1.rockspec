rockspec_format = "3.0"
package = "lunet-http"
version = "0.2.0-1"
source = {
  url = "git+https://example.invalid/lunet.git",
  tag = "v0.2.0",
}
description = {
  summary = "HTTP/1.1 server (SSE, WebSocket) and client for lunet, parsing with httparse",
  license = "MIT",
}
supported_platforms = { "linux" }
dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT
  "lunet == 0.2.0",
}
build = {
  -- Needs a Rust toolchain (cargo). One library holds both modules.
  type = "command",
  build_command = "cargo build --release -p lunet-http && bash scripts/stage.sh release",
  install = {
    lib = {
      ["lunet.http"] = "build/release/lunet/http.so",
      ["lunet.httpc"] = "build/release/lunet/httpc.so",
    },
  },
}
