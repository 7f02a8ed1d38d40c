-- Loading the built modules from stock LuaJIT, exactly as a user would.
local H = require("spec.helper")

describe("loading from plain luajit", function()
  it("require('lunet') + lunet.run() wakes 10,000 sleepers", function()
    local rc, out, err = H.luajit([[
      local lunet = require("lunet")
      local woke = 0
      for i = 1, 10000 do
        lunet.spawn(function() lunet.sleep(i % 11); woke = woke + 1 end)
      end
      lunet.run()
      print(woke)
    ]])
    assert.equal(0, rc, err)
    assert.equal("10000\n", out)
  end)

  it("the same with lunet-run", function()
    local rc, out = H.lunet_run([[
      local lunet = require("lunet")
      local woke = 0
      for i = 1, 10000 do
        lunet.spawn(function() lunet.sleep(i % 11); woke = woke + 1; if woke == 10000 then print(woke) end end)
      end
    ]])
    assert.equal(0, rc)
    assert.equal("10000\n", out)
  end)

  it("works when first required from inside a coroutine", function()
    local rc, out, err = H.luajit([[
      local co = coroutine.create(function()
        local lunet = require("lunet")
        lunet.spawn(function() lunet.sleep(2); print("woke") end)
        return lunet
      end)
      local ok, lunet = coroutine.resume(co)
      assert(ok, lunet)
      lunet.run()
      print("drained")
    ]])
    assert.equal(0, rc, err)
    assert.equal("woke\ndrained\n", out)
  end)

  it("returns the same module table and runtime on repeated require", function()
    local rc, out, err = H.luajit([[
      local a = require("lunet")
      package.loaded.lunet = nil
      local b = require("lunet")
      -- Two tables, one runtime: a sleep registered through one is run by the other.
      a.spawn(function() a.sleep(1); print("via a") end)
      b.run()
      print(a ~= b)
    ]])
    assert.equal(0, rc, err)
    assert.equal("via a\ntrue\n", out)
  end)

  it("exits when the loop drains, with an idle program", function()
    local rc, out = H.luajit([[require("lunet").run() print("done")]])
    assert.equal(0, rc)
    assert.equal("done\n", out)
  end)
end)
