-- Pieces shared by the database benchmarks (bench/sqlite3.lua, bench/mysql.lua).
local lunet = require("lunet")
local now = require("bench.clock")

local M = {}

--- Returns `v`, or raises `err` (for `nil, err` results).
function M.check(v, err)
  if v == nil then error(err, 2) end
  return v
end

--- Runs `n` statements `conn[method](conn, sql, args_of(j))` from `coroutines`
-- coroutines spread over `conns`; returns the seconds taken and how many ran.
-- Call from a coroutine; the end time is taken by the last coroutine to finish,
-- and the caller waits with long sleeps so as not to disturb the measurement.
function M.measure(conns, coroutines, n, method, sql, args_of)
  local per = math.floor(n / coroutines)
  local finished, t0, t_end = 0, now(), nil
  for k = 1, coroutines do
    local c = conns[(k - 1) % #conns + 1]
    lunet.spawn(function()
      for i = 1, per do
        local j = (k - 1) * per + i
        M.check(c[method](c, sql, args_of(j)))
      end
      finished = finished + 1
      if finished == coroutines then t_end = now() end
    end)
  end
  while not t_end do lunet.sleep(50) end
  return t_end - t0, per * coroutines
end

return M
