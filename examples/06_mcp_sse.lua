-- 06: an MCP (Model Context Protocol) server over the SSE transport, with a
-- real local tool: full-text search over a SQLite FTS5 table it fills.
--
--   build/release/lunet-run examples/06_mcp_sse.lua [port]    (default 8080; 0 = any free port)
--
-- The transport (MCP 2024-11-05, "HTTP with SSE"): a client opens
-- GET /sse and receives an `endpoint` event naming its message URL
-- (/messages?session_id=...); it POSTs JSON-RPC 2.0 messages there (answered
-- 202 Accepted), and the responses arrive as `message` events on its SSE
-- stream. Methods: initialize, notifications/initialized, ping, tools/list,
-- tools/call (tool "search_notes"). JSON through lua-cjson.
-- Needs lunet-http, lunet-sqlite3 and lua-cjson. SIGINT/SIGTERM stop it.
local lunet = require("lunet")
local http = require("lunet.http")
local db = require("lunet.sqlite3")
local signal = require("lunet.signal")
---@diagnostic disable-next-line: unresolved-require
local cjson = require("cjson.safe") -- lua-cjson: no annotations in types/

local PROTOCOL = "2024-11-05"
local NOTES = {
  { "Coroutines", "Every connection is served by its own coroutine; a wait yields to the event loop." },
  { "Deadlines", "lunet.deadline limits every wait inside a function, so a slow peer cannot hold a task forever." },
  { "SQLite", "Statements run on the libuv thread pool while other coroutines keep running." },
  { "Server-Sent Events", "req:sse() streams events to a client over one long HTTP response." },
  { "WebSocket", "req:websocket() completes the RFC 6455 handshake; frames are masked by the client." },
  { "Keep-alive", "HTTP/1.1 connections stay open between requests, and requests may be pipelined." },
}

local TOOLS = {
  {
    name = "search_notes",
    description = "Full-text search over lunet's notes (SQLite FTS5). Returns the matching notes, best first.",
    inputSchema = {
      type = "object",
      properties = {
        query = { type = "string", description = "FTS5 query, e.g. 'coroutine OR deadline'" },
        limit = { type = "integer", description = "most results (default 5)" },
      },
      required = { "query" },
    },
  },
}

local conn -- the SQLite connection, opened below

---@async
local function search(args)
  if type(args) ~= "table" or type(args.query) ~= "string" or args.query == "" then
    return nil, "search_notes needs a non-empty string 'query'"
  end
  local limit = tonumber(args.limit) or 5
  local rows, err = db.query_params(conn,
    "SELECT title, body FROM notes WHERE notes MATCH ? ORDER BY rank LIMIT ?", args.query, limit)
  if not rows then return nil, "search failed: " .. tostring(err) end
  local lines = {}
  for i, r in ipairs(rows) do lines[i] = ("%s: %s"):format(r.title, r.body) end
  if #lines == 0 then return "no notes match " .. args.query end
  return table.concat(lines, "\n")
end

-- One JSON-RPC request -> its result table, or nil plus an error object.
---@async
local function dispatch(msg)
  local m, params = msg.method, type(msg.params) == "table" and msg.params or {}
  if m == "initialize" then
    return {
      protocolVersion = PROTOCOL,
      capabilities = { tools = { listChanged = false } },
      serverInfo = { name = "lunet-notes", version = "0.1.0" },
    }
  elseif m == "ping" then
    return {} -- cjson encodes an empty table as {}
  elseif m == "tools/list" then
    return { tools = TOOLS }
  elseif m == "tools/call" then
    if params.name ~= "search_notes" then
      return nil, { code = -32602, message = "unknown tool: " .. tostring(params.name) }
    end
    local text, err = search(params.arguments)
    if not text then
      return { content = { { type = "text", text = err } }, isError = true }
    end
    return { content = { { type = "text", text = text } }, isError = false }
  end
  return nil, { code = -32601, message = "method not found: " .. tostring(m) }
end

local sessions, next_id = {}, 0

local function new_session_id()
  next_id = next_id + 1
  return ("%x%06x"):format(lunet.getpid(), next_id) .. ("%08x"):format(math.random(0, 0x7fffffff))
end

---@async
local function sse_stream(req)
  local id = new_session_id()
  local sse = req:sse()
  local s = { sse = sse, open = true }
  sessions[id] = s
  sse:send({ event = "endpoint", data = "/messages?session_id=" .. id })
  -- Comments keep the stream alive through proxies; a failed write means
  -- the client has gone.
  while s.open and sse:comment("keep-alive") do
    lunet.sleep(15000)
  end
  sessions[id] = nil
end

---@async
local function post_message(req)
  local s = sessions[req.query:match("session_id=([%x]+)") or ""]
  if not s then return 404, { ["Content-Type"] = "text/plain" }, "unknown session\n" end
  local body = req:body()
  if not body then return end -- the server answers 413/400/408
  local msg = cjson.decode(body)
  if type(msg) ~= "table" or msg.jsonrpc ~= "2.0" or type(msg.method) ~= "string" then
    local err = { jsonrpc = "2.0", id = cjson.null, error = { code = -32700, message = "parse error" } }
    return 400, { ["Content-Type"] = "application/json" }, cjson.encode(err)
  end
  if msg.id == nil then return 202, nil, "" end -- a notification: nothing to answer
  local result, err = dispatch(msg)
  local reply = { jsonrpc = "2.0", id = msg.id, result = result, error = err }
  if not s.sse:send({ event = "message", data = cjson.encode(reply) }) then s.open = false end
  return 202, { ["Content-Type"] = "text/plain" }, "Accepted\n"
end

local srv ---@type lunet.http.Server?
local port = tonumber(arg and arg[1] or os.getenv("PORT") or 8080)

lunet.spawn(function()
  conn = assert(db.open(":memory:"))
  assert(db.exec(conn, "CREATE VIRTUAL TABLE notes USING fts5(title, body)"))
  for _, n in ipairs(NOTES) do
    assert(db.exec_params(conn, "INSERT INTO notes (title, body) VALUES (?, ?)", n[1], n[2]))
  end
  srv = assert(http.serve({ port = port }, function(req)
    if req.path == "/sse" and req.method == "GET" then return sse_stream(req) end
    if req.path == "/messages" and req.method == "POST" then return post_message(req) end
    return 404, { ["Content-Type"] = "text/plain" }, "not found\n"
  end))
  local host, bound = srv:address()
  print(("MCP server (SSE transport) listening on http://%s:%d/sse"):format(host, bound))
  io.stdout:flush()
end)

for _, name in ipairs({ "INT", "TERM" }) do
  lunet.spawn(function()
    if not signal.wait(name) then return end
    print("received SIG" .. name .. ", shutting down")
    io.stdout:flush()
    if srv then srv:close() end
    os.exit(0, true)
  end)
end
