-- Regression specs for the core defects of issue 19 (ways to crash the
-- process, the loopback switch in Lua's reach, exit waiting on pool work),
-- each named after its defect. Every reproduction runs in a child process
-- (under `timeout`), so a crash fails the spec instead of killing busted: a
-- child killed by a signal exits with 128 + the signal's number.
local H = require("spec.helper")

local LIMIT_S = 60 -- per child: a safety net against hangs, not a timing assertion
local LOOPBACK_ONLY = "binding to non-loopback addresses requires --dangerously-skip-loopback-restriction flag"
local SKIP_ENV = "LUNET_DANGEROUSLY_SKIP_LOOPBACK_RESTRICTION"
local CPATH = ("package.cpath = %q .. package.cpath\n"):format(H.build .. "/?.so;" .. H.build .. "/test/?.so;")

--- Runs Lua `source` in a child process; returns exit code, stdout, stderr.
-- opts: `luajit` (plain luajit with the build on package.cpath, else
-- build/<profile>/lunet-run), `flags` (for lunet-run), `env` (shell
-- assignments or `env -u ...` put before the command), `limit` (s).
-- With LUNET_SPEC_KEEP set, the script is kept and its path printed to stderr
-- (a reproduction to run by hand).
local function child(source, opts)
  opts = opts or {}
  local path = H.script(opts.luajit and CPATH .. source or source)
  local runner = opts.luajit and "luajit" or (H.build .. "/lunet-run " .. (opts.flags or ""))
  local cmd = ("ulimit -c 0; %s timeout %d %s %s"):format(opts.env or "", opts.limit or LIMIT_S, runner,
    H.shquote(path))
  local rc, out, err = H.sh(cmd)
  if os.getenv("LUNET_SPEC_KEEP") then
    io.stderr:write("kept: ", cmd, "\n")
  else
    os.remove(path)
  end
  return rc, out, err
end

--- Asserts that a child exited by itself with status `want` (not by a
-- signal, not stopped by `timeout`), showing its output otherwise.
local function expect_exit(want, rc, out, err)
  local seen = ("\n--- stdout:\n%s\n--- stderr:\n%s"):format(out, err)
  assert(rc ~= 124, "the child hung: stopped by timeout" .. seen)
  assert(rc < 128, ("the child was killed by signal %d (exit status %d)%s"):format(rc - 128, rc, seen))
  assert(rc == want, ("the child exited with %d, expected %d%s"):format(rc, want, seen))
end

--- A child's stderr without the summary line that debug (tracing) builds
-- print at exit when every coroutine reference was balanced.
local function without_trace(err)
  return (err:gsub("%[lunet trace%] coroutine refs taken=%d+ released=%d+ balance=0 resumes=%d+ stack checks=%d+\n", ""))
end

local function count(haystack, needle)
  local n, at = 0, 1
  while true do
    local s, e = haystack:find(needle, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

--- The `key=value` pairs of the child's output line `<tag>: ...` (numbers converted).
local function report(out, tag)
  local line = out:match(tag:gsub("%p", "%%%0") .. ":([^\n]*)")
  assert(line, "no '" .. tag .. "' line in the child's output:\n" .. out)
  local r = {}
  for k, v in line:gmatch("(%w+)=(%S+)") do r[k] = tonumber(v) or v end
  return r
end

-- Lua source shared by the finaliser reproductions: `bombs(k)` leaves k
-- unreachable proxies whose finaliser raises BOOM (MODE "raises") or raises
-- and catches it itself (MODE "catches"); `prime(k)` makes k of them due at
-- the very next allocation (deterministically: that allocation is the one
-- under test); `settle()` runs every pending finaliser. The JIT compiler is
-- off: LuaJIT 2.1 itself crashes (SIGSEGV, no lunet involved) when a
-- finaliser error is raised in a compiled trace running in a coroutine.
local FINALISERS = [[
jit.off()
local lunet = require("lunet")
local MODE, N = %q, %d
local BOOM = "finaliser boom"
local WHERE = { name = false } -- set around a call: the finaliser's error then names it
local function raise() error(WHERE.name and BOOM .. " in " .. WHERE.name or BOOM) end
local gc_fn = MODE == "raises" and raise or function() pcall(raise) end
local function bombs(k)
  for _ = 1, k do getmetatable(newproxy(true)).__gc = gc_fn end
end
local function settle()
  for _ = 1, 1000000 do if pcall(collectgarbage) then break end end
  assert(pcall(collectgarbage), "finalisers still raising")
end
local function is_boom(e) return type(e) == "string" and e:find(BOOM, 1, true) ~= nil end
-- Leaves the collector in its finalisation phase with `k` raising finalisers
-- pending and due at the next allocation: a full collection runs until a
-- sentinel raises (it was made last, so LuaJIT finalises it before the bombs).
local function sentinel() error("sentinel") end
local ARMED = { on = false } -- prime is a no-op while this is off
local function prime(k)
  if not ARMED.on then return end
  bombs(k)
  getmetatable(newproxy(true)).__gc = sentinel
  for _ = 1, 1000 do
    local ok, e = pcall(collectgarbage)
    if not ok and e:find("sentinel", 1, true) then break end
  end
  collectgarbage("restart")
end
]]

describe("issue 19 regressions", function()
  describe("SIGABRT: a task that dies with an error object whose __tostring", function()
    local PLACEHOLDER = "[lunet] coroutine error: (error object is a table value)"
    local how = { raises = "error('tostring raised')", yields = "coroutine.yield()" }
    local where = {
      ["before its first wait"] = "lunet.spawn(function() error(bad) end)",
      ["after a wait"] = "lunet.spawn(function() lunet.sleep(1); error(bad) end)",
      ["in a coroutine that is not a task, after a wait"] =
        "coroutine.wrap(function() lunet.sleep(1); error(bad) end)()",
    }
    for verb, body in pairs(how) do
      for place, dies in pairs(where) do
        it(verb .. ", " .. place .. ": reported with a placeholder, the loop goes on", function()
          local rc, out, err = child(([[
            local lunet = require("lunet")
            local bad = setmetatable({}, { __tostring = function() %s end })
            %s
            lunet.spawn(function() lunet.sleep(20); print("the loop went on"); __lunet_exit_code = 7 end)
          ]]):format(body, dies))
          expect_exit(7, rc, out, err)
          assert.equal("the loop went on\n", out)
          assert.equal(1, count(err, PLACEHOLDER), err)
        end)
      end
    end
  end)

  describe("SIGABRT: a task that dies while raising finalisers are pending (its error report allocates)", function()
    -- The task's error is reported (or, before its first wait, may come out
    -- of lunet.spawn as that finaliser's error); the loop goes on.
    for place, wait in pairs({ ["before its first wait"] = "", ["after a wait"] = "lunet.sleep(1)" }) do
      it(place, function()
        local rc, out, err = child(FINALISERS:format("raises", 0) .. ([[
          ARMED.on = true
          local ok, e = pcall(lunet.spawn, function()
            %s
            prime(5)
            error("task error")
          end)
          settle()
          print("spawn: " .. (ok and "ok" or tostring(e)))
          lunet.spawn(function() lunet.sleep(20); settle(); print("the loop went on"); __lunet_exit_code = 7 end)
        ]]):format(wait))
        expect_exit(7, rc, out, err)
        local spawned = out:match("^spawn: ([^\n]*)\nthe loop went on\n$")
        assert(spawned == "ok" or (spawned and spawned:find("finaliser boom", 1, true)), out)
        if spawned == "ok" then
          assert.equal(1, count(err, "[lunet] coroutine error: "), err)
        end
      end)
    end
  end)

  describe("SIGSEGV: a finaliser that raises while lunet pushes results onto a parked coroutine", function()
    -- Each kind sets `K = { wait = fn -> verdict, finish = fn }` (in a task,
    -- before any garbage is made). `wait` prepares what will complete its
    -- wait (data sent, a connection made: nothing that lunet sees before the
    -- loop polls), then calls `prime(1)` and parks at once, so the pending
    -- finaliser runs in the first allocation after that: lunet's push of the
    -- results. `judge(normal, nils, ...)` classifies a wait's results as
    -- "normal", "finaliser" (`nils` nils, then the finaliser's error) or "bad".
    local KINDS = {
      ["fs.stat's table"] = [[
        local fs = require("lunet.fs")
        local function stat(t) return type(t) == "table" and t.type == "file" end
        K = { wait = function() prime(1); return judge(stat, 1, fs.stat(PATH)) end, finish = function() end }
      ]],
      ["a socket read string"] = [[
        local socket = require("lunet.socket")
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local c = assert(socket.connect("127.0.0.1", (select(2, l:getsockname()))))
        local s = assert(l:accept())
        l:close()
        local function data(d) return type(d) == "string" and d:find("^x+$") ~= nil end
        K = { wait = function() s:write("x"); prime(1); return judge(data, 1, c:read()) end,
              finish = function() c:close(); s:close() end }
      ]],
      ["socket accept's userdata"] = [[
        -- The connection is made with plain system calls: lunet sees it only
        -- when the loop polls, after accept has parked.
        local ffi = require("ffi")
        ffi.cdef("int socket(int, int, int); int connect(int, const void *, unsigned); int close(int);")
        local socket = require("lunet.socket")
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local port = select(2, l:getsockname())
        local sin = ffi.new("uint8_t[16]", 2, 0, bit.rshift(port, 8), bit.band(port, 255), 127, 0, 0, 1)
        K = { wait = function()
                local fd = ffi.C.socket(2, 1, 0) -- AF_INET, SOCK_STREAM
                assert(fd >= 0 and ffi.C.connect(fd, sin, 16) == 0, "connect failed")
                prime(1)
                local ok, s, e = pcall(l.accept, l)
                ffi.C.close(fd) -- (also when accept raised)
                if not ok then
                  -- The connection stayed queued: take it, or the queue grows
                  -- with every iteration whose accept raised.
                  local left = l:accept()
                  if left then left:close() end
                  error(s, 0)
                end
                local v = judge(is_handle, 1, s, e)
                if s then s:close() end
                return v
              end,
              finish = function() l:close() end }
      ]],
      ["socket connect's userdata"] = [[
        local socket = require("lunet.socket")
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local port = select(2, l:getsockname())
        K = { wait = function()
                prime(1)
                local c, e = socket.connect("127.0.0.1", port)
                local v = judge(is_handle, 1, c, e)
                if c then c:close() end
                local s = l:accept() -- the server's side, queued meanwhile
                if s then s:close() end
                return v
              end,
              finish = function() l:close() end }
      ]],
      ["udp.recv"] = [[
        local udp = require("lunet.udp")
        local r = assert(udp.bind("127.0.0.1", 0))
        local rport = select(2, r:getsockname())
        local snd = assert(udp.bind("127.0.0.1", 0))
        local function datagram(d, h, p) return d == "d" and h == "127.0.0.1" and type(p) == "number" end
        K = { wait = function() assert(snd:send("127.0.0.1", rport, "d")); prime(1); return judge(datagram, 2, r:recv()) end,
              finish = function() snd:close(); r:close() end }
      ]],
      ["a sqlite3 query result"] = [[
        local db = require("lunet.sqlite3")
        local conn = assert(db.open())
        local function rows(t) return type(t) == "table" and t[1] ~= nil and t[1].b == "x" end
        K = { wait = function() prime(1); return judge(rows, 1, conn:query("SELECT 1 AS a, 'x' AS b")) end,
              finish = function() conn:close() end }
      ]],
    }
    local DRIVER = [[
      local PATH = arg[0]
      local K
      local function is_handle(h) return type(h) == "userdata" end
      local function judge(normal, nils, ...)
        if normal(...) then return "normal" end
        for i = 1, nils do if select(i, ...) ~= nil then return "bad" end end
        if is_boom((select(nils + 1, ...))) then return "finaliser" end
        io.stderr:write("unexpected results: ", tostring((select(nils + 1, ...))), "\n")
        return "bad"
      end
      -- Open file descriptors of this process.
      local function fds()
        local p = assert(io.popen("ls /proc/" .. lunet.getpid() .. "/fd"))
        local n = #p:read("*a"):gsub("[^\n]", "")
        p:close()
        return n
      end
      lunet.spawn(function()
        %s
        assert(K.wait() == "normal") -- warm-up: whatever lunet opens once is open now
        lunet.sleep(5) -- closes finish on the loop
        local fds_before = fds()
        ARMED.on = true
        local tally = { normal = 0, finaliser = 0, own = 0, bad = 0 }
        for _ = 1, N do
          local ok, v = pcall(K.wait)
          if ok then
            tally[v] = tally[v] + 1
          elseif is_boom(v) then
            tally.own = tally.own + 1 -- raised in the task's own code (or an entry point)
          else
            tally.bad = tally.bad + 1
            io.stderr:write("unexpected error: ", tostring(v), "\n")
          end
        end
        ARMED.on = false
        settle()
        local status = lunet.current():status()
        lunet.sleep(1)
        local again = K.wait()
        -- Closes finish on the loop (and on a loaded machine a few
        -- iterations later): give them up to a second.
        local leaked = fds() - fds_before
        for _ = 1, 100 do
          if leaked <= 0 then break end
          lunet.sleep(10)
          leaked = fds() - fds_before
        end
        K.finish()
        print(("tally: normal=%%d finaliser=%%d own=%%d bad=%%d status=%%s again=%%s leaked=%%d"):format(
          tally.normal, tally.finaliser, tally.own, tally.bad, status, again, leaked))
      end)
    ]]
    local N = 2000
    for kind, setup in pairs(KINDS) do
      for _, mode in ipairs({ "raises", "catches" }) do
        it(("%s, with a finaliser that %s: results or the finaliser's error, never a crash"):format(kind,
          mode == "raises" and "raises uncaught" or "raises and catches its own error"), function()
          local rc, out, err = child(FINALISERS:format(mode, N) .. DRIVER:format(setup))
          expect_exit(0, rc, out, err)
          local t = report(out, "tally")
          assert.same({ bad = 0, status = "running", again = "normal" },
            { bad = t.bad, status = t.status, again = t.again }, out .. err)
          -- No descriptor left open (fewer is fine: one opened before the
          -- count, by the warm-up, may finish closing during the run).
          assert.is_true(t.leaked <= 0, out .. err)
          assert.equal(N, t.normal + t.finaliser + t.own, out)
          if mode == "catches" then
            assert.same({ normal = N, finaliser = 0, own = 0 }, { normal = t.normal, finaliser = t.finaliser, own = t.own })
          else
            -- Where the pending finaliser runs depends on which allocation
            -- comes first: lunet's push of the results, or one inside the
            -- call before it waits (its error then comes back from the call).
            -- Either way it ran inside lunet, and nothing crashed.
            assert.is_true(t.finaliser + t.own > 0, "the finaliser never ran inside lunet: " .. out)
          end
          assert.equal("", without_trace(err))
          if os.getenv("LUNET_SPEC_KEEP") then io.stderr:write(out) end
        end)
      end
    end
  end)

  describe("A Lua error raised inside an entry point unwinds as a Lua error", function()
    -- Calls entry points under pcall, each time with a raising finaliser due
    -- at the next allocation (in the entry point). A finaliser error tells
    -- where it was raised: `WHERE.name` is set only around the call. Prints
    -- `<label>: normal= inside= own= bad=` per series of calls.
    local N = 500
    local ENTRY = FINALISERS:format("raises", 0) .. [[
      local socket = require("lunet.socket")
      local fs = require("lunet.fs")
      local N = %d
      ARMED.on = true
      local tallies = {}
      local function noop() end
      local function sleeper() lunet.sleep(0) end
      lunet.on_error(function() end) -- spawned tasks that die of a finaliser error are fine
      local valid = {
        ["lunet.spawn"] = function(t) return type(t) == "userdata" end,
        ["socket.listen"] = function(l) return type(l) == "userdata" end,
        ["fs.open"] = function(fd) return fd ~= nil end,
        ["fs.open with a bad mode"] = function(fd, err) return fd == nil and err == "fs.open invalid mode" end,
      }
      local release = {
        ["socket.listen"] = function(l) l:close() end,
        ["fs.open"] = function(fd) fs.close(fd) end,
      }
      -- One call of the entry point with a raising finaliser due; returns what to release.
      local function once(t, name, f, a, b, c)
        WHERE.name = name
        prime(1)
        local ok, r, e = pcall(f, a, b, c)
        WHERE.name = false
        if ok and valid[name](r, e) then
          t.normal = t.normal + 1
          return r
        elseif not ok and type(r) == "string" and r:sub(-#name - #BOOM - 4) == BOOM .. " in " .. name then
          t.inside = t.inside + 1
        else
          t.bad = t.bad + 1
          io.stderr:write(name, ": unexpected ", tostring(ok), " ", tostring(r), "\n")
        end
      end
      local function try(label, name, f, a, b, c)
        local t = { normal = 0, inside = 0, own = 0, bad = 0 }
        tallies[#tallies + 1] = { label, t }
        for _ = 1, N do
          local ok, r = pcall(once, t, name, f, a, b, c)
          if not ok then
            if is_boom(r) then t.own = t.own + 1 else t.bad = t.bad + 1; io.stderr:write(tostring(r), "\n") end
          elseif r ~= nil and release[name] then
            pcall(release[name], r)
          end
        end
        settle() -- the code after this runs with no raising finaliser pending
      end
      local function print_tallies()
        for _, lt in ipairs(tallies) do
          local t = lt[2]
          print(("%%s: normal=%%d inside=%%d own=%%d bad=%%d"):format(lt[1], t.normal, t.inside, t.own, t.bad))
        end
        io.stdout:flush()
      end
      %s
    ]]
    -- `calls`: Lua code calling try(label, name, f, args...) (main chunk or task).
    local function check(calls, labels, hit)
      local rc, out, err = child(ENTRY:format(N, calls), { limit = 30 })
      expect_exit(0, rc, out, err)
      for _, label in ipairs(labels) do
        local t = report(out, label)
        assert.equal(0, t.bad, label .. "\n" .. out .. err)
        assert.equal(N, t.normal + t.inside + t.own, label .. "\n" .. out)
        if hit[label] then assert.is_true(t.inside > 0, "never raised inside: " .. label .. "\n" .. out) end
      end
      assert.equal("", without_trace(err))
    end

    it("lunet.spawn (main chunk and task, with a function that returns or waits)", function()
      check([[
        try("spawn-main", "lunet.spawn", lunet.spawn, noop)
        try("spawn-main-waits", "lunet.spawn", lunet.spawn, sleeper)
        lunet.spawn(function()
          try("spawn-task", "lunet.spawn", lunet.spawn, sleeper)
          print_tallies()
        end)
      ]], { "spawn-main", "spawn-main-waits", "spawn-task" },
        { ["spawn-main"] = true, ["spawn-main-waits"] = true, ["spawn-task"] = true })
    end)

    it("socket.listen (main chunk and task): no listener is left behind either", function()
      check([[
        try("listen-main", "socket.listen", socket.listen, "tcp", "127.0.0.1", 0)
        lunet.spawn(function()
          try("listen-task", "socket.listen", socket.listen, "tcp", "127.0.0.1", 0)
          print_tallies()
        end)
      ]], { "listen-main", "listen-task" }, { ["listen-main"] = true, ["listen-task"] = true })
    end)

    it("fs.open (a task; a bad mode makes it push its failure)", function()
      check([[
        lunet.spawn(function()
          try("open-task", "fs.open", fs.open, arg[0], "r")
          try("open-bad-mode", "fs.open with a bad mode", fs.open, arg[0], "z")
          print_tallies()
        end)
      ]], { "open-task", "open-bad-mode" }, { ["open-bad-mode"] = true })
    end)
  end)

  describe("SIGSEGV: lunet.run from a finaliser (found by the fuzzer)", function()
    it("raises instead of resuming coroutines where their yields cannot work", function()
      local rc, out, err = H.lunet_run([[
        local lunet = require("lunet")
        local woke = false
        lunet.spawn(function() lunet.sleep(1); woke = true end)
        local p = newproxy(true)
        getmetatable(p).__gc = function() print("in gc:", pcall(lunet.run)) end
        p = nil
        collectgarbage()
        print("after", woke)
      ]], nil, 30)
      assert.equal(0, rc, err)
      assert.equal("in gc:\tfalse\tlunet.run cannot be called from a finaliser or a debug hook\nafter\tfalse\n", out)
    end)
  end)

  describe("SIGABRT: lunet.spawn from a finaliser when the new coroutine waits", function()
    it("the task starts on the next loop iteration, waits, finishes, and can be joined", function()
      local rc, out, err = child([[
        local lunet = require("lunet")
        local T = {}
        -- Leaves garbage whose finaliser spawns a task that waits `ms`.
        local function arm(where, ms)
          getmetatable(newproxy(true)).__gc = function()
            T[where] = lunet.spawn(function()
              lunet.sleep(ms)
              print("spawned in a finaliser (" .. where .. ") finished")
              return where
            end)
          end
        end
        arm("main chunk", 5)
        collectgarbage(); collectgarbage()
        print("main chunk: " .. T["main chunk"]:status())
        lunet.spawn(function()
          arm("task", 10)
          collectgarbage(); collectgarbage()
          print("task: " .. T.task:status())
          print(T["main chunk"]:join())
          print(T.task:join())
        end)
      ]])
      expect_exit(0, rc, out, err)
      assert.equal(table.concat({
        "main chunk: ready",
        "task: ready",
        "spawned in a finaliser (main chunk) finished",
        "true\tmain chunk",
        "spawned in a finaliser (task) finished",
        "true\ttask",
      }, "\n") .. "\n", out)
      assert.equal("", without_trace(err))
    end)

    it("from finalisers run wherever a collection step happens (also while lunet delivers results)", function()
      local rc, out, err = child([[
        local lunet = require("lunet")
        local fs = require("lunet.fs")
        collectgarbage("setpause", 50)
        local n = { spawned = 0, finished = 0 }
        local function spawn_on_gc()
          n.spawned = n.spawned + 1
          lunet.spawn(function() lunet.sleep(0); n.finished = n.finished + 1 end)
        end
        lunet.spawn(function()
          for _ = 1, 200 do
            getmetatable(newproxy(true)).__gc = spawn_on_gc
            for i = 1, 50 do local _ = { i } end
            assert(fs.stat(arg[0]))
          end
          collectgarbage(); collectgarbage()
          lunet.sleep(20)
          print(("spawned=%d finished=%d"):format(n.spawned, n.finished))
        end)
      ]])
      expect_exit(0, rc, out, err)
      assert.equal("spawned=200 finished=200\n", out)
      assert.equal("", without_trace(err))
    end)
  end)

  describe("SIGSEGV: deep recursive lunet.spawn", function()
    for _, depth in ipairs({ 50000, 100000 }) do
      it(("to depth %d: every task runs (each spawns the next before its first wait)"):format(depth), function()
        local rc, out, err = child(([[
          local lunet = require("lunet")
          local N, n = %d, 0
          local function step(d)
            n = n + 1
            if d < N then lunet.spawn(step, d + 1) end
            lunet.sleep(0)
          end
          lunet.spawn(step, 1)
          lunet.run()
          print(n, lunet._pending())
        ]]):format(depth), { luajit = true })
        expect_exit(0, rc, out, err)
        assert.equal(depth .. "\t0\n", out)
        assert.equal("", without_trace(err))
      end)
    end
  end)

  describe("_skip_loopback_restriction is out of Lua's reach", function()
    -- Prints what binding 0.0.0.0 gives (closing at once: no traffic).
    local PROBE = [[
      local lunet = require("lunet")
      local function probe(label)
        local socket, udp = require("lunet.socket"), require("lunet.udp")
        local l, err = socket.listen("tcp", "0.0.0.0", 0)
        if l then l:close() end
        local u, uerr = udp.bind("0.0.0.0", 0)
        if u then u:close() end
        print(label .. ": " .. (l and "listening" or err) .. " | " .. (u and "bound" or uerr))
      end
    ]]
    local refused = LOOPBACK_ONLY .. " | " .. LOOPBACK_ONLY
    local allowed = "listening | bound"

    it("no such function, and no trick from Lua lifts the rule once lunet is loaded", function()
      local rc, out, err = child(PROBE .. [[
        local names = {}
        for k in pairs(lunet) do if tostring(k):lower():find("skip") then names[#names + 1] = k end end
        print("skip functions: " .. #names .. " " .. tostring(lunet._skip_loopback_restriction))
        local ffi = require("ffi")
        ffi.cdef("int setenv(const char *, const char *, int);")
        ffi.C.setenv("]] .. SKIP_ENV .. [[", "1", 1)
        probe("env var set after loading")
        package.loaded.lunet = nil
        require("lunet")
        probe("required again")
        local so = assert(package.searchpath("lunet", package.cpath))
        local open = assert(package.loadlib(so, "luaopen_lunet"))
        open()
        probe("luaopen_lunet called again")
        for _, sym in ipairs({ "lunet_skip_loopback_restriction", "skip_loopback_restriction",
                               "l_skip_loopback_restriction", "luaopen_lunet_skip_loopback_restriction" }) do
          print(sym .. ": " .. tostring(package.loadlib(so, sym)))
        end
      ]], { luajit = true, env = "env -u " .. SKIP_ENV })
      expect_exit(0, rc, out, err)
      assert.equal(table.concat({
        "skip functions: 0 nil",
        "env var set after loading: " .. refused,
        "required again: " .. refused,
        "luaopen_lunet called again: " .. refused,
        "lunet_skip_loopback_restriction: nil",
        "skip_loopback_restriction: nil",
        "l_skip_loopback_restriction: nil",
        "luaopen_lunet_skip_loopback_restriction: nil",
      }, "\n") .. "\n", out)
    end)

    it("lunet-run: lifted only by its flag (which it does not pass on), never by the environment", function()
      local src = PROBE .. ([[
        probe("lunet-run")
        print("env: " .. tostring(os.getenv("%s")))
      ]]):format(SKIP_ENV)
      local rc, out, err = child(src, { env = "env -u " .. SKIP_ENV })
      expect_exit(0, rc, out, err)
      assert.equal("lunet-run: " .. refused .. "\nenv: nil\n", out)
      rc, out, err = child(src, { env = SKIP_ENV .. "=1" })
      expect_exit(0, rc, out, err)
      assert.equal("lunet-run: " .. refused .. "\nenv: nil\n", out)
      rc, out, err = child(src, { env = "env -u " .. SKIP_ENV, flags = "--dangerously-skip-loopback-restriction" })
      expect_exit(0, rc, out, err)
      assert.equal("lunet-run: " .. allowed .. "\nenv: nil\n", out)
      assert.matches("WARNING", err)
    end)

    it("plain luajit: lifted by LUNET_DANGEROUSLY_SKIP_LOOPBACK_RESTRICTION=1 when lunet loads, by nothing else",
      function()
        local src = PROBE .. [[probe("luajit")]]
        for _, case in ipairs({
          { "env -u " .. SKIP_ENV, refused },
          { SKIP_ENV .. "=0", refused },
          { SKIP_ENV .. "=yes", refused },
          { SKIP_ENV .. "=1", allowed },
        }) do
          local rc, out, err = child(src, { luajit = true, env = case[1] })
          expect_exit(0, rc, out, err)
          assert.equal("luajit: " .. case[2] .. "\n", out, case[1])
        end
      end)
  end)

  describe("exit waits on pool work", function()
    -- A task runs `statement`: Lua code that calls `exit_soon()` (another
    -- task calls `exit` 100 ms later) and then waits on pool work.
    local function exiting(prelude, statement, exit)
      return ([[
        local lunet = require("lunet")
        %s
        local function exit_soon()
          lunet.spawn(function()
            lunet.sleep(100)
            print("exiting")
            io.stdout:flush()
            %s
          end)
        end
        lunet.spawn(function()
          %s
          print("the statement ended")
        end)
        lunet.run()
      ]]):format(prelude, exit, statement)
    end
    local SQLITE = [[local db = require("lunet.sqlite3")]]
    local LONG = [[
      local c = assert(db.open())
      exit_soon()
      c:query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c")
    ]]
    for _, exit in ipairs({ "os.exit(3)", "os.exit(3, true)" }) do
      for _, luajit in ipairs({ false, true }) do
        it(("a long sqlite3 statement: %s exits at once (%s)"):format(exit, luajit and "luajit" or "lunet-run"),
          function()
            local rc, out, err = child(exiting(SQLITE, LONG, exit), { luajit = luajit, limit = 30 })
            expect_exit(3, rc, out, err)
            assert.equal("exiting\n", out)
          end)
      end
    end

    it("a postgres SELECT pg_sleep(30): os.exit(3) exits at once", function()
      local params = ("{ host = %q, port = %d, user = %q, password = %s, database = 'postgres' }"):format(
        os.getenv("LUNET_DB_HOST") or "127.0.0.1", tonumber(os.getenv("LUNET_DB_PORT") or "") or 5432,
        os.getenv("LUNET_DB_USER") or "postgres",
        os.getenv("LUNET_DB_PASS") and ("%q"):format(os.getenv("LUNET_DB_PASS")) or "nil")
      local rc, out, err = child(exiting([[local pg = require("lunet.postgres")]], ([[
        local c = assert(pg.open(%s))
        exit_soon()
        print(c:query("SELECT pg_sleep(30)"))
      ]]):format(params), "os.exit(3)"), { limit = 30 })
      expect_exit(3, rc, out, err)
      assert.equal("exiting\n", out)
    end)

    it("mysql.open with connect_timeout = 0 against a server that accepts and never speaks: os.exit(0) exits",
      function()
        local rc, out, err = child(exiting([[
          local socket = require("lunet.socket")
          local mysql = require("lunet.mysql")
          local l = assert(socket.listen("tcp", "127.0.0.1", 0))
          local held = {}
          lunet.spawn(function() held[1] = assert(l:accept()); print("accepted") end)
        ]], [[
          exit_soon()
          print(mysql.open({ host = "127.0.0.1", port = select(2, l:getsockname()), connect_timeout = 0 }))
        ]], "os.exit(0)"), { limit = 30 })
        expect_exit(0, rc, out, err)
        assert.equal("accepted\nexiting\n", out)
      end)
  end)
end)
