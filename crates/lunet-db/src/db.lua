-- The Lua side of every lunet database driver (lunet-db): loaded once per
-- driver module by open_module, which calls `wrap` on each yielding function
-- and then `install(module, driver_name)`.
--
--   * wrap: a statement whose wait timed out returns `nil, "timeout",
--     "timeout"` (the third value is the error code, as for database errors).
--   * install(module, name): adds `module.tx` (the transaction helper behind
--     `require("lunet.<driver>_tx")`).
local lib = {}

local type, error, pcall, select, tostring, setmetatable = type, error, pcall, select, tostring, setmetatable

local function coded(a, b, c, ...)
  if a == nil and c == nil and b == "timeout" then
    return nil, b, b
  end
  return a, b, c, ...
end

function lib.wrap(f)
  return function(...)
    return coded(f(...))
  end
end

local CANCELLED = "cancelled"

-- The error table of a failed transaction: err.message (also what tostring
-- and concatenation give), err.poisoned, err.code.
local function text(v)
  if type(v) == "table" and v.message ~= nil then return tostring(v.message) end
  return tostring(v)
end

local err_mt = {
  __tostring = function(e) return e.message end,
  __concat = function(a, b) return text(a) .. text(b) end,
}

local function mkerr(message, poisoned, code)
  return setmetatable({ message = message or "unknown error", poisoned = poisoned and true or false, code = code }, err_mt)
end

-- The isolation levels Postgres and MySQL take as a mode.
local LEVELS = { SERIALIZABLE = true, ["REPEATABLE READ"] = true, ["READ COMMITTED"] = true, ["READ UNCOMMITTED"] = true }

-- How each driver starts a transaction in a given mode.
local BEGIN = {
  sqlite3 = function(mode)
    mode = mode or "DEFERRED"
    if mode ~= "DEFERRED" and mode ~= "IMMEDIATE" and mode ~= "EXCLUSIVE" then return nil end
    return "BEGIN " .. mode
  end,
  postgres = function(mode)
    if mode == nil then return "BEGIN" end
    if not LEVELS[mode] then return nil end
    return "BEGIN ISOLATION LEVEL " .. mode
  end,
  mysql = function(mode)
    if mode == nil then return "START TRANSACTION" end
    if not LEVELS[mode] then return nil end
    return "SET TRANSACTION ISOLATION LEVEL " .. mode .. "; START TRANSACTION"
  end,
}

local MODES = {
  sqlite3 = "DEFERRED, IMMEDIATE or EXCLUSIVE",
  postgres = "SERIALIZABLE, REPEATABLE READ, READ COMMITTED or READ UNCOMMITTED",
  mysql = "SERIALIZABLE, REPEATABLE READ, READ COMMITTED or READ UNCOMMITTED",
}

