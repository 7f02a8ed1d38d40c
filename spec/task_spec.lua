-- lunet tasks: spawn/join/cancel/status/current, on_error, deadline, every,
-- stop, now/hrtime/getpid, lunet.test.run, and the token fix (a coroutine
-- the script resumes itself is never resumed again by its old wait).
local H = require("spec.helper")
local lunet = H.lunet
local lt = require("lunet.test")
local pack = H.pack

-- A task parked in a long sleep (ended by cancel or by the test's cleanup).
local function sleeper(ms)
  return lunet.spawn(function() lunet.sleep(ms or 60000) end)
end

-- pcall(f, ...) must fail with an error containing `pattern` (plain).
local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error containing: " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), tostring(err))
end

describe("lunet.spawn", function()
  it("returns a task whose tostring shows its state", function()
    H.run(function()
      local t = lunet.spawn(function() lunet.sleep(1); return 1 end)
      assert.equal("userdata", type(t))
      assert.matches("^lunet%.task: 0x%x+ %(live%)$", tostring(t))
      assert.is_function(t.join)
      assert.is_function(t.cancel)
      assert.is_function(t.status)
      t:join()
      assert.matches("^lunet%.task: 0x%x+ %(done%)$", tostring(t))
    end)
  end)
end)

describe("task:join", function()
  it("returns true and every result, nils and trailing nils included", function()
    local r
    H.run(function()
      local t = lunet.spawn(function(...)
        lunet.sleep(1)
        return nil, 2, nil, ...
      end, "a", nil)
      r = pack(t:join())
    end)
    assert.same({ n = 6, true, nil, 2, nil, "a", nil }, r)
  end)

  it("returns many results", function()
    local vals = {}
    for i = 1, 5000 do vals[i] = i end
    local r
    H.run(function()
      local t = lunet.spawn(function() lunet.sleep(0); return unpack(vals) end)
      r = pack(t:join())
    end)
    assert.equal(5001, r.n)
    assert.is_true(r[1])
    assert.equal(1, r[2])
    assert.equal(5000, r[5001])
  end)

  it("returns false and the error value of a task that raised", function()
    local obj = {}
    local r1, r2
    H.run(function()
      local a = lunet.spawn(function() lunet.sleep(1); error(obj) end)
      local b = lunet.spawn(function() lunet.sleep(1); error("boom") end)
      r1, r2 = pack(a:join()), pack(b:join())
    end)
    assert.equal(2, r1.n)
    assert.is_false(r1[1])
    assert.is_true(rawequal(obj, r1[2]))
    assert.is_false(r2[1])
    assert.matches("task_spec%.lua:%d+: boom$", r2[2])
  end)

  it("returns false, 'cancelled' for a cancelled task", function()
    local r
    H.run(function()
      local t = sleeper()
      t:cancel()
      r = pack(t:join())
    end)
    assert.same({ n = 2, false, "cancelled" }, r)
  end)

  it("returns nil, 'timeout' when its own time runs out; the task goes on and can be joined later", function()
    local r1, status, r2
    H.run(function()
      lunet.sleep(0) -- a fresh loop clock (see "times count from the call")
      local t = lunet.spawn(function() lunet.sleep(60); return "late" end)
      local t0 = H.now_ms()
      r1 = pack(t:join(10))
      assert.is_true(H.now_ms() - t0 >= 9)
      status = t:status()
      r2 = pack(t:join())
    end)
    assert.same({ n = 2, nil, "timeout" }, r1)
    assert.equal("waiting", status)
    assert.same({ n = 2, true, "late" }, r2)
  end)

  it("wakes any number of joiners with the same results", function()
    local got = {}
    H.run(function()
      local t = lunet.spawn(function() lunet.sleep(5); return "r", 7 end)
      local joiners = {}
      for i = 1, 20 do
        joiners[i] = lunet.spawn(function() got[i] = pack(t:join()) end)
      end
      for i = 1, 20 do joiners[i]:join() end
    end)
    assert.equal(20, #got)
    for i = 1, 20 do assert.same({ n = 3, true, "r", 7 }, got[i]) end
  end)

  it("returns at once for a finished task, also from the main thread and repeatedly", function()
    local t = lunet.spawn(function() return "x", nil end)
    assert.equal("done", t:status())
    assert.same({ n = 3, true, "x", nil }, pack(t:join()))
    assert.same({ n = 3, true, "x", nil }, pack(t:join()))
    local failed = lunet.spawn(function() error("early", 0) end)
    assert.same({ n = 2, false, "early" }, pack(failed:join()))
    H.run(function()
      -- From a task: no wait at all, so the joiner runs to its end inside spawn.
      local r
      local j = lunet.spawn(function() r = pack(t:join(5)) end)
      assert.equal("done", j:status())
      assert.same({ n = 3, true, "x", nil }, r)
    end)
  end)

  it("raises when a task joins itself", function()
    local err
    H.run(function()
      local t
      t = lunet.spawn(function()
        lunet.sleep(0)
        local ok, e = pcall(t.join, t)
        err = not ok and e
      end)
      t:join()
    end)
    assert.matches("task:join: a task cannot join itself$", err)
  end)

  it("raises the yield guard's error on the main thread for an unfinished task, registering nothing", function()
    local t = sleeper()
    local before = lunet._pending()
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal("task.join must be called from coroutine", err)
    assert.equal(before, lunet._pending())
    t:cancel()
    assert.same({ n = 2, false, "cancelled" }, lt.run(function() return pack(t:join()) end))
  end)

  it("raises for bad times and for values that are not tasks", function()
    H.run(function()
      local t = sleeper(1)
      for _, ms in ipairs({ -1, 0 / 0, math.huge, -math.huge, "10", {} }) do
        raises("task:join", t.join, t, ms)
      end
      raises("task:join expects a task", t.join, {})
      raises("task:cancel expects a task", t.cancel, 1)
      raises("task:status expects a task", t.status, nil)
      assert.same({ n = 1, true }, pack(t:join(nil)))
    end)
  end)
end)

describe("task:cancel", function()
  it("raises 'cancelled' at the wait point: the rest never runs", function()
    local log = {}
    H.run(function()
      local t = lunet.spawn(function()
        log[#log + 1] = "before"
        lunet.sleep(60000)
        log[#log + 1] = "after"
      end)
      lunet.sleep(1)
      t:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
      assert.equal("cancelled", t:status())
    end)
    assert.same({ "before" }, log)
  end)

  it("is caught by pcall(lunet.sleep, ms) and by pcall around a function that waits", function()
    local r1, r2
    H.run(function()
      local a = lunet.spawn(function() r1 = pack(pcall(lunet.sleep, 60000)); return "cleaned up" end)
      local b = lunet.spawn(function()
        r2 = pack(pcall(function()
          local x = 1
          lunet.sleep(60000)
          return x
        end))
        return "cleaned up"
      end)
      a:cancel()
      b:cancel()
      -- The task caught the cancellation and returned: it is done, not cancelled.
      assert.same({ n = 2, true, "cleaned up" }, pack(a:join()))
      assert.same({ n = 2, true, "cleaned up" }, pack(b:join()))
      assert.equal("done", a:status())
    end)
    assert.same({ n = 2, false, "cancelled" }, r1)
    assert.same({ n = 2, false, "cancelled" }, r2)
  end)

  it("is sticky: every later wait raises it again, so a loop cannot swallow it", function()
    local caught = 0
    H.run(function()
      local t = lunet.spawn(function()
        while true do
          local ok, err = pcall(lunet.sleep, 1000)
          assert(not ok and err == "cancelled", tostring(err))
          caught = caught + 1
          if caught == 5 then lunet.sleep(0) end -- not caught: ends the task
        end
      end)
      t:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
    end)
    assert.equal(5, caught)
  end)

  it("does nothing to a finished task", function()
    H.run(function()
      local done = lunet.spawn(function() return 1 end)
      local failed = lunet.spawn(function() error("x", 0) end)
      done:cancel()
      failed:cancel()
      assert.equal("done", done:status())
      assert.equal("failed", failed:status())
      assert.same({ n = 2, true, 1 }, pack(done:join()))
      assert.same({ n = 2, false, "x" }, pack(failed:join()))
    end)
  end)

  it("a task can cancel itself: it runs on until its next wait, which raises", function()
    local log = {}
    H.run(function()
      local t = lunet.spawn(function()
        lunet.current():cancel()
        log[#log + 1] = "still running"
        lunet.sleep(0)
        log[#log + 1] = "after the wait"
      end)
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
    end)
    assert.same({ "still running" }, log)
  end)

  it("works from the main chunk", function()
    local reached = false
    local t = lunet.spawn(function() lunet.sleep(60000); reached = true end)
    t:cancel()
    assert.same({ n = 2, false, "cancelled" }, lt.run(function() return pack(t:join()) end))
    assert.is_false(reached)
  end)

  it("a task cancelled before it started (spawned in a finaliser) never runs", function()
    local ran, t = false, nil
    H.run(function()
      local p = newproxy(true)
      getmetatable(p).__gc = function()
        t = lunet.spawn(function() ran = true end)
      end
      p = nil -- luacheck: ignore
      collectgarbage(); collectgarbage()
      assert.is_not_nil(t, "the finaliser did not run")
      assert.equal("ready", t:status())
      t:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
    end)
    assert.is_false(ran)
  end)

  it("a task cancelled before it started (spawned too deep) never runs", function()
    local ran, deferred, level = {}, nil, nil
    H.run(function()
      -- Each level spawns the next before its first wait; past the depth
      -- limit a spawn is left to the next loop iteration.
      local function nest(d)
        ran[d] = true
        if d == 0 then return end
        local t = lunet.spawn(nest, d - 1)
        if not deferred and t:status() == "ready" then deferred, level = t, d - 1 end
      end
      nest(300)
      assert.is_not_nil(deferred, "no spawn was deferred")
      deferred:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(deferred:join()))
      lunet.sleep(1)
    end)
    assert.is_nil(ran[level])
    assert.is_nil(ran[0])
    assert.is_true(ran[level + 1])
  end)
end)

describe("task:status", function()
  it("is running, waiting, ready, done, failed or cancelled", function()
    local seen = {}
    H.run(function()
      local t
      t = lunet.spawn(function()
        seen.self = lunet.current():status()
        -- A task that resumed another is still running.
        local parent = lunet.current()
        lunet.spawn(function() seen.parent = parent:status() end)
        lunet.sleep(5)
      end)
      seen.waiting = t:status()
      local r = lunet.spawn(function() lunet.sleep(0) end)
      seen.ready_after_sleep0 = r:status()
      local c = sleeper()
      c:cancel()
      seen.ready_after_cancel = c:status()
      c:join()
      seen.cancelled = c:status()
      t:join()
      seen.done = t:status()
      local f = lunet.spawn(function() lunet.sleep(0); error("x") end)
      f:join()
      seen.failed = f:status()
      r:join()
    end)
    assert.same({
      self = "running",
      parent = "running",
      waiting = "waiting",
      ready_after_sleep0 = "ready",
      ready_after_cancel = "ready",
      cancelled = "cancelled",
      done = "done",
      failed = "failed",
    }, seen)
  end)
end)

describe("lunet.current", function()
  it("is nil on the main thread and in a bare coroutine, the task (==) inside a task", function()
    assert.is_nil(lunet.current())
    local inside, in_bare, t
    H.run(function()
      t = lunet.spawn(function()
        inside = lunet.current()
        in_bare = coroutine.wrap(function() return lunet.current() end)()
        lunet.sleep(0)
      end)
      t:join()
    end)
    assert.is_true(inside == t)
    assert.is_false(inside == lunet.spawn(function() end))
    assert.is_nil(in_bare)
    assert.is_nil(coroutine.wrap(function() return lunet.current() end)())
  end)
end)

describe("lunet.on_error", function()
  after_each(function() lunet.on_error(nil) end)

  it("is called with err, traceback and task for a failure nobody joins", function()
    local calls = {}
    lunet.on_error(function(...) calls[#calls + 1] = pack(...) end)
    local t
    H.run(function()
      t = lunet.spawn(function() lunet.sleep(1); error("unjoined", 0) end)
      lunet.sleep(10)
    end)
    assert.equal(1, #calls)
    assert.equal(3, calls[1].n)
    assert.equal("unjoined", calls[1][1])
    assert.matches("^stack traceback:", calls[1][2])
    assert.is_true(calls[1][3] == t)
  end)

  it("is not called when someone joins, nor for a cancellation", function()
    local calls = 0
    lunet.on_error(function() calls = calls + 1 end)
    H.run(function()
      local t = lunet.spawn(function() lunet.sleep(1); error("joined") end)
      assert.is_false((t:join()))
      local c = sleeper()
      c:cancel()
      lunet.sleep(5)
      assert.equal("cancelled", c:status())
    end)
    assert.equal(0, calls)
  end)

  it("a handler that raises falls back to the default report; nil restores the default", function()
    local rc, _, err = H.lunet_run([[
      local lunet = require("lunet")
      lunet.on_error(function(e) error("handler broke") end)
      lunet.spawn(function() lunet.sleep(1); error("first failure", 0) end)
      lunet.spawn(function()
        lunet.sleep(5)
        lunet.on_error(nil)
        lunet.spawn(function() lunet.sleep(1); error("second failure", 0) end)
      end)
    ]], nil, 60)
    assert.equal(0, rc, err)
    assert.matches("%[lunet%] error handler failed: [^\n]*handler broke\n", err)
    assert.matches("%[lunet%] coroutine error: first failure\nstack traceback:", err)
    assert.matches("%[lunet%] coroutine error: second failure\nstack traceback:", err)
  end)

  it("raises for a value that is neither a function nor nil", function()
    raises("lunet.on_error expects a function or nil", lunet.on_error, 1)
  end)
end)

describe("lunet.deadline", function()
  -- Runs `body(log)` in a task beside marker tasks that log their name after
  -- sleeping `ms`; returns the log. Timers of one loop fire in deadline
  -- order, so the order of the log tells which deadline was in force.
  local function ordered(markers, body)
    local log = {}
    H.run(function()
      local ts = {}
      for name, ms in pairs(markers) do
        ts[#ts + 1] = lunet.spawn(function() lunet.sleep(ms); log[#log + 1] = name end)
      end
      body(log)
      for _, t in ipairs(ts) do t:join() end
    end)
    return log
  end

  it("makes the waits inside time out; a sleep cut short returns nil, 'timeout'", function()
    local r1, r2, elapsed
    H.run(function()
      lunet.sleep(0) -- a fresh loop clock (see "times count from the call")
      local t0 = H.now_ms()
      lunet.deadline(30, function()
        r1 = pack(lunet.sleep(1))
        r2 = pack(lunet.sleep(60000))
      end)
      elapsed = H.now_ms() - t0
    end)
    assert.same({ n = 0 }, r1)
    assert.same({ n = 2, nil, "timeout" }, r2)
    assert.is_true(elapsed >= 29, elapsed)
  end)

  it("passes arguments and returns every result of fn", function()
    local r
    H.run(function()
      r = pack(lunet.deadline(1000, function(a, b, c) lunet.sleep(0); return nil, a, b, c, nil end, "a", nil, "b"))
    end)
    assert.same({ n = 5, nil, "a", nil, "b", nil }, r)
  end)

  it("nests: the earliest deadline wins, and an inner longer one does not extend the outer", function()
    local log = ordered({ m100 = 100, m1000 = 1000 }, function(log)
      lunet.deadline(20, function()
        lunet.deadline(5000, function()
          local _, err = lunet.sleep(60000)
          log[#log + 1] = "inner " .. tostring(err)
        end)
      end)
    end)
    assert.same({ "inner timeout", "m100", "m1000" }, log)
  end)

  it("nests: an inner shorter deadline ends first, then the outer is back in force", function()
    local log = ordered({ m100 = 100, m3000 = 3000 }, function(log)
      lunet.deadline(400, function()
        lunet.deadline(10, function()
          local _, err = lunet.sleep(60000)
          log[#log + 1] = "inner " .. tostring(err)
        end)
        local _, err = lunet.sleep(60000)
        log[#log + 1] = "outer " .. tostring(err)
      end)
    end)
    assert.same({ "inner timeout", "m100", "outer timeout", "m3000" }, log)
  end)

  it("is released when fn returns or raises: later waits are unaffected", function()
    local after_return, after_raise, err
    H.run(function()
      lunet.deadline(5, function() end)
      after_return = pack(lunet.sleep(20))
      local ok
      ok, err = pcall(lunet.deadline, 5, function() error("inner failure", 0) end)
      assert.is_false(ok)
      after_raise = pack(lunet.sleep(20))
    end)
    assert.same({ n = 0 }, after_return)
    assert.same({ n = 0 }, after_raise)
    assert.equal("inner failure", err)
  end)

  it("re-raises fn's error value unchanged", function()
    local obj, got = {}, nil
    H.run(function()
      local ok, e = pcall(lunet.deadline, 100, function() lunet.sleep(0); error(obj) end)
      assert.is_false(ok)
      got = e
      ok, e = pcall(lunet.deadline, 100, function() error("where") end)
      assert.matches("task_spec%.lua:%d+: where$", e)
    end)
    assert.is_true(rawequal(obj, got))
  end)

  it("a wait started after the deadline passed times out", function()
    local r
    H.run(function()
      lunet.deadline(0, function() r = pack(lunet.sleep(0)) end)
    end)
    assert.same({ n = 2, nil, "timeout" }, r)
  end)

  it("raises outside a task (main thread, bare coroutine) without running fn", function()
    local ran = false
    local function fn() ran = true end
    raises("lunet.deadline must be called from a task", lunet.deadline, 10, fn)
    H.run(function()
      local ok, err = coroutine.wrap(function() return pcall(lunet.deadline, 10, fn) end)()
      assert.is_false(ok)
      assert.matches("lunet.deadline must be called from a task$", err)
    end)
    assert.is_false(ran)
  end)

  it("raises for bad times and a missing function", function()
    H.run(function()
      for _, ms in ipairs({ -1, 0 / 0, math.huge, "10", {}, nil }) do
        raises("lunet.deadline", lunet.deadline, ms, function() end)
      end
      raises("lunet.deadline expects a function", lunet.deadline, 10, nil)
      -- Nothing stays in force after a refused call.
      assert.same({ n = 0 }, pack(lunet.sleep(1)))
    end)
  end)
end)

describe("times count from the call", function()
  -- The loop's clock is cached; a main thread (or task) that computed for a
  -- while before starting a wait must not see the wait end early.
  local function busy(ms)
    local t0 = H.now_ms()
    while H.now_ms() - t0 < ms do end
  end

  for _, case in ipairs({
    { "lunet.sleep", function() lunet.sleep(50) end },
    { "lunet.deadline", function() lunet.deadline(50, lunet.sleep, 60000) end },
    { "task:join(ms)", function()
      local t = sleeper()
      t:join(50)
      t:cancel()
    end },
  }) do
    it(case[1] .. " after the loop's clock went stale", function()
      local elapsed
      H.run(function() end) -- the loop ran: its clock is now
      busy(100)
      H.run(function()
        local t0 = H.now_ms()
        case[2]()
        elapsed = H.now_ms() - t0
      end)
      assert.is_true(elapsed >= 49, ("ended after %.3f ms instead of 50"):format(elapsed))
    end)
  end
end)

describe("lunet.every", function()
  it("calls fn every ms with its arguments until cancelled", function()
    local ticks = {}
    H.run(function()
      local t = lunet.every(2, function(a, b) ticks[#ticks + 1] = a .. b end, "x", "y")
      assert.is_true(H.eventually(function() return #ticks >= 3 end))
      t:cancel()
      assert.same({ n = 2, false, "cancelled" }, pack(t:join()))
      local n = #ticks
      lunet.sleep(20)
      assert.equal(n, #ticks)
    end)
    assert.equal("xy", ticks[1])
  end)

  it("ends when fn raises; the error is the task's", function()
    local n = 0
    H.run(function()
      local t = lunet.every(1, function()
        n = n + 1
        if n == 3 then error("third tick", 0) end
      end)
      assert.same({ n = 2, false, "third tick" }, pack(t:join()))
      lunet.sleep(10)
    end)
    assert.equal(3, n)
  end)

  it("raises for bad arguments", function()
    for _, ms in ipairs({ -1, 0 / 0, math.huge, "1", nil }) do
      raises("lunet.every expects a time", lunet.every, ms, function() end)
    end
    raises("lunet.every expects a function", lunet.every, 1, 2)
  end)
end)

describe("lunet.stop", function()
  -- The stopper reaches lunet.stop() after `how` (a timer, or the ready list
  -- that serves sleep(0) and joins).
  for _, how in ipairs({ "lunet.sleep(5)", "lunet.sleep(0)", "lunet.spawn(lunet.sleep, 0):join()" }) do
    it("after " .. how .. ": run returns, waiting tasks end cancelled, a signal.wait no longer keeps the process alive", function()
      local rc, out, err = H.lunet_run([[
        local lunet = require("lunet")
        local signal = require("lunet.signal")
        local plain = lunet.spawn(function() lunet.sleep(60000) end)
        local sig = lunet.spawn(function() signal.wait("USR2") end)
        local catcher = lunet.spawn(function()
          local ok, e = pcall(lunet.sleep, 60000)
          print("caught", ok, e)
        end)
        lunet.spawn(function() ]] .. how .. [[; lunet.stop() end)
        lunet.run()
        print("run returned", plain:status(), sig:status(), catcher:status(), lunet._pending())
      ]], nil, 30)
      assert.equal(0, rc, err)
      assert.equal("caught\tfalse\tcancelled\nrun returned\tcancelled\tcancelled\tdone\t0\n", out)
    end)
  end
end)

describe("lunet.now, lunet.hrtime, lunet.getpid", function()
  it("clocks are monotonic and advance across a sleep; the pid is this process's", function()
    H.run(function()
      lunet.sleep(0) -- a fresh loop clock (see "times count from the call")
      local n0, h0 = lunet.now(), lunet.hrtime()
      assert.is_number(n0)
      assert.is_number(h0)
      lunet.sleep(20)
      local n1, h1 = lunet.now(), lunet.hrtime()
      assert.is_true(n1 - n0 >= 19, n1 - n0)
      assert.is_true(h1 - h0 >= 19e6, h1 - h0)
      local prev = lunet.hrtime()
      for _ = 1, 1000 do
        local h = lunet.hrtime()
        assert.is_true(h >= prev)
        prev = h
      end
    end)
    assert.equal(H.pid(), lunet.getpid())
  end)
end)

describe("lunet.test.run", function()
  it("returns fn's results, nils included", function()
    local r = pack(lt.run(function(a, b)
      lunet.sleep(1)
      return a + b, nil, "x", nil
    end, 5000, 1, 2))
    assert.same({ n = 4, 3, nil, "x", nil }, r)
  end)

  it("re-raises fn's error unchanged", function()
    local obj = {}
    local ok, err = pcall(lt.run, function() lunet.sleep(1); error(obj) end)
    assert.is_false(ok)
    assert.is_true(rawequal(obj, err))
    ok, err = pcall(lt.run, function() error("plain") end)
    assert.matches("task_spec%.lua:%d+: plain$", err)
  end)

  it("raises 'timeout' when the time runs out, and cancels the task", function()
    local reached = false
    local ok, err = pcall(lt.run, function() lunet.sleep(60000); reached = true end, 10)
    assert.is_false(ok)
    assert.equal("timeout", err)
    assert.is_false(reached)
  end)

  it("cancels whatever the test left, so a later run is clean", function()
    local pending, balance = lunet._pending(), H.trace_balance()
    local left
    -- Whatever this test fails to clean up must not spill into the next one.
    finally(function() pcall(lt.run, function() lunet.sleep(1) end) end)
    lt.run(function()
      left = sleeper()
      lunet.spawn(function() require("lunet.signal").wait("USR2") end)
      lunet.sleep(0)
    end)
    assert.equal("cancelled", left:status())
    assert.equal(pending, lunet._pending())
    assert.equal(balance, H.trace_balance())
    local r
    H.run(function() lunet.sleep(1); r = "later run" end)
    assert.equal("later run", r)
  end)

  it("raises for bad arguments", function()
    raises("lunet.test.run expects a function", lt.run, nil)
    raises("timeout_ms must be a number >= 0", lt.run, function() end, -1)
  end)
end)

describe("a coroutine the script resumes itself", function()
  -- `co` waits in lunet.sleep(20); the script resumes it with its own values;
  -- it then waits in lunet.sleep(150). The first sleep's end must not resume it.
  local function resumed_by_script(make)
    local log = {}
    local t0
    local co = make(function(...)
      log[#log + 1] = pack(lunet.sleep(20))
      log[#log + 1] = pack(...)
      t0 = H.now_ms()
      log[#log + 1] = pack(lunet.sleep(150))
      log[#log + 1] = H.now_ms() - t0
    end)
    assert.same({ n = 2, "mine", 42 }, log[1])
    assert.same({ n = 0 }, log[2])
    -- The second sleep ended on its own time, once.
    assert.equal(4, #log)
    assert.is_true(log[4] >= 149, log[4])
    assert.equal("dead", coroutine.status(co))
  end

  it("is a bare coroutine: the first wait's completion never resumes it", function()
    resumed_by_script(function(body)
      local co
      H.run(function()
        co = coroutine.create(body)
        assert(coroutine.resume(co))
        lunet.sleep(1)
        assert(coroutine.resume(co, "mine", 42))
        lunet.sleep(200)
      end)
      return co
    end)
  end)

  it("is a task's coroutine: the first wait's completion never resumes it", function()
    resumed_by_script(function(body)
      local co
      H.run(function()
        local t = lunet.spawn(function() co = coroutine.running(); body() end)
        lunet.sleep(1)
        assert(coroutine.resume(co, "mine", 42))
        t:join()
      end)
      return co
    end)
  end)
end)
