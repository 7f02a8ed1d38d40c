-- A project of a user's own, tested the way the README ("Testing your code
-- with lunet.test") says: a `.busted` naming luajit and lunet's build, specs
-- that run their lunet code through require("lunet.test").run, and a plain
-- `busted` in the project's folder. Failures inside tasks must fail their
-- test, a time limit must end a test that hangs, and what a test leaves
-- open must not hold up the run.
local H = require("spec.helper")

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("a user's busted project", function()
  it("reports failures and timeouts of lunet.test.run and ends", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. H.shquote(dir .. "/spec")) == 0)
    local build = H.build:sub(1, 1) == "/" and H.build or H.root .. "/" .. H.build
    write(dir .. "/.busted", ([[
return {
  _all = { lua = "luajit" },
  default = { ROOT = { "spec" }, cpath = %q },
}
]]):format(build .. "/?.so"))
    write(dir .. "/spec/app_spec.lua", [[
local lunet = require("lunet")
local socket = require("lunet.socket")
local lt = require("lunet.test")

describe("app", function()
  it("passes, leaving a listener open and a task waiting on it", function()
    lt.run(function()
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      lunet.spawn(function() l:accept() end)
      lunet.sleep(1)
    end, 5000)
  end)

  it("fails in a task", function()
    lt.run(function()
      lunet.sleep(1)
      assert.equal("expected", "got")
    end, 5000)
  end)

  it("hangs", function()
    lt.run(function() lunet.sleep(600000) end, 50)
  end)

  it("gets the results", function()
    local a, b = lt.run(function(x) lunet.sleep(1) return x, "two" end, 5000, "one")
    assert.same({ "one", "two" }, { a, b })
  end)
end)
]])
    local rc, out, err = H.sh(("cd %s && timeout -s KILL 60 busted -o TAP"):format(H.shquote(dir)))
    out = "\n" .. out
    os.execute("rm -rf " .. H.shquote(dir))
    assert.not_equal(137, rc, "busted did not end")
    assert.not_equal(0, rc, out .. err)
    assert.matches("\nok 1 %- app passes, leaving a listener open", out)
    assert.matches("\nnot ok 2 %- app fails in a task\n", out)
    assert.matches("Expected objects to be equal.\n# Passed in:\n# %(string%) 'got'\n# Expected:\n# %(string%) 'expected'", out)
    assert.matches("\nnot ok 3 %- app hangs\n# [^\n]*\n# Failure message: [^\n]*timeout\n", out)
    assert.matches("\nok 4 %- app gets the results", out)
  end)
end)
