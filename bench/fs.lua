-- fs.read throughput, run by `make bench` with the release build after
-- bench/core.lua: a 100 MiB file read with fs.read in 64 KiB and in 1 MiB
-- pieces, against `cat file > /dev/null` timed in the same run. The file is
-- read once first so every contender reads from the page cache; each figure is
-- the best of BENCH_FS_ROUNDS runs (default 3). A benchmark, not a test.
local lunet = require("lunet")
local fs = require("lunet.fs")
local now = require("bench.clock")

local MiB = 1024 * 1024
local size_mib = tonumber(os.getenv("BENCH_FS_MIB") or "") or 100
local rounds = tonumber(os.getenv("BENCH_FS_ROUNDS") or "") or 3
local path = os.tmpname()

local function sync(fn)
  local err
  lunet.spawn(function()
    local ok, e = pcall(fn)
    if not ok then err = e end
  end)
  lunet.run()
  if err then error(err, 0) end
end

-- The file: 100 MiB of a non-repeating-looking pattern, written with fs.write.
sync(function()
  local block = {}
  for i = 1, MiB / 16 do block[i] = ("%015x\n"):format(i * 2654435761 % 2 ^ 52) end
  block = table.concat(block)
  local fd = assert(fs.open(path, "w"))
  for _ = 1, size_mib do assert(fs.write(fd, block) == MiB) end
  assert(fs.close(fd) == nil)
end)

local function read_all(piece)
  local total = 0
  sync(function()
    local fd = assert(fs.open(path, "r"))
    while true do
      local data = assert(fs.read(fd, piece))
      if #data == 0 then break end
      total = total + #data
    end
    assert(fs.close(fd) == nil)
  end)
  assert(total == size_mib * MiB, "read " .. total .. " bytes")
end

local function cat()
  assert(os.execute("cat '" .. path .. "' > /dev/null") == 0)
end

local function best(fn)
  local t = math.huge
  for _ = 1, rounds do
    local t0 = now()
    fn()
    t = math.min(t, now() - t0)
  end
  return t
end

cat() -- warm the page cache
local t_cat = best(cat)
local t_64k = best(function() read_all(64 * 1024) end)
local t_1m = best(function() read_all(MiB) end)
os.remove(path)

print(("%-38s %10s %10s %s"):format(("fs.read, %d MiB file (page cache)"):format(size_mib), "MiB/s", "seconds", "speed vs cat"))
local function row(name, t)
  print(("%-38s %10.0f %10.3f %9.2fx"):format(name, size_mib / t, t, t_cat / t))
end
row("cat file > /dev/null", t_cat)
row("fs.read, 64 KiB pieces", t_64k)
row("fs.read, 1 MiB pieces", t_1m)
