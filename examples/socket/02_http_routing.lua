-- 02 (plain lunet.socket, through examples/lib/tinyhttp.lua): a tiny router: paths with :params, per-method handlers, 404 and 405.
--
--   build/release/lunet-run examples/socket/02_http_routing.lua [port]    (default 8080)
--   curl http://127.0.0.1:8080/users/42
--   curl http://127.0.0.1:8080/users/42/posts/7
--   curl -X POST --data 'ping' http://127.0.0.1:8080/echo
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../lib/?.lua;" .. package.path
local http = require("tinyhttp")
local common = require("common")
local lunet = require("lunet")

local router = common.router(function(req, status)
  if status == 405 then return 405, { error = "method not allowed" } end
  return 404, { error = "not found", path = req.path }
end)
local route = router.route

route("GET", "/", function()
  return 200, { routes = { "/users/:id", "/users/:id/posts/:post", "POST /echo", "/slow/:ms" } }
end)

route("GET", "/users/:id", function(_, p)
  return 200, { user = { id = tonumber(p.id) or p.id, name = "user" .. p.id } }
end)

route("GET", "/users/:id/posts/:post", function(_, p)
  return 200, { user = p.id, post = p.post }
end)

route("POST", "/echo", function(req)
  return 200, req.body, req.headers["content-type"] or "application/octet-stream"
end)

-- Waiting inside a handler only suspends this request's coroutine.
route("GET", "/slow/:ms", function(_, p)
  local ms = math.min(tonumber(p.ms) or 0, 5000)
  lunet.sleep(ms)
  return 200, { slept_ms = ms }
end)

http.serve("127.0.0.1", http.port(8080), router.dispatch)
