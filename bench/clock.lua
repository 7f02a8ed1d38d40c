-- Monotonic clock for the benchmarks and specs (CLOCK_MONOTONIC via the FFI).
-- Usage: local now = require("bench.clock")   -- now() -> seconds (float)
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } lunet_bench_timespec;
  int clock_gettime(int clk, lunet_bench_timespec *tp);
]]
local ts = ffi.new("lunet_bench_timespec")
local CLOCK_MONOTONIC = 1

return function()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
