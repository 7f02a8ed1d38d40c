-- 01 (plain lunet.socket, through examples/lib/tinyhttp.lua): a minimal HTTP/1.1 server answering every request with JSON.
--
--   build/release/lunet-run examples/socket/01_http_json.lua [port]    (default 8080; 0 = any free port)
--   curl http://127.0.0.1:8080/hello
--
-- Each connection is served by its own coroutine, with keep-alive. Ctrl-C
-- (SIGINT) or SIGTERM stops the server.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lib/?.lua;" .. package.path
local http = require("tinyhttp")

local served = 0

http.serve("127.0.0.1", http.port(8080), function(req)
  served = served + 1
  return 200, {
    message = "hello from lunet",
    method = req.method,
    path = req.path,
    served = served,
  }
end)
