-- lunet.process, worker mode, lunet.worker / on_drain, lunet.stats /
-- on_stats, and lunet-run --workers' bad input. The real multi-worker server
-- under curl and wrk is scripts/test-workers.sh.
local h = require("spec.helper")
local lunet = h.lunet
local process = require("lunet.process")
local socket = require("lunet.socket")

local function run(body) h.run(body, 15000) end

describe("lunet.process", function()
  it("spawns a child and reports its exit status", function()
    run(function()
      local pid = assert(process.spawn("sh", { "-c", "exit 3" }))
      assert.is_number(pid)
      local st, sig = process.wait(pid)
      assert.equal(3, st)
      assert.equal(0, sig)
      -- Collected: a second wait knows no such child.
      assert.same({ nil, "no such child process" }, { process.wait(pid) })
    end)
  end)

  it("passes the environment and arguments", function()
    local out = os.tmpname()
    run(function()
      local pid = assert(process.spawn("sh", { "-c", 'printf "%s %s" "$LUNET_SPEC_X" "$1" > "$0"', out, "arg1" },
        { env = { LUNET_SPEC_X = "value" } }))
      assert.same({ 0, 0 }, { process.wait(pid) })
    end)
    local f = assert(io.open(out))
    assert.equal("value arg1", f:read("*a"))
    f:close()
    os.remove(out)
  end)

  it("kills a child and reports the signal; a wait can time out", function()
    run(function()
      local pid = assert(process.spawn("sleep", { "30" }))
      assert.same({ nil, "timeout" }, { process.wait(pid, 20) })
      assert.is_true(process.kill(pid, "TERM"))
      local st, sig = process.wait(pid)
      assert.equal(15, sig)
      assert.is_number(st)
      assert.same({ nil, "no such child process" }, { process.kill(pid, "KILL") })
    end)
  end)

  it("waits for readiness on the child's fd 3", function()
    run(function()
      local ready = assert(process.spawn("sh", { "-c", 'printf 1 >&3; sleep 0.2; [ "$LUNET_READY_FD" = 3 ]' }, { ready = true }))
      assert.is_true(process.ready(ready))
      assert.is_true(process.ready(ready)) -- remembered
      assert.same({ 0, 0 }, { process.wait(ready) })

      local never = assert(process.spawn("sh", { "-c", "exit 0" }, { ready = true }))
      assert.same({ nil, "exited before ready" }, { process.ready(never) })
      process.wait(never)

      local plain = assert(process.spawn("sh", { "-c", "exit 0" }))
      assert.same({ nil, "spawned without the ready option" }, { process.ready(plain) })
      process.wait(plain)
    end)
  end)

  it("answers readiness and exit waits together when the child exits at once", function()
    run(function()
      for _, case in ipairs({ { "printf 1 >&3", true }, { "exit 0", nil, "exited before ready" } }) do
        for _ = 1, 5 do
          local pid = assert(process.spawn("sh", { "-c", case[1] }, { ready = true }))
          local exit = lunet.spawn(function() return process.wait(pid, 5000) end)
          local again = lunet.spawn(function() return process.wait(pid, 5000) end)
          assert.same({ case[2], case[3] }, { process.ready(pid, 5000) })
          assert.same({ true, 0, 0 }, { exit:join() })
          assert.same({ true, 0, 0 }, { again:join() })
        end
      end
    end)
  end)

  it("returns nil, err for a program that cannot run", function()
    run(function()
      local pid, err = process.spawn("/nonexistent/lunet-spec-program", {})
      assert.is_nil(pid)
      assert.is_string(err)
    end)
  end)

  it("raises for programmer errors", function()
    assert.has_error(function() process.spawn(nil, {}) end, "process.spawn: file must be a string (got nil)")
    assert.has_error(function() process.spawn("sh", "x") end)
    assert.has_error(function() process.spawn("sh", { 1 }) end)
    assert.has_error(function() process.spawn("sh", { "a\0b" }) end)
    assert.has_error(function() process.spawn("sh", {}, { env = { ["A=B"] = "x" } }) end)
    assert.has_error(function() process.spawn("sh", {}, { env = { A = 1 } }) end)
    assert.has_error(function() process.spawn("sh", {}, { ready = "yes" }) end)
    assert.has_error(function() process.spawn("sh", {}, 5) end)
    assert.has_error(function() process.kill(1, "NOPE") end)
    assert.has_error(function() process.kill("x", "TERM") end)
    assert.has_error(function() process.wait(-1) end)
    assert.same({ nil, "no such child process" }, { process.kill(1, "TERM") })
    assert.is_true(process.cpus() >= 1)
    assert.equal(h.pid(), process.pid())
  end)
end)

