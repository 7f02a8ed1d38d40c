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

function lib.install(module, name)
  module.tx = make_tx(module, name, require("lunet"))
end

return lib
