-- The Lua side of worker mode and lunet.stats (see worker.rs, stats.rs).
-- Returns a function called once with the module table M.
local error, pairs, pcall, tostring, type = error, pairs, pcall, tostring, type

return function(M)
local info, drain_wait, raw_stats, spawn = M._worker, M._drain_wait, M._stats, M.spawn

--- lunet.worker() -> { id, count, generation, draining, supervised }: this
-- process's place under `lunet-run --workers N` (id 1 .. count). Outside
-- worker mode: id 1, count 1, generation 1, supervised false, and draining
-- never becomes true. A fresh table at each call: `draining` is current.
function M.worker()
  local supervised, id, count, generation, draining = info()
  return { id = id, count = count, generation = generation, draining = draining, supervised = supervised }
end

local hooks -- functions to call when the drain starts (nil: none yet)

--- lunet.on_drain(fn): calls fn() in a new task when this worker starts to
-- drain (its listeners are closed by then), or at once (in a new task) if it
-- drains already. Outside worker mode fn is kept and never called.
function M.on_drain(fn)
  if type(fn) ~= "function" then
    error("lunet.on_drain expects a function (got " .. type(fn) .. ")", 2)
  end
  local supervised, _, _, _, draining = info()
  if draining then
    spawn(fn)
    return
  end
  if not supervised then return end
  if not hooks then
    hooks = {}
    -- Parked without a handle: this task does not keep the loop alive.
    spawn(function()
      drain_wait()
      local list = hooks
      for i = 1, #list do spawn(list[i]) end
    end)
  end
  hooks[#hooks + 1] = fn
end

local providers = {} -- name -> function returning a table (lunet.on_stats)

--- lunet.on_stats(name, fn): lunet.stats() then holds fn()'s result under
-- `name` (for modules with figures of their own, such as database pools).
-- fn = nil removes the entry. Names of lunet's own fields are refused.
function M.on_stats(name, fn)
  if type(name) ~= "string" or name == "" then
    error("lunet.on_stats expects a name (got " .. tostring(name) .. ")", 2)
  end
  if fn ~= nil and type(fn) ~= "function" then
    error("lunet.on_stats expects a function or nil (got " .. type(fn) .. ")", 2)
  end
  if fn ~= nil and raw_stats()[name] ~= nil then
    error("lunet.on_stats: '" .. name .. "' is a field of lunet.stats()", 2)
  end
  providers[name] = fn
end

--- lunet.stats() -> table of this process's figures (see README "Workers").
-- A provider that raises is reported as { error = message }.
function M.stats()
  local t = raw_stats()
  for name, fn in pairs(providers) do
    local ok, v = pcall(fn)
    t[name] = ok and v or { error = tostring(v) }
  end
  return t
end
end
