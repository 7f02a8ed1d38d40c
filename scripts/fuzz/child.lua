-- One fuzzing child, run by scripts/fuzz.lua in a temporary folder:
--
--   cd <empty temp dir> && build/<profile>/lunet-run scripts/fuzz/child.lua SEED SECONDS LOG
--
-- For SECONDS it makes seeded random calls to every public function of every
-- lunet module and to every method and metamethod of every kind of handle it
-- comes across (found at run time, so new functions are fuzzed without
-- changes here), with random arguments, from the main chunk, from tasks, from
-- non-yieldable contexts, from finalisers and from error objects. Every call
-- is written to LOG (flushed) before it is made. Then it closes what it
-- holds, stops the loop and exits with the state closed (debug builds print
-- their reference summary then). Prints "FUZZ-CHILD-DONE" last when all went
-- through; any death by signal or hang is lunet's fault.
--
-- Environment: FUZZ_MYSQL / FUZZ_POSTGRES = 1 to connect to the test servers
-- (LUNET_DB_HOST/USER/PASS/NAME, ports 3306 / 5432); FUZZ_DISABLE = a comma
-- separated list of names to leave out, for triage only: actions, contexts,
-- scenarios, behaviours and metamethods (see values.lua), functions.
local SEED = assert(tonumber(arg[1]), "usage: child.lua SEED SECONDS LOG")
local SECONDS = tonumber(arg[2]) or 5
local LOGPATH = arg[3] or "fuzz.log"

