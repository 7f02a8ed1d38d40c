-- lunet core: spawn, sleep, run, error reporting, yield guards.
local H = require("spec.helper")
local lunet = H.lunet

describe("lunet.spawn", function()
  it("starts the coroutine synchronously, up to its first yield", function()
    local log = {}
    H.run(function()
      lunet.spawn(function(a, b)
        log[#log + 1] = "start " .. a .. b
        lunet.sleep(0)
        log[#log + 1] = "after yield"
      end, "x", "y")
      log[#log + 1] = "spawn returned"
    end)
    assert.same({ "start xy", "spawn returned", "after yield" }, log)
  end)

  it("works from the main chunk and passes every argument, nils included", function()
    local got
    lunet.spawn(function(...) got = { n = select("#", ...), ... } end, 1, nil, 3)
    assert.same({ n = 3, 1, nil, 3 }, got)
  end)

  it("raises for anything that is not a function", function()
    for _, v in ipairs({ 1, "f", {}, true }) do
      assert.has_error(function() lunet.spawn(v) end)
    end
    local ok, err = pcall(lunet.spawn)
    assert.is_false(ok)
    assert.matches("lunet.spawn expects a function %(got no value%)", err)
  end)

  it("keeps suspended coroutines alive through full garbage collections", function()
    local woke = 0
    H.run(function()
      for _ = 1, 2000 do
        lunet.spawn(function() lunet.sleep(5); woke = woke + 1 end)
      end
      collectgarbage(); collectgarbage()
      lunet.sleep(1)
      collectgarbage()
    end)
    assert.equal(2000, woke)
  end)
end)

describe("lunet.sleep", function()
  it("wakes 10,000 concurrent sleepers", function()
    local woke = 0
    H.run(function()
      for i = 1, 10000 do
        lunet.spawn(function() lunet.sleep(i % 13); woke = woke + 1 end)
      end
    end)
    assert.equal(10000, woke)
  end)

  it("wakes sleepers in deadline order, ties in call order", function()
    local order = {}
    H.run(function()
      for _, spec in ipairs({ { 30, "c" }, { 10, "a1" }, { 20, "b" }, { 10, "a2" }, { 0, "z" } }) do
        lunet.spawn(function() lunet.sleep(spec[1]); order[#order + 1] = spec[2] end)
      end
    end)
    assert.same({ "z", "a1", "a2", "b", "c" }, order)
  end)

  it("sleeps at least the requested time", function()
    local elapsed
    H.run(function()
      local t0 = H.now_ms()
      lunet.sleep(50)
      elapsed = H.now_ms() - t0
    end)
    -- A lower bound only: a timer may fire late on a busy machine, never early.
    assert.is_true(elapsed >= 49, "woke after " .. elapsed .. " ms")
  end)

  it("sleep(0) yields one loop iteration and lets others run", function()
    local log = {}
    H.run(function()
      lunet.spawn(function()
        for i = 1, 3 do log[#log + 1] = "a" .. i; lunet.sleep(0) end
      end)
      lunet.spawn(function()
        for i = 1, 3 do log[#log + 1] = "b" .. i; lunet.sleep(0) end
      end)
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("returns nothing and truncates fractions", function()
    local n
    H.run(function() n = select("#", lunet.sleep(1.9)) end)
    assert.equal(0, n)
  end)

  it("raises on negative, NaN and non-number durations", function()
    H.run(function()
      local ok, err = pcall(lunet.sleep, -1)
      assert.is_false(ok)
      assert.matches("lunet.sleep duration must be >= 0", err)
      ok, err = pcall(lunet.sleep, 0 / 0)
      assert.is_false(ok)
      assert.matches("lunet.sleep duration must be >= 0", err)
      for _, v in ipairs({ "abc", {}, true }) do
        ok, err = pcall(lunet.sleep, v)
        assert.is_false(ok)
        assert.matches("lunet.sleep expects a number", err)
      end
      ok = pcall(lunet.sleep)
      assert.is_false(ok)
    end)
  end)

  it("raises outside a coroutine before registering anything", function()
    local before = lunet._pending()
    local ok, err = pcall(lunet.sleep, 10)
    assert.is_false(ok)
    assert.equal("lunet.sleep must be called from coroutine", err)
    assert.equal(before, lunet._pending())
  end)

  it("raises in a non-yieldable context before registering anything", function()
    local errs = {}
    H.run(function()
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        lunet.sleep(1)
        return a < b
      end)
      errs[1] = not ok and err
      ok, err = pcall(string.gsub, "ab", "%w", function() lunet.sleep(1) end)
      errs[2] = not ok and err
    end)
    assert.matches("lunet.sleep called in non%-yieldable context", errs[1])
    assert.matches("lunet.sleep called in non%-yieldable context", errs[2])
  end)

  it("yields across pcall", function()
    local r
    H.run(function()
      r = { pcall(function() lunet.sleep(1); return "done" end) }
    end)
    assert.same({ true, "done" }, r)
  end)
end)

describe("coroutine errors", function()
  -- Run in a subprocess: the report goes to the process's stderr.
  it("are reported with a traceback, before and after the first yield, and the loop goes on", function()
    local rc, out, err = H.lunet_run([[
      local lunet = require("lunet")
      local function inner() error("early failure") end
      lunet.spawn(function() inner() end)
      lunet.spawn(function() lunet.sleep(5); error({}) end)
      lunet.spawn(function() lunet.sleep(10); local t = nil; return t.x end)
      lunet.spawn(function() lunet.sleep(20); print("survivor finished") end)
      print("main chunk done")
    ]])
    assert.equal(0, rc)
    assert.matches("main chunk done\nsurvivor finished\n", out)
    assert.matches("%[lunet%] coroutine error: [^\n]*early failure\nstack traceback:\n", err)
    assert.matches("in %a+ 'inner'", err)
    assert.matches("%[lunet%] coroutine error: %(error object is a table value%)", err)
    assert.matches("%[lunet%] coroutine error: [^\n]*attempt to index", err)
  end)

  it("do not change the exit code", function()
    local rc = H.lunet_run([[
      local lunet = require("lunet")
      __lunet_exit_code = 3
      lunet.spawn(function() lunet.sleep(1); error("x") end)
    ]])
    assert.equal(3, rc)
  end)
end)

describe("lunet.run", function()
  it("returns at once when there is no work", function()
    lunet.run()
  end)

  it("raises inside a coroutine", function()
    local ok, err
    lunet.spawn(function() ok, err = pcall(lunet.run) end)
    assert.is_false(ok)
    assert.matches("lunet.run must be called from the main thread", err)
  end)

  it("raises when called from a coroutine while the loop is running", function()
    local ok, err
    H.run(function()
      lunet.sleep(1)
      ok, err = pcall(lunet.run)
    end)
    assert.is_false(ok)
    assert.matches("lunet.run must be called from the main thread", err)
  end)

  it("keeps running while a sleep is pending and returns when it is done", function()
    local finished = false
    lunet.spawn(function() lunet.sleep(30); finished = true end)
    assert.is_false(finished)
    lunet.run()
    assert.is_true(finished)
  end)
end)

describe("tracing", function()
  local t = lunet._trace()
  if H.build:match("debug") then
    it("counts every reference taken and released in debug builds", function()
      local before = lunet._trace()
      H.run(function()
        for _ = 1, 10 do lunet.sleep(0) end
      end)
      local after = lunet._trace()
      assert.is_true(after.enabled)
      assert.is_true(after.taken - before.taken >= 10)
      assert.equal(after.taken - before.taken, after.released - before.released)
      assert.is_true(after.checks > before.checks)
    end)

    it("aborts at exit on an unbalanced reference and prints the summary", function()
      local rc, _, err = H.lunet_run([[require("lunet")._trace_leak()]])
      assert.matches("coroutine reference imbalance", err)
      assert.not_equal(0, rc)
    end)

    it("prints a balanced summary at a clean exit", function()
      local rc, _, err = H.lunet_run([[
        local lunet = require("lunet")
        lunet.spawn(function() lunet.sleep(1) end)
      ]])
      assert.equal(0, rc)
      assert.matches("%[lunet trace%] coroutine refs taken=1 released=1 balance=0", err)
    end)

    it("releases waits still pending at exit", function()
      local rc, _, err = H.lunet_run([[
        local lunet = require("lunet")
        lunet.spawn(function() lunet.sleep(60000) end)
        lunet.spawn(function() lunet.sleep(1); os.exit(0, true) end)
      ]])
      assert.equal(0, rc)
      assert.matches("taken=2 released=2 balance=0", err)
    end)
  else
    it("is compiled out of release builds", function()
      assert.is_false(t.enabled)
      assert.equal(0, t.taken)
      assert.is_nil(lunet._trace_leak)
      local f = assert(io.open(H.build .. "/lunet.so", "rb"))
      local so = f:read("*a")
      f:close()
      assert.is_nil(so:find("[lunet trace]", 1, true))
    end)
  end
end)