-- Builds the transaction helper of one driver.
local function make_tx(native, name, lunet)
  local M = {}
  -- Statement failures raised by t.query/t.exec, told apart from other errors.
  local TX_ERR = {}
  -- Depth of the transaction open on each connection (nested calls use savepoints).
  local depth = setmetatable({}, { __mode = "k" })

  local function statement(conn, f, sql, ...)
    local r, e, code = f(conn, sql, ...)
    if r == nil then
      error({ [TX_ERR] = e or "statement failed", code = code }, 0)
    end
    return r
  end

  -- Runs `sql` to end the transaction when this task cannot (it was
  -- cancelled, or its deadline passed): in a task of its own, which closes
  -- the connection if even that fails, so no one inherits the transaction.
  local function finish_elsewhere(conn, sql)
    lunet.spawn(function()
      local ok, e = native.exec(conn, sql)
      if not ok and not tostring(e):find("no transaction", 1, true) then
        native.close(conn)
      end
    end)
  end

  --- tx.transaction(conn, fn [, mode]) → fn's first two results after
  -- COMMIT, or nil, err after ROLLBACK (err.message, err.poisoned, err.code).
  function M.transaction(conn, fn, mode)
    if conn == nil then return nil, mkerr("transaction requires a connection", false) end
    if type(fn) ~= "function" then return nil, mkerr("transaction requires a function", false) end
    local level = depth[conn] or 0
    local begin, commit, rollback
    if level == 0 then
      begin = BEGIN[name](mode)
      if not begin then
        return nil, mkerr("invalid transaction mode: " .. tostring(mode) .. " (expected " .. MODES[name] .. ")", false)
      end
      commit, rollback = "COMMIT", "ROLLBACK"
    else
      local sp = "lunet_sp_" .. level
      begin, commit = "SAVEPOINT " .. sp, "RELEASE SAVEPOINT " .. sp
      rollback = "ROLLBACK TO SAVEPOINT " .. sp .. "; RELEASE SAVEPOINT " .. sp
    end

    local began, berr, bcode = native.exec(conn, begin)
    if not began then
      return nil, mkerr(berr or "BEGIN failed", true, bcode)
    end
    depth[conn] = level + 1

    local t = {}
    function t.query(sql, ...) return statement(conn, native.query, sql, ...) end
    function t.query_row(sql, ...) return statement(conn, native.query, sql, ...)[1] end
    function t.exec(sql, ...) return statement(conn, native.exec, sql, ...) end

    local ok, r1, r2 = pcall(fn, t)
    depth[conn] = level > 0 and level or nil

    if ok and r1 ~= nil then
      local committed, cerr, ccode = native.exec(conn, commit)
      if committed then return r1, r2 end
      if cerr == "timeout" then
        -- Our deadline passed during the COMMIT, which was interrupted:
        -- whether it landed is unknown; end the transaction either way.
        finish_elsewhere(conn, rollback)
        return nil, mkerr("timeout", true, "timeout")
      end
      -- A failed COMMIT (a deferred constraint) may leave the transaction
      -- open (SQLite does): roll it back so the connection is clean.
      local rolled, rerr = native.exec(conn, rollback)
      local clean = rolled or tostring(rerr):find("no transaction", 1, true) ~= nil
      return nil, mkerr(cerr or "COMMIT failed", not clean, ccode)
    end

    local message, code
    if not ok then
      if type(r1) == "table" and r1[TX_ERR] ~= nil then
        message, code = r1[TX_ERR], r1.code
      else
        message = text(r1)
      end
    else
      message = r2 ~= nil and text(r2) or "transaction aborted"
    end

    local rolled, rerr = false, nil
    if not ok and r1 == CANCELLED then
      rerr = CANCELLED
    else
      local pok, a, b = pcall(native.exec, conn, rollback)
      if not pok then
        rerr = a -- raised at the wait: cancelled meanwhile
      elseif a then
        rolled = true
      else
        rerr = b
      end
    end
    if not rolled then
      if rerr == CANCELLED or rerr == "timeout" then
        -- This task can no longer wait (cancelled, or past its deadline):
        -- the ROLLBACK runs in a task of its own.
        finish_elsewhere(conn, rollback)
        if rerr == CANCELLED then error(CANCELLED, 0) end
      elseif not tostring(rerr):find("no transaction", 1, true) then
        return nil, mkerr(message .. " (ROLLBACK also failed: " .. tostring(rerr) .. ")", true, code)
      end
    end
    return nil, mkerr(message, false, code)
  end

  return M
end


-- ------------------------------------------------------------------ pools

local floor, huge = math.floor, math.huge
local pairs, ipairs, tonumber, next = pairs, ipairs, tonumber, next
local sort, concat = table.sort, table.concat

-- A canonical text of a configuration value (the pool key): every field,
-- sorted, with its type, so that pools never mix users, databases or options.
local function canon(v, seen)
  local tv = type(v)
  if tv == "table" then
    seen = seen or {}
    if seen[v] then return "<cycle>" end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for i, k in ipairs(keys) do out[i] = canon(k, seen) .. "=" .. canon(v[k], seen) end
    seen[v] = nil
    return "{" .. concat(out, ",") .. "}"
  elseif tv == "string" then
    return ("%q"):format(v)
  end
  return tv .. ":" .. tostring(v)
end

local function check_ms(opts, field)
  local v = opts[field]
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    error(("pool option '%s' must be a non-negative number of milliseconds (got %s)"):format(field, tostring(v)), 3)
  end
  return v
end