local here = (arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
-- Children run with LuaJIT's JIT off. Debian 12's LuaJIT 2.1-beta3 has two
-- defects the fuzzer's own Lua code runs into with it on, neither in lunet:
-- a __gc finaliser that raises while compiled code allocates crashes the VM
-- (a ten-line script without lunet reproduces it), and some seeds leave the
-- child spinning forever inside a compiled trace of the fuzzer's logging loop
-- with no lunet frame on the stack (seen before and after the scheduler
-- redesign; with the JIT off the same seed runs to its end). lunet's entry
-- points are C functions, which compiled code calls the same way, so nothing
-- of lunet goes untested; and every seed may use finalisers that raise.
jit.off()
local V = require("values")
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } lunet_fuzz_timespec;
  int clock_gettime(int clk, lunet_fuzz_timespec *tp);
  int kill(int pid, int sig);
  int getpid(void);
]]
local ts = ffi.new("lunet_fuzz_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local lunet = require("lunet")
local tmp = os.getenv("PWD") or "."
local deadline = now() + SECONDS

------------------------------------------------------------------ randomness
-- Park–Miller generators (exact in doubles): one for the main chunk and the
-- conductor, one per task, so a task's calls do not depend on the others'.
local function rng(seed)
  local s = seed % 2147483647
  if s <= 0 then s = s + 2147483646 end
  return function(n)
    s = (s * 16807) % 2147483647
    return s % n + 1
  end
end
local function derive(a, b) return (a * 7919 + b * 104729) % 2147483646 + 1 end

------------------------------------------------------------------ call log
local log_file, log_lines = assert(io.open(LOGPATH, "w")), 0
local function log(line)
  if io.type(log_file) ~= "file" then return end
  if log_lines >= 20000 then
    log_file:close()
    os.rename(LOGPATH, LOGPATH .. ".1")
    log_file, log_lines = assert(io.open(LOGPATH, "w")), 0
  end
  log_lines = log_lines + 1
  log_file:write(line, "\n")
  log_file:flush()
end

------------------------------------------------------------------ targets
-- Underscore names are test hooks: only these harmless ones are called.
-- _skip_loopback_restriction is never called; _trace_leak unbalances the
-- trace on purpose.
local HARMLESS = { _pending = true, _trace = true, _loopback_restricted = true,
  _connections = true, _always_queue = true, _stop = true }
local NEVER = { _skip_loopback_restriction = true, _trace_leak = true }
-- Starting programs named by random strings ("w" is one) is not fuzzed.
local NEVER_QUALIFIED = { ["lunet.process.spawn"] = true }
local function allowed(name, module)
  if NEVER[name] or NEVER_QUALIFIED[(module or "") .. "." .. name] then return false end
  return name:sub(1, 1) ~= "_" or HARMLESS[name] == true
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

local targets, by_name = {}, {}    -- module functions
local methods = {}                  -- of handle kinds
local metamethods = { { name = "tostring", fn = tostring } }
local function add_target(list, name, fn, module)
  local t = by_name[name]
  if t then -- a module loaded again: its new function replaces the old one
    t.fn = fn
    return t
  end
  t = { name = name, fn = fn, module = module }
  list[#list + 1] = t
  by_name[name] = t
  return t
end

local modules = {} -- name -> table
local function load_module(name)
  local ok, m = pcall(require, name)
  if not ok or type(m) ~= "table" then return false end
  modules[name] = m
  for _, k in ipairs(sorted_keys(m)) do
    if type(m[k]) == "function" and allowed(k, name) then add_target(targets, name .. "." .. k, m[k], name) end
  end
  return true
end

-- Every lunet module: the core's submodules are the luaopen_lunet_* symbols
-- of lunet.so, the drivers the lunet/*.so files beside it.
local function discover()
  local core = assert(package.searchpath("lunet", package.cpath))
  local f = assert(io.open(core, "rb"))
  local bin = f:read("*a")
  f:close()
  local names, list = {}, {}
  for sym in bin:gmatch("luaopen_(lunet[%w_]*)") do names[sym] = true end
  local dir = core:match("^(.*)/[^/]*$") or "."
  local ls = io.popen("ls '" .. dir .. "/lunet' 2>/dev/null")
  for file in ls:lines() do
    local n = file:match("^([%w_]+)%.so$")
    if n then names["lunet_" .. n] = true end
  end
  ls:close()
  for sym in pairs(names) do list[#list + 1] = sym end
  table.sort(list)
  for _, sym in ipairs(list) do
    local dotted = sym:gsub("_", ".")
    if not load_module(dotted) then load_module((sym:gsub("^lunet_", "lunet."))) end
  end
end

-- Kinds of handle met so far: metatable -> { name, methods, metamethods }.
local kinds, kind_list = {}, {}
local function kind_of(v, module)
  local mt = debug.getmetatable(v)
  if type(mt) ~= "table" then return nil end
  local k = kinds[mt]
  if k then return k end
  local name = type(rawget(mt, "__name")) == "string" and rawget(mt, "__name") or (module or "?") .. " handle"
  k = { name = name, methods = {}, metamethods = {}, module = module }
  kinds[mt] = k
  kind_list[#kind_list + 1] = k
  local index = rawget(mt, "__index")
  if type(index) == "table" then
    for _, m in ipairs(sorted_keys(index)) do
      if type(index[m]) == "function" and allowed(m) then
        k.methods[#k.methods + 1] = add_target(methods, name .. ":" .. m, index[m], module)
      end
    end
  end
  -- Metamethods a script can reach (__gc and __tostring called by hand):
  -- not those of a metatable protected by __metatable (only the debug
  -- library gets at them); tostring(h) reaches every __tostring.
  if getmetatable(v) == mt then
    for _, m in ipairs(sorted_keys(mt)) do
      if type(mt[m]) == "function" then
        k.metamethods[#k.metamethods + 1] = add_target(metamethods, "getmetatable(" .. name .. ")." .. m, mt[m], module)
      end
    end
  end
  return k
end

------------------------------------------------------------------ pools
local handles = {}  -- { v, d, kind }
local fds, ports = {}, {}
local foreign = {}  -- coroutines the fuzzer resumed itself
local handle_id = 0

local function close_handle(h)
  local close
  for _, m in ipairs(h.kind and h.kind.methods or {}) do
    if m.name:match(":close$") then close = m.fn end
  end
  if close then
    log("cleanup " .. h.d .. ":close()")
    pcall(close, h.v)
  end
end

local function add_handle(v, module, from)
  local kind = kind_of(v, module)
  handle_id = handle_id + 1
  local d = ("%s#%d"):format(kind and kind.name or from, handle_id)
  V.named(v, d)
  if #handles >= 40 then
    local i = (handle_id * 7) % #handles + 1
    local old = table.remove(handles, i)
    if handle_id % 2 == 0 then close_handle(old) end -- else dropped: its finaliser closes it
  end
  handles[#handles + 1] = { v = v, d = d, kind = kind }
end

local function add_limited(list, v, max)
  if #list >= max then table.remove(list, 1) end
  list[#list + 1] = v
end

-- Keeps what a call returned that can be used again.
local function harvest(t, res)
  for i = 2, res.n do
    local v = res[i]
    if type(v) == "userdata" and not V.descs[v] then add_handle(v, t.module, t.name) end
  end
  if type(res[2]) == "number" and res[2] % 1 == 0 and t.name:match("open$") then add_limited(fds, res[2], 16) end
  if t.name:match("getsockname$") and type(res[3]) == "number" then add_limited(ports, res[3], 16) end
end

------------------------------------------------------------------ signals
-- A signal is raised only while a tracked wait for it is parked (its task
-- "waiting" inside the call: a wait that timed out or was cancelled is
-- unhooked at once, though its task resumes later) and started after the
-- last raise of that signal: only then is lunet's handler surely installed.
local inflight, last_raise, seq = {}, {}, 0
local function signal_of(t, args)
  if t.module ~= "lunet.signal" or type(args[1]) ~= "string" then return nil end
  return V.SIGNALS[args[1]:gsub("^SIG", "")]
end

local function raise_armed()
  for rec in pairs(inflight) do
    if rec.seq > (last_raise[rec.num] or 0) and rec.task and rec.task:status() == "waiting" then
      seq = seq + 1
      last_raise[rec.num] = seq
      log(("raise signal %d"):format(rec.num))
      ffi.C.kill(ffi.C.getpid(), rec.num)
      return true
    end
  end
  return false
end

------------------------------------------------------------------ calls
local ncalls = 0
local pack = function(...) return { n = select("#", ...), ... } end

--- Logs and makes one call, catching errors; returns the packed results.
local function invoke(where, t, args, n)
  if V.disabled[t.name] then return { n = 0 } end
  ncalls = ncalls + 1
  local parts = {}
  for i = 1, n do parts[i] = V.describe(args[i]) end
  log(("%d %s %s(%s)"):format(ncalls, where, t.name, table.concat(parts, ", ")))
  local num, rec = signal_of(t, args), nil
  if num and coroutine.running() then
    seq = seq + 1
    rec = { num = num, co = coroutine.running(), seq = seq, task = lunet.current and lunet.current() }
    inflight[rec] = true
  end
  local res = pack(pcall(t.fn, unpack(args, 1, n)))
  if rec then inflight[rec] = nil end
  harvest(t, res)
  return res
end

local depth = setmetatable({}, { __mode = "k" })
local MAIN = {}
local value -- forward

-- The fuzzer's hooks handed to value generators.
local function hooks(r, call)
  return { r = r, lunet = lunet, call = call, value = function(rr) return value(rr, 2) end }
end

local function random_handle(r, kind)
  if #handles == 0 then return nil end
  if kind then
    local same = {}
    for _, h in ipairs(handles) do if h.kind == kind then same[#same + 1] = h end end
    if #same > 0 then return same[r(#same)].v end
  end
  return handles[r(#handles)].v
end

local random_call -- forward

--- A random value; `level` bounds how deep values may contain calls.
function value(r, level)
  level = level or 1
  local ctx = hooks(r, function(where) random_call(r, where or "nested") end)
  local k = r(100)
  if k <= 6 then return nil
  elseif k <= 10 then return r(2) == 1
  elseif k <= 22 then return V.number(r)
  elseif k <= 40 then return V.string(r)
  elseif k <= 58 then return random_handle(r)
  elseif k <= 62 then
    if #fds > 0 then return V.pick(r, fds) end
    return V.number(r)
  elseif k <= 66 then return V.named(V.pick(r, { {}, { 1, 2, 3 }, { "a", n = 1 } }), "table")
  elseif k <= 70 then return V.params(r, ctx)
  elseif k <= 74 then
    local mt, d = V.evil_mt(r, ctx)
    return V.named(setmetatable({}, mt), "tbl<" .. d .. ">")
  elseif k <= 79 then
    local kind = V.pick(r, V.BEHAVIOURS)
    if not V.enabled(kind) then kind = "ok" end
    return V.named(V.behave(kind, ctx), "fn<" .. kind .. ">")
  elseif k <= 81 then
    local t = V.pick(r, targets)
    return t.fn
  elseif k <= 84 then return V.thread(r)
  elseif k <= 88 then
    if r(3) == 1 then return V.named(newproxy(), "proxy") end
    local p = newproxy(true)
    local pmt = getmetatable(p)
    local mt, d = V.evil_mt(r, ctx, true)
    for name, f in pairs(mt) do pmt[name] = f end
    return V.named(p, "proxy<" .. d .. ">")
  elseif k <= 90 then return V.cdata(r)
  elseif k <= 92 then
    local name = V.pick(r, sorted_keys(modules))
    return V.named(modules[name], "module " .. name)
  elseif k <= 94 then return V.evil_error(ctx)
  elseif k <= 95 then return V.named(io.tmpfile(), "FILE*")
  end
  return V.named(lunet, "module lunet")
end

local function args_for(r, t, self)
  local n = r(10) <= 8 and r(5) - 1 or r(9) - 1
  local args = {}
  for i = 1, n do args[i] = value(r) end
  if self ~= nil then
    table.insert(args, 1, self)
    n = n + 1
  elseif n > 0 and r(3) == 1 then
    -- Often the first argument is a handle of the function's own module.
    for _, k in ipairs(kind_list) do
      if k.module == t.module then args[1] = random_handle(r, k) break end
    end
  end
  return args, n
end

--- One random call: a module function, a method (right or wrong self) or a
-- metamethod.
function random_call(r, where)
  local key = coroutine.running() or MAIN
  local d = depth[key] or 0
  if d >= 3 then return end
  depth[key] = d + 1
  local k = r(10)
  local t, args, n
  if k <= 6 or #handles == 0 then
    t = V.pick(r, targets)
    args, n = args_for(r, t)
  elseif k <= 9 then
    local h = handles[r(#handles)]
    local list = h.kind and #h.kind.methods > 0 and r(5) > 1 and h.kind.methods or methods
    if #list == 0 then depth[key] = d return end
    t = V.pick(r, list)
    args, n = args_for(r, t, r(4) > 1 and h.v or value(r))
  else
    if #metamethods == 0 then depth[key] = d return end
    t = V.pick(r, metamethods)
    args, n = args_for(r, t, r(4) > 1 and random_handle(r) or value(r))
  end
  invoke(where, t, args, n)
  depth[key] = d
end

------------------------------------------------------------------ contexts
-- Ways of making a call from somewhere special.
local CONTEXTS = {
  sort = function(f) table.sort({ 3, 1, 2 }, function(a, b) f() return a < b end) end,
  gsub = function(f) string.gsub("ab", "%w", function() f() end) end,
  tostring = function(f) return tostring(setmetatable({}, { __tostring = function() f() return "t" end })) end,
  index = function(f) return setmetatable({}, { __index = function() f() end }).x end,
  load_reader = function(f) return load(function() f() return nil end) end,
  xpcall_handler = function(f) return xpcall(function() error("e") end, function(e) f() return e end) end,
  finaliser = function(f)
    local p = newproxy(true)
    getmetatable(p).__gc = function() f() end
    p = nil
    collectgarbage()
  end,
  lazy_finaliser = function(f) -- runs whenever the collector gets to it
    local p = newproxy(true)
    getmetatable(p).__gc = function() f() end
  end,
  foreign_coroutine = function(f, r)
    local co = coroutine.create(f)
    coroutine.resume(co)
    if r(3) == 1 then coroutine.resume(co, value(r)) end
    if r(2) == 1 then add_limited(foreign, co, 8) end
  end,
  pcall = function(f) return pcall(f) end,
  error_tostring = function(f) -- a task dies with an error object whose __tostring calls
    lunet.spawn(function() error(setmetatable({}, { __tostring = function() f() return "e" end })) end)
  end,
  spawned = function(f) lunet.spawn(f) end,
}
local CONTEXT_NAMES = sorted_keys(CONTEXTS)

------------------------------------------------------------------ scenarios
-- Real handles of every kind, built through the same logged calls.
local function call(where, name, ...)
  local t = by_name[name]
  if not t then return { n = 0 } end
  return invoke(where, t, { ... }, select("#", ...))
end

-- A method of handle `v` by name, through the same logged calls (nothing
-- when `v` has no such method).
local function method(where, v, name, ...)
  local k = kind_of(v)
  for _, t in ipairs(k and k.methods or {}) do
    if t.name:sub(-#name - 1) == ":" .. name then
      return invoke(where, t, { v, ... }, select("#", ...) + 1)
    end
  end
  return { n = 0 }
end

-- lunet.http: what a handler does with its request, and with the writer,
-- SSE stream, WebSocket or body reader it gets: mostly right, sometimes
-- with wrong arguments, twice, after closing, or (in a task it spawns)
-- after the handler has returned.
local STATUSES = { 200, 200, 201, 204, 304, 404, 500, 101, 99, 1000, 200.5, "200", -1, 0 / 0 }
local function some_headers(r)
  return V.pick(r, { nil, { ["Content-Type"] = "text/plain" }, { ["X-A"] = { "1", "2" } }, { Connection = "close" },
    { ["Content-Length"] = "5" }, { ["Bad Name"] = "v" }, { X = "a\r\nb" }, { X = {} }, { [1] = "x" } })
end
local function use_http_object(r, where, v)
  local k = r(8)
  if k == 1 then method(where, v, "close")
  elseif k == 2 then method(where, v, "write", V.pick(r, { "piece", "", 42, {}, V.string(r) }))
  elseif k == 3 then method(where, v, "send", V.pick(r, { { data = "d", event = "e", id = 1 }, { data = "a\nb" },
    { retry = -1 }, {}, "text", V.string(r) }), V.pick(r, { nil, "binary", "text", "other" }))
  elseif k == 4 then method(where, v, "recv")
  elseif k == 5 then method(where, v, "read")
  elseif k == 6 then method(where, v, "ping", V.pick(r, { nil, "p", string.rep("p", 200) }))
  elseif k == 7 then method(where, v, "comment", V.pick(r, { "c", "a\nb", nil }))
  else random_call(r, where) end
end
local function http_handler(seed)
  local n = 0
  return function(req)
    n = n + 1
    local r = rng(derive(seed, n))
    add_handle(req, "lunet.http", "http request")
    local got = { req }
    for _ = 1, r(6) do
      local k = r(9)
      local res
      if k == 1 then res = method("handler", req, "body")
      elseif k == 2 then res = method("handler", req, "body_reader", V.pick(r, { nil, { max = r(64) }, { max = -1 }, 5 }))
      elseif k == 3 then res = method("handler", req, "stream", V.pick(r, STATUSES), some_headers(r))
      elseif k == 4 then res = method("handler", req, "sse", some_headers(r))
      elseif k == 5 then res = method("handler", req, "websocket", V.pick(r, { nil, { protocol = "p" }, 1 }))
      elseif k == 6 then
        lunet.spawn(function() -- the objects used after the handler returned
          lunet.sleep(r(3) - 1)
          for _ = 1, r(4) do use_http_object(r, "after", V.pick(r, got)) end
        end)
      elseif k == 7 then lunet.sleep(r(3) - 1)
      else use_http_object(r, "handler", V.pick(r, got)) end
      if res and res[1] and type(res[2]) == "table" then
        add_handle(res[2], "lunet.http", "http object")
        got[#got + 1] = res[2]
      end
    end
    local k = r(8)
    if k == 1 then error("fuzz: handler raised", 0)
    elseif k == 2 then error(V.evil_error(hooks(r, function() random_call(r, "errobj") end)), 0)
    elseif k == 3 then return value(r), value(r), value(r)
    elseif k == 4 then return
    end
    return V.pick(r, STATUSES), some_headers(r), V.pick(r, { "body", "", nil, 7, {}, V.string(r) })
  end
end

local scenario_id = 0
local SCENARIOS = {
  tcp_pair = function(r, where)
    local l = call(where, "lunet.socket.listen", "tcp", V.pick(r, { "127.0.0.1", "::1", "localhost" }), 0)[2]
    if not l then return end
    local port = call(where, "lunet.socket.getsockname", l)[3]
    lunet.spawn(function() call("task", "lunet.socket.accept", l) end)
    call(where, "lunet.socket.connect", "127.0.0.1", port)
    if r(2) == 1 then call(where, "lunet.socket.close", l) end
  end,
  unix_pair = function(r, where)
    scenario_id = scenario_id + 1
    local path = ("%s/s%d.sock"):format(tmp, scenario_id % 4)
    local l = call(where, "lunet.socket.listen", "unix", path)[2]
    lunet.spawn(function() call("task", "lunet.socket.accept", l) end)
    call(where, "lunet.socket.connect", path, 0)
    if r(2) == 1 then call(where, "lunet.socket.close", l) end
  end,
  udp_pair = function(r, where)
    local a = call(where, "lunet.udp.bind", "127.0.0.1", 0)[2]
    local b = call(where, "lunet.udp.bind", "127.0.0.1", 0)[2]
    local port = call(where, "lunet.udp.getsockname", b)[3]
    call(where, "lunet.udp.send", a, "127.0.0.1", port, V.string(r))
    if r(2) == 1 then lunet.spawn(function() call("task", "lunet.udp.recv", b) end) end
  end,
  file = function(r, where)
    local fd = call(where, "lunet.fs.open", "f" .. r(3) - 1, V.pick(r, { "w+", "a+", "r", "x" }))[2]
    if fd then call(where, "lunet.fs.write", fd, V.string(r)) end
  end,
  db = function(r, where)
    local driver = V.pick(r, { "sqlite3", "sqlite3", "mysql", "postgres" })
    local p = ({ mysql = V.env.mysql, postgres = V.env.postgres })[driver] or { path = V.pick(r, { ":memory:", "db0.sqlite" }) }
    local c = call(where, "lunet." .. driver .. ".open", p)[2]
    if c then call(where, "lunet." .. driver .. ".exec", c, V.pick(r, V.strings)) end
  end,
  -- Several tasks on one handle at once, and a close in the middle.
  storm = function(r, where)
    if #handles == 0 then return end
    local h = handles[r(#handles)]
    for i = 1, r(5) do
      local tr = rng(derive(r(1e9), i))
      lunet.spawn(function()
        local list = h.kind and #h.kind.methods > 0 and h.kind.methods or methods
        if #list == 0 then return end
        local t = V.pick(tr, list)
        local args, n = args_for(tr, t, h.v)
        invoke("storm", t, args, n)
      end)
    end
    close_handle(h)
  end,
  -- A lunet.http server with odd options and a handler that misuses its
  -- objects, fed raw bytes (well-formed, malformed, mutated) by clients.
  http_server = function(r, where)
    local ctx = hooks(r, function() random_call(r, "nested") end)
    local opts = {
      port = V.pick(r, { 0, 0, 0, -1, "0", 1e308 }),
      host = V.pick(r, { nil, "127.0.0.1", "::1", "localhost", "0.0.0.0", 7 }),
      limits = V.pick(r, { nil, { max_body = r(100) }, { max_line = r(40), max_head = r(200), max_headers = r(4) },
        { max_ws_payload = r(10) }, { max_body = 2 ^ 60 }, { bogus = 1 }, { max_body = -1 }, "x" }),
      timeouts = V.pick(r, { nil, { header = r(50), idle = r(200), body = r(50), send = r(50) },
        { idle = false, header = false }, { body = 0 }, 1 }),
      backlog = V.pick(r, { nil, 1, -1, "x" }),
      tls = V.pick(r, { nil, nil, nil, {}, { cert_file = "nope" }, 1 }),
      on_error = V.pick(r, { nil, V.behave(V.pick(r, V.BEHAVIOURS), ctx), 1 }),
    }
    if r(8) == 1 then opts = value(r) end
    local handler = r(10) == 1 and value(r) or http_handler(derive(r(1e9), scenario_id))
    local srv = call(where, "lunet.http.serve", opts, handler)[2]
    if type(srv) ~= "table" then return end
    add_handle(srv, "lunet.http", "http server")
    local port = method(where, srv, "address")[3]
    if type(port) ~= "number" then return end
    add_limited(ports, port, 16)
    for i = 1, r(4) do
      local cr = rng(derive(r(1e9), i))
      lunet.spawn(function()
        local c = call("client", "lunet.socket.connect", "127.0.0.1", port)[2]
        if not c then return end
        call("client", "lunet.socket.settimeout", c, cr(300))
        for _ = 1, cr(3) do
          local bytes = V.http_bytes(cr)
          if cr(3) == 1 and #bytes > 1 then -- in two writes, a moment apart
            local at = cr(#bytes - 1)
            call("client", "lunet.socket.write", c, bytes:sub(1, at))
            lunet.sleep(cr(20) - 1)
            bytes = bytes:sub(at + 1)
          end
          call("client", "lunet.socket.write", c, bytes)
          for _ = 1, cr(3) do
            if not call("client", "lunet.socket.read", c)[2] then break end
          end
        end
        if cr(4) > 1 then call("client", "lunet.socket.close", c) end
      end)
    end
    if r(3) == 1 then -- closed while clients talk to it (perhaps twice)
      lunet.spawn(function()
        lunet.sleep(r(50))
        for _ = 1, r(2) do method("task", srv, "close") end
      end)
    end
  end,
  -- lunet.httpc against a live port with arguments right and wrong, bodies
  -- given as misbehaving functions, and sinks that misbehave.
  httpc = function(r, where)
    local ctx = hooks(r, function() random_call(r, "nested") end)
    local port = #ports > 0 and V.pick(r, ports) or 1
    local function piece_source()
      local n = 0
      local kind = V.pick(r, V.BEHAVIOURS)
      return function()
        n = n + 1
        if n > r(5) then return nil end
        if n == 2 and V.live then return V.behave(kind, ctx)() end
        return V.pick(r, { "piece", "", 5, nil, {} })
      end
    end
    local o = {
      url = V.pick(r, { ("http://127.0.0.1:%d/x?y=1"):format(port), ("http://[::1]:%d/"):format(port),
        "http://127.0.0.1:1/", "https://127.0.0.1:" .. port .. "/", "http://", "ftp://x/", 5 }),
      method = V.pick(r, { nil, "GET", "POST", "PUT", "HEAD", "G T", 1 }),
      headers = V.pick(r, { nil, { ["X-A"] = "b" }, { { "X", "y" } }, { X = "a\r\nb" }, { 1 }, "h" }),
      body = V.pick(r, { nil, "data", V.string(r), piece_source(), piece_source(), 7 }),
      timeout_ms = V.pick(r, { nil, r(300), 0, -1, 1.5 }),
      max_body_bytes = V.pick(r, { nil, r(100), 2 ^ 40 }),
      follow_redirects = V.pick(r, { nil, true, "yes" }),
      sink = V.pick(r, { nil, V.behave(V.pick(r, V.BEHAVIOURS), ctx), function() return true end, 3 }),
    }
    if r(8) == 1 then o = value(r) end
    call(where, "lunet.httpc.request", o)
    if r(4) == 1 then call(where, "lunet.httpc.close_idle") end
  end,
  -- A chain of spawns, each spawning the next before its first wait.
  recursive_spawn = function(r, where)
    local levels = V.pick(r, { 2, 10, 100, 250, 1000 })
    log(("%d %s recursive spawn %d"):format(ncalls, where, levels))
    local function step(n)
      if n > 0 then lunet.spawn(step, n - 1) end
      lunet.sleep(0)
    end
    pcall(lunet.spawn, step, levels)
  end,
  -- A module loaded again: its luaopen function runs once more.
  reload = function(r, where)
    local name = V.pick(r, sorted_keys(modules))
    log(("%d %s reload %s"):format(ncalls, where, name))
    package.loaded[name] = nil
    load_module(name)
  end,
}
local SCENARIO_NAMES = sorted_keys(SCENARIOS)

------------------------------------------------------------------ actions
local disabled = V.disabled

local ACTIONS = {
  { "call", 40, function(r, where) random_call(r, where) end },
  { "context", 14, function(r)
    local name = V.pick(r, CONTEXT_NAMES)
    if disabled[name] then return end
    CONTEXTS[name](function() random_call(r, name) end, r)
  end },
  { "scenario", 10, function(r, where)
    local name = V.pick(r, SCENARIO_NAMES)
    if not disabled[name] then SCENARIOS[name](r, where) end
  end },
  { "task_error", 2, function(r)
    local e = r(2) == 1 and V.evil_error(hooks(r, function() random_call(r, "errobj") end)) or value(r)
    log(("%d task dies with %s"):format(ncalls, V.describe(e)))
    lunet.spawn(function() if r(2) == 1 then lunet.sleep(0) end error(e, 0) end)
  end },
  { "drop", 4, function(r)
    if #handles == 0 then return end
    local h = table.remove(handles, r(#handles))
    if r(2) == 1 then close_handle(h) end
  end },
  { "collect", 3, function(r) collectgarbage(r(2) == 1 and "collect" or "step") end },
  { "signal", 2, function() raise_armed() end },
  { "resume_foreign", 2, function(r)
    if #foreign > 0 then coroutine.resume(foreign[r(#foreign)], value(r)) end
  end },
  { "yield", 6, function(r) lunet.sleep(r(3) - 1) end },
  -- lunet.http and lunet.httpc get scenarios of their own more often than
  -- the other scenarios (their objects come only from a running server).
  { "http", 4, function(r, where)
    local name = r(3) == 1 and "httpc" or "http_server"
    if not disabled[name] then SCENARIOS[name](r, where) end
  end },
}
local total_weight = 0
for _, a in ipairs(ACTIONS) do if not disabled[a[1]] then total_weight = total_weight + a[2] end end

local function action(r, where)
  local k = r(total_weight)
  for _, a in ipairs(ACTIONS) do
    if not disabled[a[1]] then
      k = k - a[2]
      if k <= 0 then return a[3](r, where) end
    end
  end
end

------------------------------------------------------------------ tasks
local stopping, finished = false, false
local workers, nworkers = {}, 0

local function worker(id)
  local w = { last = now() }
  workers[id] = w
  local r = rng(derive(SEED, id))
  for _ = 1, r(40) do
    if stopping then break end
    w.last = now()
    pcall(action, r, "task" .. id)
  end
  workers[id] = nil
end

-- Closes what the fuzzer holds, lets what waits finish, stops the loop.
local function cleanup()
  log("cleanup: closing handles")
  for _, h in ipairs(handles) do close_handle(h) end
  handles = {}
  for _ = 1, 20 do
    if not raise_armed() then break end
    pcall(lunet.sleep, 1)
  end
  collectgarbage()
  local until_t = now() + 2
  while lunet._pending and lunet._pending() > 0 and now() < until_t do
    pcall(lunet.sleep, 10)
    raise_armed()
  end
  log(("cleanup: %s coroutine(s) still parked"):format(tostring(lunet._pending and lunet._pending())))
end

local conductor_alive = false
local function conduct()
  local busy_target = 6
  while now() < deadline do
    local busy = 0
    for _, w in pairs(workers) do if now() - w.last < 0.3 then busy = busy + 1 end end
    local live = 0
    for _ in pairs(workers) do live = live + 1 end
    while busy < busy_target and live < 150 do
      nworkers = nworkers + 1
      pcall(lunet.spawn, worker, nworkers)
      busy, live = busy + 1, live + 1
    end
    pcall(lunet.sleep, 20)
  end
  stopping = true
  pcall(cleanup)
  finished = true
end

-- Runs the session in a task; whatever happens to it, the loop is stopped
-- once it ends.
local function conductor()
  conductor_alive = true
  pcall(conduct)
  conductor_alive = false
  pcall(lunet._stop)
end

------------------------------------------------------------------ main
local function db_params(kind)
  if os.getenv(kind == "mysql" and "FUZZ_MYSQL" or "FUZZ_POSTGRES") ~= "1" then return nil end
  return {
    host = os.getenv("LUNET_DB_HOST") or "127.0.0.1",
    port = kind == "mysql" and 3306 or 5432,
    user = os.getenv("LUNET_DB_USER") or (kind == "mysql" and "root" or "postgres"),
    password = os.getenv("LUNET_DB_PASS") or (kind == "mysql" and "" or nil),
    database = os.getenv("LUNET_DB_NAME") or "test",
  }
end

local function main()
  log(("seed %d, %g s, folder %s"):format(SEED, SECONDS, tmp))
  V.setup({ tmp = tmp, ports = function() return ports end, mysql = db_params("mysql"), postgres = db_params("postgres") })
  os.execute("mkdir -p sub && touch f0 && ln -s f0 link 2>/dev/null")
  discover()
  log(("targets: %d functions"):format(#targets))
  local r = rng(SEED)
  lunet.spawn(conductor)
  -- The main chunk: no coroutine, the loop not running yet.
  for _ = 1, r(60) do
    if stopping then break end
    pcall(action, r, "main")
  end
  local runs = 0
  while not finished and now() < deadline + 15 do
    runs = runs + 1
    if not conductor_alive and not finished and runs > 1 then
      log("conductor gone: starting another")
      lunet.spawn(conductor)
    end
    log("main: lunet.run()")
    pcall(lunet.run)
  end
end

-- A child still running well after its deadline logs where its Lua code is
-- (the parent kills it as hung soon after).
local hang_at = deadline + 8
debug.sethook(function()
  if now() > hang_at then
    hang_at = math.huge
    log("still running after the deadline: " .. debug.traceback())
  end
end, "", 1000000)

local ok, err = xpcall(main, debug.traceback)
-- Wind down: nothing misbehaves any more; finalisers still pending run now.
V.live = false
for _ = 1, 100 do if pcall(collectgarbage) then break end end
pcall(function()
  if not ok then log("main failed: " .. V.describe(err)) end
  log(("done: %d calls, %d tasks"):format(ncalls, nworkers))
end)
io.stdout:write(("FUZZ-CHILD-DONE seed=%d calls=%d tasks=%d finished=%s\n"):format(SEED, ncalls, nworkers, tostring(finished)))
io.stdout:flush()
os.exit(0, true)
