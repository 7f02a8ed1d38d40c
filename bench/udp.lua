-- UDP datagrams per second, run by `make bench` with the release build:
-- 64-byte datagrams from one loopback socket to another in the same process,
-- through lunet.udp and through luv (Debian's lua-luv, libuv bindings with
-- callbacks) doing exactly the same thing, each in its own process.
--
-- Both keep a fixed number of datagrams in flight (the window): each datagram
-- received triggers the next send, so the kernel never drops any. Window 1 is
-- a ping-pong (every datagram waits for the loop); window 64 measures
-- throughput. Each figure is the best of BENCH_UDP_ROUNDS runs (default 3) of
-- BENCH_UDP_COUNT datagrams (default 200000). A benchmark, not a test.
--
-- Usage: lunet-run bench/udp.lua          (runs both and prints the table)
--        luajit bench/udp.lua luv         (the luv side alone; prints rates)
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_udp_timespec;
  int clock_gettime(int clk, bench_udp_timespec *tp);
]]
local ts = ffi.new("bench_udp_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local count = tonumber(os.getenv("BENCH_UDP_COUNT") or "") or 200000
local rounds = tonumber(os.getenv("BENCH_UDP_ROUNDS") or "") or 3
local windows = { 1, 64 }
local payload = ("0123456789abcdef"):rep(4) -- 64 bytes

local function best(fn)
  local t = math.huge
  for _ = 1, rounds do t = math.min(t, fn()) end
  return t
end

-- One run through luv: returns the seconds taken.
local function luv_run(window)
  local uv = require("luv")
  local a, b = uv.new_udp(), uv.new_udp()
  assert(a:bind("127.0.0.1", 0))
  assert(b:bind("127.0.0.1", 0))
  local port = b:getsockname().port
  local sent, received = 0, 0
  local t0 = now()
  assert(b:recv_start(function(err, data, addr)
    assert(not err, err)
    if not data and not addr then return end -- nothing read
    received = received + 1
    if sent < count then
      assert(a:try_send(payload, "127.0.0.1", port))
      sent = sent + 1
    end
    if received == count then
      b:recv_stop()
      a:close()
      b:close()
    end
  end))
  for _ = 1, window do
    assert(a:try_send(payload, "127.0.0.1", port))
    sent = sent + 1
  end
  uv.run()
  assert(received == count, "luv received " .. received)
  return now() - t0
end

-- One run through lunet.udp: returns the seconds taken.
local function lunet_run(window)
  local lunet = require("lunet")
  local udp = require("lunet.udp")
  local a = assert(udp.bind("127.0.0.1", 0))
  local b = assert(udp.bind("127.0.0.1", 0))
  local _, port = b:getsockname()
  local received, t = 0, nil
  lunet.spawn(function()
    local t0 = now()
    local sent = 0
    for _ = 1, window do
      assert(a:send("127.0.0.1", port, payload))
      sent = sent + 1
    end
    while received < count do
      local data, _, err = b:recv()
      assert(data, err)
      received = received + 1
      if sent < count then
        assert(a:send("127.0.0.1", port, payload))
        sent = sent + 1
      end
    end
    t = now() - t0
    assert(b:stats().dropped == 0)
    a:close()
    b:close()
  end)
  lunet.run()
  assert(received == count and t, "lunet received " .. received)
  return t
end

if arg and arg[1] == "luv" then
  for _, w in ipairs(windows) do
    print(("%d %.9f"):format(w, best(function() return luv_run(w) end)))
  end
  return
end

-- lunet here; luv in a separate luajit process (it links its own libuv).
local t_lunet = {}
for _, w in ipairs(windows) do t_lunet[w] = best(function() return lunet_run(w) end) end

local script = debug.getinfo(1, "S").source:match("^@(.*)$") or "bench/udp.lua"
local t_luv = {}
local p = io.popen(("BENCH_UDP_COUNT=%d BENCH_UDP_ROUNDS=%d luajit '%s' luv 2>&1"):format(count, rounds, script))
local out = p:read("*a")
p:close()
for w, t in out:gmatch("(%d+) ([%d.]+)") do t_luv[tonumber(w)] = tonumber(t) end

print(("%-42s %14s %14s %s"):format(("UDP, %d x 64-byte datagrams, loopback"):format(count),
  "lunet dgram/s", "luv dgram/s", "lunet vs luv"))
for _, w in ipairs(windows) do
  local name = w == 1 and "window 1 (ping-pong)" or ("window %d"):format(w)
  local lr = count / t_lunet[w]
  if t_luv[w] then
    local vr = count / t_luv[w]
    print(("%-42s %14.0f %14.0f %11.2fx"):format(name, lr, vr, lr / vr))
  else
    print(("%-42s %14.0f %14s %12s"):format(name, lr, "n/a", "n/a"))
  end
end
if not next(t_luv) then
  io.stderr:write("bench/udp.lua: the luv side did not run (is lua-luv installed?):\n", out, "\n")
end
