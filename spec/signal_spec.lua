-- lunet.signal: one-shot waits for process signals. Signals are sent to a
-- subprocess running the script (never to busted itself), which finds its own
-- pid in /proc/self/stat.
local H = require("spec.helper")
local lunet = H.lunet
local signal = require("lunet.signal")

-- Prepended to every subprocess script: unbuffered output (a process killed by
-- a signal keeps what it printed), its pid, and two ways to signal itself.
local prelude = [[
io.stdout:setvbuf("no")
local lunet = require("lunet")
local signal = require("lunet.signal")
local pid = assert(io.open("/proc/self/stat")):read("*l"):match("^(%d+)")
-- From another process, like an operator would (TERM, HUP, USR1, ...).
local function kill(sig) assert(os.execute("kill -" .. sig .. " " .. pid) == 0) end
-- From this process: system() ignores INT and QUIT in the caller while the
-- shell runs, so those are sent with kill(2) directly.
local ffi = require("ffi")
ffi.cdef "int kill(int pid, int sig); int getpid(void);"
local function raise(num) assert(ffi.C.kill(ffi.C.getpid(), num) == 0) end
]]

local function run_script(src) return H.lunet_run(prelude .. src) end

describe("lunet.signal", function()
  it("require('lunet.signal') works from plain luajit before and without require('lunet')", function()
    local rc, out, err = H.luajit([[
      local signal = require("lunet.signal")
      print(type(signal.wait), package.loaded.lunet == nil)
      local lunet = require("lunet")
      lunet.spawn(function() print(signal.wait("bogus")) end)
      lunet.run()
    ]])
    assert.equal(0, rc, err)
    assert.equal("function\ttrue\nnil\tunsupported signal name\n", out)
  end)

  it("raises from the main chunk and in non-yieldable contexts", function()
    local ok, err = pcall(signal.wait, "HUP")
    assert.is_false(ok)
    assert.equal("signal.wait must be called from coroutine", err)
    H.run(function()
      local ok2, err2 = pcall(table.sort, { 2, 1 }, function(a, b) signal.wait("HUP"); return a < b end)
      assert.is_false(ok2)
      assert.matches("signal.wait called in non%-yieldable context", err2)
    end)
  end)

  it("returns nil, 'unsupported signal name' at once, without yielding", function()
    local r, finished = {}, false
    H.run(function()
      lunet.spawn(function()
        for _, name in ipairs({ "NOPE", "", "hup", "KILL", "STOP", "SIG", "HUP\0" }) do
          r[#r + 1] = { signal.wait(name) }
        end
        finished = true
      end)
      -- spawn returns at the first yield: there was none.
      assert.is_true(finished)
    end)
    for _, v in ipairs(r) do assert.same({ nil, "unsupported signal name" }, v) end
    assert.equal(7, #r)
  end)

  it("raises for a name that is not a string", function()
    H.run(function()
      for _, v in ipairs({ 1, {}, true }) do
        local ok, err = pcall(signal.wait, v)
        assert.is_false(ok)
        assert.matches("signal.wait requires a signal name", err)
      end
      assert.is_false((pcall(signal.wait)))
    end)
  end)

  it("wakes every HUP waiter exactly once and the process survives", function()
    local rc, out, err = run_script([[
      local woke = {}
      for i = 1, 5 do
        lunet.spawn(function()
          local got, e = signal.wait("HUP")
          woke[i] = (woke[i] or 0) + 1
          print("waiter " .. i .. " got " .. tostring(got or e))
        end)
      end
      lunet.spawn(function()
        lunet.sleep(20)
        kill("HUP")
        lunet.sleep(50)
        local n = 0
        for i = 1, 5 do assert(woke[i] == 1, "waiter " .. i .. " woke " .. tostring(woke[i])) n = n + 1 end
        print("woken " .. n)
      end)
      lunet.run()
      print("alive")
    ]])
    assert.equal(0, rc, err)
    for i = 1, 5 do assert.matches("waiter " .. i .. " got HUP\n", out) end
    assert.matches("woken 5\nalive\n$", out)
  end)

  it("wakes only the waiters of the signal delivered: TERM, then INT, then HUP", function()
    local rc, out, err = run_script([[
      local log = {}
      for _, name in ipairs({ "TERM", "INT", "HUP", "SIGTERM" }) do
        for i = 1, 2 do
          lunet.spawn(function()
            local got = signal.wait(name)
            log[#log + 1] = name .. i .. "=" .. tostring(got)
          end)
        end
      end
      lunet.spawn(function()
        lunet.sleep(10)
        kill("TERM")
        lunet.sleep(30)
        print(table.concat(log, " "))
        raise(2) -- SIGINT
        lunet.sleep(30)
        print(table.concat(log, " ", 5))
        kill("HUP")
      end)
      lunet.run()
      print(#log)
      print("alive")
    ]])
    assert.equal(0, rc, err)
    assert.equal("TERM1=TERM TERM2=TERM SIGTERM1=SIGTERM SIGTERM2=SIGTERM\n"
      .. "INT1=INT INT2=INT\n8\nalive\n", out)
  end)

  it("an armed wait keeps the loop alive until the signal comes", function()
    local rc, out, err = run_script([[
      -- Sent from a background process after the main chunk has finished.
      os.execute("(sleep 0.3; kill -USR1 " .. pid .. ") >/dev/null 2>&1 &")
      lunet.spawn(function() print("got " .. signal.wait("USR1")) end)
      print("main chunk done")
    ]])
    assert.equal(0, rc, err)
    assert.equal("main chunk done\ngot USR1\n", out)
  end)

  it("is one-shot: a coroutine waiting again gets the next delivery", function()
    local rc, out, err = run_script([[
      local count = 0
      lunet.spawn(function()
        for _ = 1, 3 do
          assert(signal.wait("USR2") == "USR2")
          count = count + 1
        end
      end)
      lunet.spawn(function()
        for _ = 1, 3 do lunet.sleep(20); kill("USR2") end
        lunet.sleep(20)
        print("count " .. count)
      end)
    ]])
    assert.equal(0, rc, err)
    assert.equal("count 3\n", out)
  end)

  it("survives signals arriving in a burst while a wait is armed", function()
    local rc, out, err = run_script([[
      local woke = 0
      for _ = 1, 3 do lunet.spawn(function() signal.wait("INT"); woke = woke + 1 end) end
      lunet.spawn(function()
        lunet.sleep(10)
        for _ = 1, 5 do raise(2) end
        lunet.sleep(30)
        print("woke " .. woke)
      end)
    ]])
    assert.equal(0, rc, err)
    assert.equal("woke 3\n", out)
  end)

  it("gives the default action back when no wait is armed", function()
    -- Run by a shell that waits for it (`; exit $?`), so the shell's
    -- "Terminated" notice goes to the captured stderr, not busted's.
    local script = H.script(prelude .. [[
      lunet.spawn(function() signal.wait("TERM"); print("first TERM caught") end)
      lunet.spawn(function() lunet.sleep(10); kill("TERM") end)
      lunet.run()
      print("nobody waits now")
      kill("TERM")
      print("still here") -- must not be reached
    ]])
    local rc, out = H.sh(("%s/lunet-run %s; exit $?"):format(H.build, H.shquote(script)))
    os.remove(script)
    assert.equal(143, rc) -- 128 + SIGTERM: the shell reports death by signal
    assert.equal("first TERM caught\nnobody waits now\n", out)
  end)

  it("releases waiters still armed when the state closes", function()
    local rc, out, err = run_script([[
      for _, name in ipairs({ "HUP", "TERM", "QUIT", "HUP" }) do
        lunet.spawn(function() signal.wait(name) end)
      end
      lunet.spawn(function() lunet.sleep(5); print("exiting"); os.exit(0, true) end)
    ]])
    assert.equal(0, rc, err)
    assert.equal("exiting\n", out)
    if H.build:match("debug") then assert.matches("taken=5 released=5 balance=0", err) end
  end)
end)
