-- A first lunet program: three coroutines taking turns on one event loop.
--
--   build/release/lunet-run examples/hello.lua        (or: make run)
--
-- Each worker sleeps without blocking the others; the program ends by itself
-- when the last timer has fired and no work is left.
local lunet = require("lunet")

---@async
local function worker(name, interval_ms, rounds)
  for i = 1, rounds do
    lunet.sleep(interval_ms)
    print(("%-6s tick %d (every %d ms)"):format(name, i, interval_ms))
  end
  print(("%-6s done"):format(name))
end

lunet.spawn(worker, "fast", 10, 3)
lunet.spawn(worker, "medium", 25, 2)
lunet.spawn(worker, "slow", 60, 1)
print("main chunk finished; the event loop runs the workers now")
