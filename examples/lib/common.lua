-- Helpers shared by the HTTP examples: a JSON encoder with sorted keys (so
-- outputs are stable), the port from the command line, and a clean exit on
-- SIGINT/SIGTERM.
local lunet = require("lunet")
local signal = require("lunet.signal")

local M = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

--- Encodes nil/booleans/numbers/strings/tables (arrays when t[1] ~= nil or
-- the table is empty and marked with M.array) as JSON.
function M.json(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  if t == "string" then return json_string(v) end
  if t == "table" then
    local out = {}
    if v[1] ~= nil or getmetatable(v) == M.array then
      for i = 1, #v do out[i] = M.json(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for i, k in ipairs(keys) do out[i] = json_string(k) .. ":" .. M.json(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  error("cannot encode a " .. t .. " as JSON")
end

--- Metatable marking an (empty) table as a JSON array.
M.array = {}

--- A tiny router. `r.route(method, template, handler)` adds a route
-- ("/users/:id": parameters match one path segment); `r.dispatch(req)`
-- calls `handler(req, params)` for the first route matching req.path and
-- req.method, else `miss(req, 405)` when only the method differs, else
-- `miss(req, 404)`.
function M.router(miss)
  local routes = {}
  local r = {}
  -- Handlers run in the connection's task, so they may wait.
  ---@param handler async fun(req: table, params: table<string, string>): integer?, any, any
  function r.route(method, template, handler)
    local names = {}
    local pattern = "^" .. template:gsub("[%-%.%+%[%]%(%)%$%^%%%?%*]", "%%%0")
      :gsub(":(%w+)", function(name)
        names[#names + 1] = name
        return "([^/]+)"
      end) .. "$"
    routes[#routes + 1] = { method = method, pattern = pattern, names = names, handler = handler }
  end
  ---@async
  function r.dispatch(req)
    local path_matched = false
    for _, rt in ipairs(routes) do
      local captures = { req.path:match(rt.pattern) }
      if captures[1] ~= nil then -- (a pattern without captures returns the whole match)
        path_matched = true
        if rt.method == req.method then
          local params = {}
          for i, name in ipairs(rt.names) do params[name] = captures[i] end
          return rt.handler(req, params)
        end
      end
    end
    return miss(req, path_matched and 405 or 404)
  end
  return r
end

--- Port from the first script argument or $PORT, else `default`.
function M.port(default)
  return tonumber(arg and arg[1] or os.getenv("PORT") or default)
end

--- On the first SIGINT or SIGTERM: prints "received SIG..., shutting down",
-- calls `stop()` and exits (the wait for the other signal stays armed and
-- would keep the loop alive; closing the Lua state runs the finalisers).
function M.stop_on_signals(stop)
  local stopping = false
  for _, name in ipairs({ "INT", "TERM" }) do
    lunet.spawn(function()
      local got = signal.wait(name)
      if stopping or not got then return end
      stopping = true
      print("received SIG" .. got .. ", shutting down")
      io.stdout:flush()
      stop()
      os.exit(0, true)
    end)
  end
end

return M
