-- The driver ABI: a separately built module (no libuv of its own) queues work
-- on the core's thread pool and resumes coroutines through the core.
local H = require("spec.helper")
local lunet = H.lunet

describe("driver ABI", function()
  local testmod = require("lunet_testmod")

  it("runs work off the loop thread and resumes the caller with its results", function()
    local sum, off_loop
    H.run(function() sum, off_loop = testmod.sum(100, 0) end)
    assert.equal(5050, sum)
    assert.is_true(off_loop)
  end)

  it("does not block the loop while work runs", function()
    local ticks, result = 0, nil
    H.run(function()
      local done = false
      lunet.spawn(function()
        while not done do ticks = ticks + 1; lunet.sleep(1) end
      end)
      result = testmod.sum(10, 200)
      done = true
    end)
    assert.equal(55, result)
    -- 200 ms of pool work; the ticker must have run many times meanwhile.
    assert.is_true(ticks >= 20, "only " .. ticks .. " ticks while the pool worked")
  end)

  it("serves many concurrent waiters", function()
    local total = 0
    H.run(function()
      for i = 1, 200 do
        lunet.spawn(function() local s = testmod.sum(i, 0); total = total + s end)
      end
    end)
    local expect = 0
    for i = 1, 200 do expect = expect + i * (i + 1) / 2 end
    assert.equal(expect, total)
  end)

  it("keeps the loop alive for work with no coroutine to resume", function()
    local before = testmod.fired()
    assert.is_true(testmod.fire(5, 20))
    lunet.run()
    assert.equal(before + 1, testmod.fired())
  end)

  it("guards its yielding functions like the core's", function()
    local ok, err = pcall(testmod.sum, 1, 0)
    assert.is_false(ok)
    assert.equal("testmod.sum must be called from coroutine", err)
  end)

  it("loads the core by itself when required first", function()
    local rc, out, err = H.luajit([[
      local t = require("lunet_testmod")
      local lunet = package.loaded.lunet
      assert(lunet, "core not loaded")
      lunet.spawn(function() print((t.sum(4, 0))) end)
      lunet.run()
    ]])
    assert.equal(0, rc, err)
    assert.equal("10\n", out)
  end)

  it("refuses to load when the core table has another ABI version", function()
    local rc, _, err = H.luajit([[
      require("lunet")
      local ffi = require("ffi")
      -- Find the table through the registry and bump its version.
      local reg = debug.getregistry()
      local p = ffi.cast("uint32_t *", reg["lunet.abi"])
      p[0] = p[0] + 100
      local ok, e = pcall(require, "lunet_testmod")
      io.stderr:write(tostring(e), "\n")
      os.exit(ok and 0 or 3)
    ]])
    assert.equal(3, rc)
    assert.matches("ABI version 101 does not match the version 1", err)
  end)
end)

describe("thread pool size", function()
  local barrier_src = [[
      local lunet = require("lunet")
      local t = require("lunet_testmod")
      local met = 0
      for _ = 1, %d do
        lunet.spawn(function() local r = t.barrier(%d, 3000); met = met + r end)
      end
      lunet.run()
      print(os.getenv("UV_THREADPOOL_SIZE"), met)
  ]]

  it("defaults to 16 threads: 16 blocking jobs run at the same time", function()
    local rc, out, err = H.luajit(barrier_src:format(16, 16))
    assert.equal(0, rc, err)
    assert.equal("16\t16\n", out)
  end)

  it("respects a size the program set: 2 threads never run 3 jobs at once", function()
    local path = H.script(("package.cpath = %q .. package.cpath\n"):format(H.build .. "/?.so;" .. H.build .. "/test/?.so;")
      .. barrier_src:format(3, 3))
    local rc, out, err = H.sh("UV_THREADPOOL_SIZE=2 luajit " .. H.shquote(path))
    os.remove(path)
    assert.equal(0, rc, err)
    assert.equal("2\t0\n", out)
  end)
end)
