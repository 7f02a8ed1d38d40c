-- UDP datagrams per second, run by `make bench` with the release build:
-- 64-byte datagrams from one loopback socket to another in the same process,
-- through lunet.udp and through luv (Debian's lua-luv, libuv bindings with
-- callbacks) doing exactly the same thing, each in its own process.
--
-- Both keep a fixed number of datagrams in flight (the window): each datagram
-- received triggers the next send, so the kernel never drops any. Window 1 is
-- a ping-pong (every datagram waits for the loop); window 64 measures
-- throughput. Rounds of lunet and luv alternate, so both see the same load on
-- a shared machine; each figure is the best of BENCH_UDP_ROUNDS rounds
-- (default 3) of BENCH_UDP_COUNT datagrams (default 200000), as datagrams per
-- second of wall time and as CPU time (user + system) per datagram, which
-- other processes disturb less. A benchmark, not a test.
--
-- Usage: lunet-run bench/udp.lua          (runs both and prints the table)
--        luajit bench/udp.lua luv W       (one luv round with window W;
--                                          prints "seconds cpu_seconds")
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_udp_timespec;
  int clock_gettime(int clk, bench_udp_timespec *tp);
]]
local ts = ffi.new("bench_udp_timespec")
local function clock(id)
  ffi.C.clock_gettime(id, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
local function now() return clock(1) end -- CLOCK_MONOTONIC
local function cpu() return clock(2) end -- CLOCK_PROCESS_CPUTIME_ID

local count = tonumber(os.getenv("BENCH_UDP_COUNT") or "") or 200000
local rounds = tonumber(os.getenv("BENCH_UDP_ROUNDS") or "") or 3
local windows = { 1, 64 }
local payload = ("0123456789abcdef"):rep(4) -- 64 bytes

-- One run through luv: returns the seconds taken, wall and CPU.
local function luv_run(window)
  local uv = require("luv")
  local a, b = uv.new_udp(), uv.new_udp()
  assert(a:bind("127.0.0.1", 0))
  assert(b:bind("127.0.0.1", 0))
  local port = b:getsockname().port
  local sent, received = 0, 0
  local t0, c0 = now(), cpu()
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
  return now() - t0, cpu() - c0
end

-- One run through lunet.udp: returns the seconds taken, wall and CPU.
local function lunet_run(window)
  local lunet = require("lunet")
  local udp = require("lunet.udp")
  local a = assert(udp.bind("127.0.0.1", 0))
  local b = assert(udp.bind("127.0.0.1", 0))
  local _, port = b:getsockname()
  local received, t, c = 0, nil, nil
  lunet.spawn(function()
    local t0, c0 = now(), cpu()
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
    t, c = now() - t0, cpu() - c0
    assert(b:stats().dropped == 0)
    a:close()
    b:close()
  end)
  lunet.run()
  assert(received == count and t, "lunet received " .. received)
  return t, c
end

if arg and arg[1] == "luv" then
  print(("%.9f %.9f"):format(luv_run(tonumber(arg[2]))))
  return
end

-- lunet here; luv in a separate luajit process each round (it links its own libuv).
local script = debug.getinfo(1, "S").source:match("^@(.*)$") or "bench/udp.lua"
local function luv_round(w)
  local p = io.popen(("BENCH_UDP_COUNT=%d luajit '%s' luv %d 2>&1"):format(count, script, w))
  local out = p:read("*a")
  p:close()
  local t, c = out:match("^([%d.]+) ([%d.]+)")
  if not t then
    io.stderr:write("bench/udp.lua: the luv side did not run (is lua-luv installed?):\n", out, "\n")
    return nil
  end
  return tonumber(t), tonumber(c)
end

local best = {}
for _, w in ipairs(windows) do
  local b = { lunet = { math.huge, math.huge }, luv = { math.huge, math.huge } }
  best[w] = b
  for _ = 1, rounds do
    local t, c = lunet_run(w)
    b.lunet = { math.min(b.lunet[1], t), math.min(b.lunet[2], c) }
    t, c = luv_round(w)
    if t then b.luv = { math.min(b.luv[1], t), math.min(b.luv[2], c) } end
  end
end

print(("UDP, %d x 64-byte datagrams over loopback, best of %d rounds"):format(count, rounds))
print(("%-22s %12s %12s %8s   %12s %12s %8s"):format("", "lunet dg/s", "luv dg/s", "ratio",
  "lunet cpu/dg", "luv cpu/dg", "ratio"))
for _, w in ipairs(windows) do
  local b = best[w]
  local name = w == 1 and "window 1 (ping-pong)" or ("window %d"):format(w)
  local lr, vr = count / b.lunet[1], count / b.luv[1]
  local lc, vc = b.lunet[2] / count * 1e6, b.luv[2] / count * 1e6
  if b.luv[1] < math.huge then
    print(("%-22s %12.0f %12.0f %7.2fx   %10.2fus %10.2fus %7.2fx"):format(name, lr, vr, lr / vr, lc, vc, vc / lc))
  else
    print(("%-22s %12.0f %12s %8s   %10.2fus %12s %8s"):format(name, lr, "n/a", "n/a", lc, "n/a", "n/a"))
  end
end
print("(ratio > 1: lunet is faster / uses less CPU per datagram)")