describe("lunet.worker outside worker mode", function()
  it("is worker 1 of 1, never draining; on_drain hooks are kept, not run", function()
    assert.same({ id = 1, count = 1, generation = 1, draining = false, supervised = false }, lunet.worker())
    local ran = false
    lunet.on_drain(function() ran = true end)
    run(function() lunet.sleep(5) end)
    assert.is_false(ran)
    assert.has_error(function() lunet.on_drain("x") end, "lunet.on_drain expects a function (got string)")
  end)
end)

describe("lunet.stats", function()
  it("counts loop iterations, tasks, handles and bytes of this process", function()
    run(function()
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      local s0 = lunet.stats()
      assert.equal(process.pid(), s0.pid)
      for _, k in ipairs({ "loop_iterations", "loop_events", "waits", "bytes_in", "bytes_out", "pool_pending" }) do
        assert.is_number(s0[k], k)
      end
      assert.is_false(s0.draining)
      assert.is_true(s0.handles.listeners >= 1)
      assert.equal(1, s0.tasks.running) -- this one
      local server = lunet.spawn(function()
        local c = socket.accept(l)
        local got = socket.read(c, 5)
        socket.write(c, got .. "!")
        socket.close(c)
      end)
      local c = assert(socket.connect("127.0.0.1", port))
      local mid = lunet.stats()
      assert.is_true(mid.tasks.waiting >= 1)
      assert.is_true(mid.handles.connections >= 1)
      assert.is_nil(socket.write(c, "hello"))
      assert.equal("hello!", socket.read(c, 6))
      server:join()
      socket.close(c)
      socket.close(l)
      local s1 = lunet.stats()
      -- Both ends are in this process: 5 bytes one way, 6 the other.
      assert.equal(11, s1.bytes_in - s0.bytes_in)
      assert.equal(11, s1.bytes_out - s0.bytes_out)
      assert.is_true(s1.loop_iterations > s0.loop_iterations)
    end)
  end)

  it("adds the tables of on_stats providers", function()
    lunet.on_stats("spec_pool", function() return { idle = 2 } end)
    lunet.on_stats("spec_bad", function() error("broken provider", 0) end)
    local s = lunet.stats()
    assert.same({ idle = 2 }, s.spec_pool)
    assert.same({ error = "broken provider" }, s.spec_bad)
    lunet.on_stats("spec_pool", nil)
    lunet.on_stats("spec_bad", nil)
    assert.is_nil(lunet.stats().spec_pool)
    assert.has_error(function() lunet.on_stats("pid", function() end) end, "lunet.on_stats: 'pid' is a field of lunet.stats()")
    assert.has_error(function() lunet.on_stats("", function() end) end)
    assert.has_error(function() lunet.on_stats("x", 1) end)
  end)
end)

-- A worker started by hand: the environment the supervisor would set.
local function as_worker(source, drain_ms, limit_s)
  local path = h.script(source)
  local rc, out, err = h.sh(("LUNET_WORKER_ID=2 LUNET_WORKER_COUNT=3 LUNET_WORKER_GENERATION=4 LUNET_DRAIN_TIMEOUT=%d timeout -s KILL %d %s/lunet-run %s")
    :format(drain_ms, limit_s or 10, h.build, h.shquote(path)))
  os.remove(path)
  return rc, out, err
end

