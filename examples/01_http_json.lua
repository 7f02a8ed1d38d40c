-- 01: a minimal HTTP/1.1 server answering every request with JSON, on lunet.http.
--
--   build/release/lunet-run examples/01_http_json.lua [port]    (default 8080; 0 = any free port)
--   curl http://127.0.0.1:8080/hello
--
-- lunet.http serves each connection in its own task, with keep-alive,
-- pipelining, limits and timeouts. Ctrl-C (SIGINT) or SIGTERM stops the
-- server. (examples/socket/01_http_json.lua is the same server written on
-- plain lunet.socket.)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib/?.lua;" .. package.path
local http = require("lunet.http")
local common = require("common")

local served = 0
local JSON = { ["Content-Type"] = "application/json" }

local srv = assert(http.serve({ port = common.port(8080) }, function(req)
  served = served + 1
  return 200, JSON, common.json({
    message = "hello from lunet",
    method = req.method,
    path = req.path,
    served = served,
  })
end))

local host, port = srv:address()
print(("listening on http://%s:%d/"):format(host, port))
io.stdout:flush()
common.stop_on_signals(function() srv:close() end)
