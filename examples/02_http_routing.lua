-- 02: a tiny router on lunet.http: paths with :params, per-method handlers,
-- 404 and 405.
--
--   build/release/lunet-run examples/02_http_routing.lua [port]    (default 8080)
--   curl http://127.0.0.1:8080/users/42
--   curl http://127.0.0.1:8080/users/42/posts/7
--   curl -X POST --data 'ping' http://127.0.0.1:8080/echo
--
-- (examples/socket/02_http_routing.lua is the same router on plain lunet.socket.)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib/?.lua;" .. package.path
local lunet = require("lunet")
local http = require("lunet.http")
local common = require("common")

local JSON = { ["Content-Type"] = "application/json" }
local function json(status, value)
  return status, JSON, common.json(value)
end

local router = common.router(function(req, status)
  if status == 405 then return json(405, { error = "method not allowed" }) end
  return json(404, { error = "not found", path = req.path })
end)
local route = router.route

route("GET", "/", function()
  return json(200, { routes = { "/users/:id", "/users/:id/posts/:post", "POST /echo", "/slow/:ms" } })
end)

route("GET", "/users/:id", function(_, p)
  return json(200, { user = { id = tonumber(p.id) or p.id, name = "user" .. p.id } })
end)

route("GET", "/users/:id/posts/:post", function(_, p)
  return json(200, { user = p.id, post = p.post })
end)

-- The body is read only by the handlers that want it (chunked uploads too).
route("POST", "/echo", function(req)
  local body = req:body()
  if not body then return end -- too large, malformed or too slow: answered for us
  return 200, { ["Content-Type"] = req.headers["content-type"] or "application/octet-stream" }, body
end)

-- Waiting inside a handler only suspends this request's task.
---@async
local function slow(_, p)
  local ms = math.min(tonumber(p.ms) or 0, 5000)
  lunet.sleep(ms)
  return json(200, { slept_ms = ms })
end
route("GET", "/slow/:ms", slow)

local srv = assert(http.serve({ port = common.port(8080) }, router.dispatch))
local host, port = srv:address()
print(("listening on http://%s:%d/"):format(host, port))
io.stdout:flush()
common.stop_on_signals(function() srv:close() end)