describe("worker mode", function()
  it("knows its place, closes its listeners on SIGTERM, runs the drain hooks and ends", function()
    local rc, out, err = as_worker([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local w = lunet.worker()
      print(w.id, w.count, w.generation, w.supervised, w.draining)
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      -- Another listener on the same port: SO_REUSEPORT is on in worker mode.
      local _, port = socket.getsockname(l)
      local l2 = assert(socket.listen("tcp", "127.0.0.1", port))
      print("same port", port == select(2, socket.getsockname(l2)))
      assert(lunet.stats().handles.listeners == 2)
      lunet.on_drain(function()
        print("hook", lunet.worker().draining, lunet.stats().draining)
      end)
      lunet.spawn(function()
        print("accept", socket.accept(l))
        print("listeners", lunet.stats().handles.listeners)
      end)
      lunet.spawn(function()
        lunet.sleep(20)
        os.execute("kill -TERM " .. lunet.getpid())
      end)
    ]], 5000)
    assert.equal(0, rc, err)
    assert.equal(table.concat({
      "2\t3\t4\ttrue\tfalse",
      "same port\ttrue",
      "accept\tnil\tlistener closed",
      "listeners\t0",
      "hook\ttrue\ttrue",
      "",
    }, "\n"), out)
  end)

  it("stops at the drain timeout when a connection stays open", function()
    local rc, out, err = as_worker([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      lunet.spawn(function()
        local c = socket.accept(l)
        print("read", pcall(socket.read, c)) -- the peer never writes
      end)
      lunet.spawn(function()
        local c = socket.connect("127.0.0.1", port)
        lunet.sleep(20)
        os.execute("kill -TERM " .. lunet.getpid())
        print("peer", pcall(socket.read, c))
      end)
    ]], 300)
    assert.equal(0, rc, err)
    assert.matches("drain timeout %(300 ms%), stopping", err)
    assert.matches("read\tfalse\tcancelled", out)
  end)

  it("ends at once on a second signal", function()
    local rc, _, err = as_worker([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      lunet.spawn(function() socket.read(socket.accept(l)) end)
      lunet.spawn(function()
        local c = socket.connect("127.0.0.1", port)
        os.execute("kill -TERM " .. lunet.getpid())
        lunet.sleep(10)
        -- (os.execute ignores SIGINT while its shell runs: send it later)
        os.execute("(sleep 0.05; kill -INT " .. lunet.getpid() .. ") &")
        lunet.sleep(5000)
      end)
    ]], 60000, 20)
    assert.equal(128 + 2, rc, err)
  end)

  it("tells the supervisor it is ready when its loop starts", function()
    local ok_path = h.script([[
      local lunet = require("lunet")
      lunet.spawn(function() lunet.sleep(300) end)
      lunet.run() -- a script that runs the loop itself is ready here too
    ]])
    local bad_path = h.script("error('no good')")
    local env = { LUNET_WORKER_ID = "1", LUNET_WORKER_COUNT = "1" }
    run(function()
      local pid = assert(process.spawn(h.build .. "/lunet-run", { ok_path }, { ready = true, env = env }))
      assert.is_true(process.ready(pid, 5000))
      assert.same({ nil, "timeout" }, { process.wait(pid, 0) }) -- still running
      assert.same({ 0, 0 }, { process.wait(pid, 5000) })
      pid = assert(process.spawn(h.build .. "/lunet-run", { bad_path }, { ready = true, env = env }))
      assert.same({ nil, "exited before ready" }, { process.ready(pid, 5000) })
      assert.same({ 1, 0 }, { process.wait(pid, 5000) })
    end)
    os.remove(ok_path)
    os.remove(bad_path)
  end)

  it("ignores SIGHUP", function()
    local rc, out, err = as_worker([[
      local lunet = require("lunet")
      lunet.spawn(function()
        os.execute("kill -HUP " .. lunet.getpid())
        lunet.sleep(50)
        print("alive")
      end)
    ]], 1000)
    assert.equal(0, rc, err)
    assert.equal("alive\n", out)
  end)
end)