local function make_pools(native, name, lunet, park, wake)
  local pools = {} -- live pools by key
  local now = lunet.now
  local Pool = {}
  Pool.__index = Pool
  Pool.__name = name .. " pool"
  Pool.__tostring = function(p) return ("%s pool (%s)"):format(name, p.closed and "closed" or "open") end

  local function close_entry(p, e)
    p.total = p.total - 1
    native.close(e.conn)
  end

  -- Whether an idle entry must go: past its lifetime, or idle too long
  -- while the pool has `open` connections, more than min_idle.
  local function expired(p, e, t, open)
    if p.max_lifetime and t - e.created >= p.max_lifetime then return true end
    if p.idle_timeout and t - e.used >= p.idle_timeout and open > p.min_idle then return true end
    return false
  end

  -- Hands a freed slot or connection to the first waiter still waiting.
  local function hand_on(p, e)
    local q = p.waiters
    while q.head <= q.tail do
      local w = q[q.head]
      q[q.head] = nil
      q.head = q.head + 1
      if not w.done and w.token and wake(w.token) then
        w.done = true
        p.waiting = p.waiting - 1
        if e then
          w.entry = e
          p.in_use = p.in_use + 1
        else
          w.slot = true
          p.total = p.total + 1
        end
        return true
      end
    end
    return false
  end

  -- Drops expired idle connections (oldest first) and keeps min_idle open.
  local function sweep(p)
    local t = now()
    local idle, kept = p.idle, {}
    for i = 1, #idle do
      local e = idle[i]
      if expired(p, e, t, p.total) then
        p.evicted = p.evicted + 1
        close_entry(p, e)
        hand_on(p, nil)
      else
        kept[#kept + 1] = e
      end
    end
    p.idle = kept
    p.swept = t
    if p.total < p.min_idle and not p.filling and not p.closed then
      p.filling = true
      lunet.spawn(function()
        while not p.closed and p.total < p.min_idle do
          p.total = p.total + 1
          local e = p:_open()
          if not e then break end
          p.in_use = p.in_use + 1
          p:_release(e)
        end
        p.filling = false
      end)
    end
  end

  -- Opens a connection for a reserved slot (p.total already counts it).
  function Pool:_open()
    local conn, err, code = native.open(self.config)
    if conn and self.on_connect then
      local ok, r, e = pcall(self.on_connect, conn)
      if not ok or r == nil or r == false then
        native.close(conn)
        conn, err, code = nil, "on_connect: " .. tostring(ok and (e or "refused") or r), nil
      end
    end
    if not conn then
      self.total = self.total - 1
      hand_on(self, nil)
      return nil, err, code
    end
    self.created = self.created + 1
    local t = now()
    return { conn = conn, created = t, used = t }
  end

  --- pool:_acquire([ms]) → entry | nil, err, code
  function Pool:_acquire(ms)
    if self.closed then return nil, "pool is closed" end
    if now() - self.swept >= self.sweep_every then sweep(self) end
    local idle = self.idle
    while true do
      local e = idle[#idle]
      if not e then break end
      idle[#idle] = nil
      local t = now()
      if expired(self, e, t, self.total) then
        self.evicted = self.evicted + 1
        close_entry(self, e)
      else
        self.in_use = self.in_use + 1
        if t - e.used >= self.check_after then
          -- Idle for a while: make sure the server has not dropped it.
          local ok = native.query(e.conn, "SELECT 1")
          if not ok then
            self.in_use = self.in_use - 1
            self.broken = self.broken + 1
            close_entry(self, e)
            e = nil
          end
        end
        if e then
          self.reused = self.reused + 1
          return e
        end
      end
    end
    if self.total < self.size then
      self.total = self.total + 1
      local e, err, code = self:_open()
      if not e then return nil, err, code end
      self.in_use = self.in_use + 1
      return e
    end
    -- Full: wait in line (FIFO) for a connection or a free slot.
    local limit = ms or self.acquire_timeout
    local w = { token = false, done = false }
    local q = self.waiters
    q.tail = q.tail + 1
    q[q.tail] = w
    self.waiting = self.waiting + 1
    local ok, r, err = pcall(park, w, limit)
    if not w.done then
      w.done = true
      self.waiting = self.waiting - 1
    end
    if not ok then
      -- Cancelled while waiting: give back what was handed over meanwhile.
      if w.entry then self:_release(w.entry) end
      if w.slot then
        self.total = self.total - 1
        hand_on(self, nil)
      end
      error(r, 0)
    end
    if w.entry then
      self.reused = self.reused + 1
      return w.entry
    end
    if w.slot then
      local e, oerr, code = self:_open()
      if not e then return nil, oerr, code end
      self.in_use = self.in_use + 1
      return e
    end
    if w.closed then return nil, "pool is closed" end
    if err == "timeout" then self.timeouts = self.timeouts + 1 end
    return nil, err or "timeout", err or "timeout"
  end

  --- Gives a connection back: reset (ROLLBACK) if a transaction is open,
  -- closed if broken, past its lifetime or the pool is closed.
  function Pool:_release(e)
    self.in_use = self.in_use - 1
    local conn = e.conn
    local in_tx, broken = native._session(conn)
    if in_tx and not broken then
      local ok, done = pcall(native.exec, conn, "ROLLBACK")
      if not (ok and done) then broken = true end
      in_tx, broken = native._session(conn)
      broken = broken or in_tx
    end
    local t = now()
    if broken then
      self.broken = self.broken + 1
      close_entry(self, e)
      hand_on(self, nil)
      return
    end
    if self.closed or (self.max_lifetime and t - e.created >= self.max_lifetime) then
      if not self.closed then self.evicted = self.evicted + 1 end
      close_entry(self, e)
      hand_on(self, nil)
      return
    end
    e.used = t
    if not hand_on(self, e) then
      self.idle[#self.idle + 1] = e
    end
  end

  local function finish(p, e, ok, ...)
    p:_release(e)
    if not ok then error((...), 0) end
    return ...
  end

  --- pool:with(fn [, ms]) → fn(conn)'s results; the connection goes back
  -- to the pool when fn returns or raises (the error is raised again).
  function Pool:with(fn, ms)
    if type(fn) ~= "function" then error("bad argument #1 to 'pool:with' (function expected, got " .. type(fn) .. ")", 2) end
    local e, err, code = self:_acquire(ms)
    if not e then return nil, err, code end
    return finish(self, e, pcall(fn, e.conn))
  end

  local function statement(p, f, sql, ...)
    local e, err, code = p:_acquire()
    if not e then return nil, err, code end
    return finish(p, e, pcall(f, e.conn, sql, ...))
  end

  function Pool:query(sql, ...) return statement(self, native.query, sql, ...) end
  function Pool:exec(sql, ...) return statement(self, native.exec, sql, ...) end

  --- pool:transaction(fn [, opts]) → as tx.transaction on a connection of
  -- the pool; opts.mode is the transaction mode.
  function Pool:transaction(fn, opts)
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #2 to 'pool:transaction' (table expected, got " .. type(opts) .. ")", 2)
    end
    local e, err, code = self:_acquire()
    if not e then return nil, mkerr(err, false, code) end
    return finish(self, e, pcall(native.tx.transaction, e.conn, fn, opts and opts.mode))
  end

  function Pool:stats()
    local s = {
      size = self.total, max = self.size, idle = #self.idle, in_use = self.in_use, waiting = self.waiting,
      created = self.created, reused = self.reused, timeouts = self.timeouts,
      evicted = self.evicted, broken = self.broken,
      cache_hits = 0, cache_misses = 0, cache_size = 0,
    }
    for _, e in ipairs(self.idle) do
      local c = native.stats(e.conn)
      s.cache_hits, s.cache_misses, s.cache_size = s.cache_hits + c.cache_hits, s.cache_misses + c.cache_misses, s.cache_size + c.cache_size
    end
    return s
  end

  --- pool:close(): closes the idle connections now and the others when
  -- they come back; waiting callers get nil, "pool is closed".
  function Pool:close()
    if self.closed then return end
    self.closed = true
    if pools[self.key] == self then pools[self.key] = nil end
    for _, e in ipairs(self.idle) do close_entry(self, e) end
    self.idle = {}
    local q = self.waiters
    for i = q.head, q.tail do
      local w = q[i]
      q[i] = nil
      if w and not w.done and w.token and wake(w.token) then
        w.done, w.closed = true, true
        self.waiting = self.waiting - 1
      end
    end
    q.head, q.tail = 1, 0
  end

  return function(config, opts)
    if opts ~= nil and type(opts) ~= "table" then
      error(("bad argument #2 to '%s.pool' (table expected, got %s)"):format(name, type(opts)), 2)
    end
    opts = opts or {}
    local size = opts.size or 10
    if type(size) ~= "number" or size < 1 or size ~= floor(size) or size == huge then
      error(("pool option 'size' must be a positive integer (got %s)"):format(tostring(size)), 2)
    end
    local min_idle = opts.min_idle or 0
    if type(min_idle) ~= "number" or min_idle < 0 or min_idle ~= floor(min_idle) or min_idle > size then
      error(("pool option 'min_idle' must be an integer from 0 to size (got %s)"):format(tostring(min_idle)), 2)
    end
    if opts.on_connect ~= nil and type(opts.on_connect) ~= "function" then
      error("pool option 'on_connect' must be a function", 2)
    end
    local idle_timeout = check_ms(opts, "idle_timeout")
    local max_lifetime = check_ms(opts, "max_lifetime")
    local acquire_timeout = check_ms(opts, "acquire_timeout")
    local check_after = check_ms(opts, "check_after") or 1000
    local key = canon(config) .. "|" .. canon(opts)
    local p = pools[key]
    if p and not p.closed then return p end
    if type(config) == "table" then
      -- A copy: a table the caller changes later must not change the pool.
      local copy = {}
      for k, v in pairs(config) do copy[k] = v end
      config = copy
    end
    p = setmetatable({
      key = key, config = config, size = size, min_idle = min_idle, on_connect = opts.on_connect,
      idle_timeout = idle_timeout, max_lifetime = max_lifetime, acquire_timeout = acquire_timeout,
      check_after = check_after,
      sweep_every = math.min(idle_timeout or huge, max_lifetime or huge, 1000),
      idle = {}, total = 0, in_use = 0, waiting = 0, waiters = { head = 1, tail = 0 },
      created = 0, reused = 0, timeouts = 0, evicted = 0, broken = 0, swept = now(), closed = false,
    }, Pool)
    pools[key] = p
    if min_idle > 0 then sweep(p) end
    return p
  end
end

function lib.install(module, name, park, wake)
  local lunet = require("lunet")
  module.tx = make_tx(module, name, lunet)
  module.pool = make_pools(module, name, lunet, park, wake)
end

return lib
