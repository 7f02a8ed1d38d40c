-- Value generators for the misuse fuzzer (scripts/fuzz/child.lua): every
-- value comes with a short description for the call log. Nothing here makes
-- network or file traffic: hosts are loopback literals or nonsense, paths are
-- relative (the child runs in its own temporary folder) or inside it.
local ffi = require("ffi")

local V = {}

-- Names left out for triage (FUZZ_DISABLE): behaviours ("raise", "yield",
-- ...), metamethods ("__gc", "__index", ...), "errobj".
V.disabled = {}
for name in (os.getenv("FUZZ_DISABLE") or ""):gmatch("[^,%s]+") do V.disabled[name] = true end
local function enabled(name) return not V.disabled[name] end
V.enabled = enabled

local MiB = 1024 * 1024
local HUGE_STRING = string.rep("x", MiB)

-- Descriptions of the reference values the fuzzer made (weak keys).
local descs = setmetatable({}, { __mode = "k" })
V.descs = descs

local function named(v, d)
  local t = type(v)
  if t == "table" or t == "userdata" or t == "function" or t == "thread" or t == "cdata" then
    descs[v] = d
  end
  return v, d
end
V.named = named

--- A description of `v` that never runs a metamethod.
function V.describe(v)
  local t = type(v)
  if t == "string" then
    if #v > 24 then return ("str#%d"):format(#v) end
    return (("%q"):format(v):gsub("\n", "n"):gsub("%z", "\\0"))
  elseif t == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return ("%.17g"):format(v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  end
  return descs[v] or t
end

-- Linux signal numbers of the names lunet.signal accepts (for raising them).
V.SIGNALS = {
  INT = 2, TERM = 15, HUP = 1, QUIT = 3, USR1 = 10, USR2 = 12, WINCH = 28, ALRM = 14,
  CONT = 18, TSTP = 20, TTIN = 21, TTOU = 22,
}

--- Fills the dictionaries once the child knows its folder and live ports.
-- `env` has: tmp (the temporary folder), ports() (live ports), mysql, postgres
-- (connection parameter tables or nil).
function V.setup(env)
  V.env = env
  local tmp = env.tmp
  V.strings = {
    "", "\0", "a\0b", "x", "127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "[::1]",
    "127.0.0.1:80", "256.1.1.1", "-1", "0", "65536", " ", "%s%s%n", ("A"):rep(300),
    "tcp", "unix", "udp", "TCP", "r", "r+", "w", "w+", "a", "a+", "x", "x+", "rb", "wb+", "zz", "rw",
    "INT", "TERM", "HUP", "QUIT", "USR1", "USR2", "SIGINT", "WINCH", "ALRM", "CONT", "TSTP",
    "KILL", "PIPE", "CHLD", "SIGKILL", "int",
    "*l", "*L", "*a", "l", "*x", "\r\n", "\r\n\r\n", "nodelay", "keepalive", "sndbuf", "rcvbuf",
    "linger", "read_buffer_size",
    ":memory:", "f0", "f1", "db0.sqlite", "sub", "sub/f", "nonexistent/x",
    tmp, tmp .. "/f0", tmp .. "/f1", tmp .. "/sub", tmp .. "/s0.sock", tmp .. "/s1.sock",
    tmp .. "/missing.sock", tmp .. "/" .. ("n"):rep(200), tmp .. "/f0\0tail",
    "SELECT 1", "SELECT 1 AS a, NULL AS b, 'x' AS c, 2.5 AS d", "SELECT ?", "SELECT ?, ?",
    "SELECT $1", "SELECT $1::text, $2::int", "", ";", ";;", "SELEC garbage", "SELECT 1; SELECT 2",
    "CREATE TEMPORARY TABLE IF NOT EXISTS lunet_fuzz_tmp (id INTEGER, v TEXT)",
    "INSERT INTO lunet_fuzz_tmp VALUES (1, 'a')", "INSERT INTO lunet_fuzz_tmp VALUES (?, ?)",
    "INSERT INTO lunet_fuzz_tmp VALUES ($1, $2)", "SELECT * FROM lunet_fuzz_tmp",
    "DELETE FROM lunet_fuzz_tmp", "DROP TEMPORARY TABLE IF EXISTS lunet_fuzz_tmp",
    "DROP TABLE IF EXISTS pg_temp.lunet_fuzz_tmp", "BEGIN", "COMMIT", "ROLLBACK",
    "SELECT SLEEP(0.05)", "SELECT pg_sleep(0.05)", "SELECT repeat('x', 200000) AS r",
    "SELECT x'00ff00' AS b", "SELECT '\0' AS z", "SELECT 1 AS a, 2 AS a",
    "SELECT NULL", "SELECT 9223372036854775807 AS big, -9223372036854775808 AS small",
    "SELECT 1e308 * 10", "SELECT CAST('nan' AS DOUBLE PRECISION)", "SELECT true, false",
    "SELECT * FROM information_schema.tables LIMIT 20",
  }
  V.numbers = {
    0, 1, -1, 0.5, -0.5, 1.5, 2, 3, 7, 2 ^ 31 - 1, 2 ^ 31, 2 ^ 32, 2 ^ 53, 2 ^ 63, 2 ^ 64, -2 ^ 63,
    1e308, -1e308, math.huge, -math.huge, 0 / 0, -0.0, 65535, 65536, 16 * MiB, 16 * MiB + 1,
    4.9e-324, 3306, 5432, 1e9, 100, 1024,
  }
end

-- A random element of array `a`.
local function pick(r, a) return a[r(#a)] end
V.pick = pick

--- A number: a special one, a live port, or a small integer.
function V.number(r)
  local k = r(10)
  if k <= 2 then
    local ports = V.env.ports()
    if #ports > 0 then return pick(r, ports) end
  elseif k == 3 then
    return r(10) - 1
  end
  return pick(r, V.numbers)
end

--- A string: dictionary, huge, random bytes (never a "/"), or with NULs.
function V.string(r)
  local k = r(20)
  if k == 1 then return HUGE_STRING, "str#1MiB" end
  if k == 2 then
    local n = r(4) == 1 and r(5000) or r(40)
    local b = {}
    for i = 1, n do
      local c = r(256) - 1
      if c == 47 then c = 95 end -- "/": a path outside the folder
      b[i] = string.char(c)
    end
    return table.concat(b)
  end
  if k == 3 then return ("\0"):rep(r(64)) end
  return pick(r, V.strings)
end

-- What a metamethod or a function argument does when it is called.
V.BEHAVIOURS = { "raise", "raise_obj", "yield", "sleep", "call", "badret", "spawn", "collect", "ok", "ok" }

-- Cleared when the child winds down: from then on every misbehaving
-- function (metamethods, finalisers still pending) does nothing.
V.live = true

--- A function behaving as `kind`; `ctx` gives the fuzzer's hooks
-- (call = a nested random call, lunet, evil_error = an error object).
function V.behave(kind, ctx)
  local f = V.behave_raw(kind, ctx)
  return function(...)
    if not V.live then return end
    return f(...)
  end
end

function V.behave_raw(kind, ctx)
  if kind == "raise" then
    return function() error("fuzz: raised", 0) end
  elseif kind == "raise_obj" then
    return function() error(V.evil_error(ctx), 0) end
  elseif kind == "yield" then
    return function(...) return coroutine.yield(...) end
  elseif kind == "sleep" then
    return function() ctx.lunet.sleep(0); return "slept" end
  elseif kind == "call" then
    return function() ctx.call("nested"); return "called" end
  elseif kind == "badret" then
    return function() return {}, 1e308 end
  elseif kind == "spawn" then
    return function() ctx.lunet.spawn(function() ctx.lunet.sleep(1) end); return "spawned" end
  elseif kind == "collect" then
    return function() collectgarbage(); return "collected" end
  end
  return function(...) return ... end
end

local METAMETHODS = { "__index", "__newindex", "__tostring", "__len", "__call", "__eq", "__lt",
  "__le", "__concat", "__unm", "__add" }

-- LuaJIT 2.1-beta3 (Debian 12) itself crashes when a __gc finaliser raises
-- while JIT-compiled code allocates: the error unwinds into a trace, which
-- has no unwind information (reproduced without lunet: a hot Lua loop that
-- allocates with one raising finaliser pending segfaults; with -joff it does
-- not). child.lua turns the JIT off; should it ever run with the JIT on,
-- finalisers catch their own errors (still a pcall inside a finaliser).
V.gc_may_raise = not (jit and jit.status())

--- A metatable some of whose metamethods misbehave; `with_gc` adds a __gc
-- (for userdata). Returns the metatable and its description.
function V.evil_mt(r, ctx, with_gc)
  local mt, parts = {}, {}
  local names = { unpack(METAMETHODS) }
  if with_gc then names[#names + 1] = "__gc"; names[#names + 1] = "__gc" end
  for _ = 1, r(3) do
    local name = pick(r, names)
    local kind = pick(r, V.BEHAVIOURS)
    if enabled(name) and enabled(kind) then
      local f = V.behave(kind, ctx)
      if name == "__gc" and not V.gc_may_raise then
        local raw = f
        f = function(...) pcall(raw, ...) end
      end
      mt[name] = f
      parts[#parts + 1] = name .. "=" .. kind
    end
  end
  if r(4) == 1 then mt.__metatable = "locked"; parts[#parts + 1] = "locked" end
  return mt, table.concat(parts, ",")
end

--- An error object whose __tostring raises (or yields, or calls).
function V.evil_error(ctx)
  local r = ctx.r
  local kind = pick(r, { "raise", "raise", "yield", "call", "badret" })
  if not enabled("errobj") or not enabled(kind) then return named({}, "errobj<plain>") end
  return named(setmetatable({}, { __tostring = V.behave(kind, ctx) }), "errobj<__tostring=" .. kind .. ">")
end

--- Connection parameters: valid for some driver, or subtly wrong.
function V.params(r, ctx)
  local env = V.env
  local base = pick(r, { env.mysql or {}, env.postgres or {}, { path = ":memory:" }, { path = "db0.sqlite" }, {} })
  local p = {}
  for k, v in pairs(base) do p[k] = v end
  local k = r(8)
  if k == 1 then
    p[pick(r, { "host", "port", "user", "password", "database", "path", "charset" })] = ctx.value(r, ctx)
  elseif k == 2 then
    p.port = pick(r, { 1, -1, 0, 1e308, 0 / 0, 65536, 3306, 5432 })
  elseif k == 3 then
    local mt, d = V.evil_mt(r, ctx)
    return named(setmetatable(p, mt), "params<" .. d .. ">")
  elseif k == 4 then
    return named(setmetatable({}, { __index = p }), "params<__index=table>")
  end
  return named(p, "params")
end

--- A coroutine in some state.
function V.thread(r)
  local k = r(4)
  if k == 1 then
    return named(coroutine.create(function() coroutine.yield() end), "co<fresh>")
  elseif k == 2 then
    local co = coroutine.create(function() coroutine.yield() end)
    coroutine.resume(co)
    return named(co, "co<suspended>")
  elseif k == 3 then
    local co = coroutine.create(function() end)
    coroutine.resume(co)
    return named(co, "co<dead>")
  end
  local co = coroutine.running()
  if co then return named(co, "co<running>") end
  return nil
end

--- cdata of a few kinds (LuaJIT's own value type).
function V.cdata(r)
  local k = r(4)
  if k == 1 then return named(ffi.new("int[4]"), "cdata<int[4]>") end
  if k == 2 then return named(ffi.cast("void *", 0), "cdata<NULL>") end
  if k == 3 then return named(ffi.new("int64_t", -1), "cdata<int64>") end
  return named(ffi.new("uint64_t", 2 ^ 63), "cdata<uint64>")
end

------------------------------------------------------------------ HTTP
-- Request bytes for lunet.http servers: well-formed requests of every kind
-- the server handles (so handlers run), malformed ones, and either mutated.
local HTTP_TEMPLATES = {
  function() return "GET / HTTP/1.1\r\nHost: h\r\n\r\n" end,
  function(r) return ("POST /p?q=%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"):format(r(9), r(8) - 1)
    .. string.rep("b", r(8) - 1) end,
  function(r)
    local t = { "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" }
    for _ = 1, r(4) - 1 do
      local n = r(6)
      t[#t + 1] = pick(r, { ("%x\r\n"):format(n), ("%x;e=v\r\n"):format(n), "zz\r\n", "fffffffffff\r\n" })
      t[#t + 1] = string.rep("c", n) .. pick(r, { "\r\n", "\r\n", "xx" })
    end
    t[#t + 1] = pick(r, { "0\r\n\r\n", "0\r\nT: 1\r\n\r\n", "", "0\r\n" })
    return table.concat(t)
  end,
  function(r) return ("POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"):format(r(4))
    .. pick(r, { "", "abcd" }) end,
  function(r)
    local frame = pick(r, { "\129\133abcd\10\4\15\8\14", "\129\5hello", "\136\128abcd", "\137\128abcd",
      "\130\255abcd", "\1\133abcd\10\4\15\8\14", "\136\130abcd\98\234" })
    return "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" .. frame
  end,
  function() return "GET / HTTP/1.0\r\n\r\n" end,
  function() return "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" end,
  function(r) return "GET / HTTP/1.1\r\nHost: h\r\n" .. string.rep("X: y\r\n", r(200)) .. "\r\n" end,
  function() return "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc" end,
  function() return "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999\r\n\r\n" end,
  function() return "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n" end,
  function(r) return V.string(r) end,
}

--- Bytes a client sends to a lunet.http server (a description for the log).
function V.http_bytes(r)
  local parts = {}
  for _ = 1, r(3) do parts[#parts + 1] = pick(r, HTTP_TEMPLATES)(r) end
  local s = table.concat(parts)
  local k = r(6)
  if k == 1 and #s > 0 then -- a byte changed
    local i = r(#s)
    s = s:sub(1, i - 1) .. string.char(r(256) - 1) .. s:sub(i + 1)
  elseif k == 2 and #s > 0 then -- cut short
    s = s:sub(1, r(#s))
  elseif k == 3 and #s > 0 then -- a run repeated
    local i = r(#s)
    s = s:sub(1, i) .. s:sub(i, i + r(8)):rep(r(50)) .. s:sub(i + 1)
  end
  return s, ("http<%d bytes>"):format(#s)
end

return V