describe("lunet-run --workers", function()
  local function workers(args, source)
    local path = h.script(source or "")
    local rc, out, err = h.sh(("timeout -s KILL 30 %s/lunet-run %s %s"):format(h.build, args, h.shquote(path)))
    os.remove(path)
    return rc, out, err
  end

  it("refuses bad worker counts and drain timeouts", function()
    for _, case in ipairs({
      { "--workers 0", "--workers must be at least 1 (got 0)" },
      { "--workers -2", "--workers must be at least 1 (got -2)" },
      { "--workers abc", "--workers expects a number of processes or 'auto' (got 'abc')" },
      { "--workers 1.5", "--workers expects a number of processes or 'auto' (got '1.5')" },
      { "--workers=", "--workers expects a number of processes or 'auto' (got '')" },
      { "--workers 100000", "--workers must be at most 1024 (got 100000)" },
      { "--workers 2 --drain-timeout -1", "--drain-timeout expects seconds from 0 to 86400 (got '-1')" },
      { "--workers 2 --drain-timeout soon", "--drain-timeout expects seconds from 0 to 86400 (got 'soon')" },
      { "--drain-timeout 5", "--drain-timeout applies to --workers only" },
    }) do
      local rc, out, err = workers(case[1], "print('ran')")
      assert.equal(1, rc, case[1])
      assert.equal("", out, case[1])
      assert.equal("Error: " .. case[2] .. "\n", err, case[1])
    end
    local rc, _, err = h.sh(h.build .. "/lunet-run --workers")
    assert.equal(1, rc)
    assert.matches("Option %-%-workers needs a value", err)
    rc, _, err = h.sh(h.build .. "/lunet-run --workers 2 /nonexistent/script.lua")
    assert.equal(1, rc)
    assert.equal("Error: cannot open /nonexistent/script.lua\n", err)
  end)

  it("starts N workers that know their place; exits 0 once all have finished", function()
    local rc, out, err = workers("--workers=2", [[
      local w = require("lunet").worker()
      print(("worker %d of %d, generation %d, supervised %s"):format(w.id, w.count, w.generation, tostring(w.supervised)))
    ]])
    assert.equal(0, rc, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "worker 1 of 2, generation 1, supervised true", "worker 2 of 2, generation 1, supervised true" }, lines)
    assert.matches("worker 1 %(pid %d+%) finished", err)
    assert.matches("worker 2 %(pid %d+%) finished", err)
  end)

  it("starts workers the way it was started (interpreter options kept)", function()
    -- The launcher from the source tree, with lunet.so found only through
    -- the -e option (as a luarocks wrapper does it).
    local path = h.script("print('worker ' .. require('lunet').worker().id)")
    local rc, out, err = h.sh(("timeout -s KILL 30 luajit -e %s crates/lunet/lunet-run --workers 2 %s"):format(
      h.shquote(("package.cpath = %q .. package.cpath"):format(h.build .. "/?.so;")), h.shquote(path)))
    os.remove(path)
    assert.equal(0, rc, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "worker 1", "worker 2" }, lines)
  end)

  it("warns about more workers than CPUs, and 'auto' means one per CPU", function()
    local n = process.cpus()
    local rc, out, err = workers("--workers " .. (n + 1), "print('w')")
    assert.equal(0, rc, err)
    assert.matches(("warning: %%-%%-workers %d is more than the %d CPUs"):format(n + 1, n), err)
    assert.equal(n + 1, select(2, out:gsub("w\n", "")))
    rc, out, err = workers("--workers auto", "print('w')")
    assert.equal(0, rc, err)
    assert.equal(n, select(2, out:gsub("w\n", "")))
  end)

  it("gives up on a script whose main chunk keeps failing", function()
    local rc, _, err = workers("--workers 2", "error('boom')")
    assert.equal(1, rc, err)
    assert.matches("Error: [^\n]*boom", err)
    assert.matches("restarting in 100 ms", err)
    assert.matches("restarting in 200 ms", err)
    assert.matches("5 failures in a row within 1000 ms of starting: giving up", err)
  end)

  it("lets one worker at a time own a Unix socket path", function()
    local sock = os.tmpname() .. ".sock"
    local rc, out, err = workers("--workers 2", ([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local l, e = socket.listen("unix", %q)
      print(l and "bound" or e)
      io.stdout:flush()
      lunet.spawn(function() lunet.sleep(500) if l then socket.close(l) end end)
    ]]):format(sock))
    assert.equal(0, rc, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "bound", "failed to bind: address already in use" }, lines)
    os.remove(sock)
  end)
end)
