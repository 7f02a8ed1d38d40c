-- 02: a tiny router: paths with :params, per-method handlers, 404 and 405.
--
--   build/release/lunet-run examples/02_http_routing.lua [port]    (default 8080)
--   curl http://127.0.0.1:8080/users/42
--   curl http://127.0.0.1:8080/users/42/posts/7
--   curl -X POST --data 'ping' http://127.0.0.1:8080/echo
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib/?.lua;" .. package.path
local http = require("tinyhttp")
local lunet = require("lunet")

local routes = {}

-- Turns "/users/:id" into a Lua pattern and the list of parameter names.
-- Handlers run in the connection's task, so they may wait.
---@param handler async fun(req: table, params: table<string, string>): integer, any, string?
local function route(method, template, handler)
  local names = {}
  local pattern = "^" .. template:gsub("[%-%.%+%[%]%(%)%$%^%%%?%*]", "%%%0")
    :gsub(":(%w+)", function(name)
      names[#names + 1] = name
      return "([^/]+)"
    end) .. "$"
  routes[#routes + 1] = { method = method, pattern = pattern, names = names, handler = handler }
end

---@async
local function dispatch(req)
  local path_matched = false
  for _, r in ipairs(routes) do
    local captures = { req.path:match(r.pattern) }
    if captures[1] ~= nil then -- (a pattern without captures returns the whole match)
      path_matched = true
      if r.method == req.method then
        local params = {}
        for i, name in ipairs(r.names) do params[name] = captures[i] end
        return r.handler(req, params)
      end
    end
  end
  if path_matched then return 405, { error = "method not allowed" } end
  return 404, { error = "not found", path = req.path }
end

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

http.serve("127.0.0.1", http.port(8080), dispatch)
