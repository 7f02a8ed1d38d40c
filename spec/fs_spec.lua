-- lunet.fs: files on libuv's thread pool.
local H = require("spec.helper")
local lunet = H.lunet
local fs = require("lunet.fs")
local ffi = require("ffi")
local bit = require("bit")

local dir

local function path(name) return dir .. "/" .. name end

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

local function pack(...) return { n = select("#", ...), ... } end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Runs `body` in a coroutine on the loop (H.run) with a generous limit.
local function run(body, limit) H.run(body, limit or 20000) end

setup(function()
  local rc, out = H.sh("mktemp -d")
  assert(rc == 0)
  dir = out:gsub("%s+$", "")
end)

teardown(function()
  if dir and dir:match("^/tmp/") then H.sh("rm -rf " .. H.shquote(dir)) end
end)

describe("lunet.fs loading", function()
  it("require('lunet.fs') works from plain luajit before and without require('lunet')", function()
    local rc, out, err = H.luajit([[
      local fs = require("lunet.fs")
      print(type(fs.open), type(fs.read), type(fs.write), type(fs.close), type(fs.stat), type(fs.scandir))
      print(package.loaded.lunet == nil)
      -- The loop is lunet's; its runner comes with require("lunet").
      local lunet = require("lunet")
      lunet.spawn(function()
        local st = assert(fs.stat("."))
        print(st.type)
      end)
      lunet.run()
    ]])
    assert.equal(0, rc, err)
    assert.equal("function\tfunction\tfunction\tfunction\tfunction\tfunction\ntrue\ndir\n", out)
  end)
end)

describe("lunet.fs yield guards", function()
  it("raises '<fn> must be called from coroutine' from the main chunk", function()
    local before = lunet._pending()
    for name, args in pairs({
      open = { "x", "r" }, read = { 0, 1 }, write = { 0, "x" }, close = { 0 },
      stat = { "." }, scandir = { "." },
    }) do
      local ok, err = pcall(fs[name], unpack(args))
      assert.is_false(ok)
      assert.equal("fs." .. name .. " must be called from coroutine", err)
    end
    assert.equal(before, lunet._pending())
  end)

  it("raises in a non-yieldable context", function()
    local err
    run(function()
      local ok, e = pcall(table.sort, { 2, 1 }, function(a, b) fs.stat("."); return a < b end)
      err = not ok and e
    end)
    assert.matches("fs.stat called in non%-yieldable context", err)
  end)
end)

describe("lunet.fs read and write", function()
  it("reads and writes sequentially from the current position", function()
    local got = {}
    run(function()
      local fd = assert(fs.open(path("seq"), "w"))
      assert.equal(3, fs.write(fd, "abc"))
      assert.equal(4, fs.write(fd, "defg"))
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("seq"), "r"))
      for _, n in ipairs({ 2, 3, 10, 10 }) do got[#got + 1] = assert(fs.read(fd, n)) end
      assert.is_nil(fs.close(fd))
    end)
    assert.same({ "ab", "cde", "fg", "" }, got)
    assert.equal("abcdefg", slurp(path("seq")))
  end)

  it("r+ writes over the start, w truncates, w+ reads back what it wrote", function()
    spit(path("rw"), "0123456789")
    local back
    run(function()
      local fd = assert(fs.open(path("rw"), "r+"))
      assert.equal("012", fs.read(fd, 3))
      assert.equal(2, fs.write(fd, "AB")) -- at offset 3
      assert.is_nil(fs.close(fd))
      assert.equal("012AB56789", slurp(path("rw")))
      fd = assert(fs.open(path("rw"), "w"))
      assert.is_nil(fs.close(fd))
      assert.equal("", slurp(path("rw")))
      fd = assert(fs.open(path("rw"), "w+"))
      assert.equal(5, fs.write(fd, "hello"))
      assert.equal("", fs.read(fd, 10)) -- the position is at the end
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("rw"), "rb"))
      back = fs.read(fd, 100)
      assert.is_nil(fs.close(fd))
    end)
    assert.equal("hello", back)
  end)

  it("appends in a and a+ modes, whatever the position", function()
    spit(path("app"), "one")
    local whole
    run(function()
      local fd = assert(fs.open(path("app"), "a"))
      assert.equal(3, fs.write(fd, "two"))
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("app"), "a+"))
      assert.equal("onetwo", fs.read(fd, 100)) -- a+ reads from the start
      assert.equal(5, fs.write(fd, "three"))
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("app-new"), "ab")) -- created
      assert.equal(1, fs.write(fd, "x"))
      assert.is_nil(fs.close(fd))
    end)
    assert.equal("onetwothree", slurp(path("app")))
    assert.equal("x", slurp(path("app-new")))
  end)

  it("writes and reads every byte value, NULs included", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local data = "\0\0" .. table.concat(bytes) .. "\0middle\0" .. table.concat(bytes):reverse() .. "\0"
    local back, n
    run(function()
      local fd = assert(fs.open(path("nul"), "w+"))
      n = fs.write(fd, data)
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("nul"), "r"))
      back = fs.read(fd, 4096)
      assert.is_nil(fs.close(fd))
    end)
    assert.equal(#data, n)
    assert.equal(#data, #back)
    assert.is_true(data == back)
    assert.is_true(slurp(path("nul")) == data)
  end)

  it("writes numbers in their string form and an empty string as 0 bytes", function()
    run(function()
      local fd = assert(fs.open(path("num"), "w"))
      assert.equal(2, fs.write(fd, 42))
      assert.equal(0, fs.write(fd, ""))
      assert.is_nil(fs.close(fd))
    end)
    assert.equal("42", slurp(path("num")))
  end)

  it("caps huge read sizes instead of allocating them, and reads 0 bytes as ''", function()
    spit(path("small"), "tiny")
    local r = {}
    run(function()
      local fd = assert(fs.open(path("small"), "r"))
      r[1] = fs.read(fd, 0)
      r[2] = fs.read(fd, 2 ^ 62)
      r[3] = fs.read(fd, math.huge)
      assert.is_nil(fs.close(fd))
    end)
    assert.same({ "", "tiny", "" }, r)
  end)

  it("writes and reads back a 100 MiB file in 1 MiB pieces with equal checksums", function()
    local MiB, pieces = 1024 * 1024, 100
    -- A non-periodic 1 MiB block (an LCG); each piece starts with its number.
    local buf = ffi.new("uint8_t[?]", MiB)
    local x = 12345
    for i = 0, MiB - 1 do
      x = (x * 1103515245 + 12345) % 2147483648
      buf[i] = bit.band(bit.rshift(x, 16), 255)
    end
    local block = ffi.string(buf, MiB)
    local function piece(i) return ("%08d"):format(i) .. block:sub(9) end

    local big = path("big")
    local sum_written, sum_read = os.tmpname(), os.tmpname()
    local expect = assert(io.popen("md5sum > " .. sum_written, "w"))
    local got = assert(io.popen("md5sum > " .. sum_read, "w"))
    local total_written, total_read, reads, last = 0, 0, 0, nil
    run(function()
      local fd = assert(fs.open(big, "w"))
      for i = 1, pieces do
        local p = piece(i)
        expect:write(p)
        total_written = total_written + assert(fs.write(fd, p))
      end
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(big, "r"))
      while true do
        local data = assert(fs.read(fd, MiB))
        if data == "" then break end
        reads = reads + 1
        total_read = total_read + #data
        got:write(data)
        last = data
      end
      assert.is_nil(fs.close(fd))
    end, 300000)
    expect:close()
    got:close()
    local function sum(p)
      local s = slurp(p):match("^(%x+)")
      os.remove(p)
      return s
    end
    local s_written, s_read = sum(sum_written), sum(sum_read)
    local rc, out = H.sh("md5sum " .. H.shquote(big))
    os.remove(big)
    assert.equal(0, rc)
    local s_file = out:match("^(%x+)")
    assert.equal(pieces * MiB, total_written)
    assert.equal(pieces * MiB, total_read)
    assert.equal(pieces, reads)
    assert.is_true(last == piece(pieces))
    assert.equal(s_written, s_file)
    assert.equal(s_file, s_read)
  end)

  it("lets other coroutines run while requests are on the thread pool", function()
    local ticks, done = 0, 0
    run(function()
      local running = true
      lunet.spawn(function()
        while running do ticks = ticks + 1; lunet.sleep(0) end
      end)
      local workers = 20
      for w = 1, workers do
        lunet.spawn(function()
          local p = path("conc" .. w)
          local fd = assert(fs.open(p, "w+"))
          for i = 1, 20 do assert.equal(#tostring(i), fs.write(fd, tostring(i))) end
          assert.is_nil(fs.close(fd))
          fd = assert(fs.open(p, "r"))
          local s = fs.read(fd, 1000)
          assert.is_nil(fs.close(fd))
          local want = {}
          for i = 1, 20 do want[i] = tostring(i) end
          assert.equal(table.concat(want), s)
          done = done + 1
        end)
      end
      while done < workers do lunet.sleep(1) end
      running = false
    end)
    assert.equal(20, done)
    assert.is_true(ticks > 0)
  end)
end)

describe("lunet.fs open", function()
  it("x refuses an existing file; x and x+ create new ones", function()
    spit(path("exists"), "keep")
    local r = {}
    run(function()
      r.x = { fs.open(path("exists"), "x") }
      r.xplus = { fs.open(path("exists"), "x+") }
      local fd = assert(fs.open(path("fresh"), "x+"))
      assert.equal(3, fs.write(fd, "new"))
      r.fresh_again = { fs.open(path("fresh"), "x") }
      assert.is_nil(fs.close(fd))
    end)
    assert.same({ nil, "file already exists" }, r.x)
    assert.same({ nil, "file already exists" }, r.xplus)
    assert.same({ nil, "file already exists" }, r.fresh_again)
    assert.equal("keep", slurp(path("exists")))
    assert.equal("new", slurp(path("fresh")))
  end)

  it("creates files with mode 0644 minus the umask", function()
    local _, out = H.sh("umask")
    local umask = tonumber(out:match("%d+"), 8)
    local mode
    run(function()
      local fd = assert(fs.open(path("perm"), "w"))
      assert.is_nil(fs.close(fd))
      mode = assert(fs.stat(path("perm"))).mode
    end)
    assert.equal(bit.band(tonumber("644", 8), bit.bnot(umask)), bit.band(mode, tonumber("777", 8)))
  end)

  it("returns nil, 'fs.open invalid mode' for bad modes", function()
    local results = {}
    run(function()
      for _, m in ipairs({ "", "q", "rw", "r++", "+", "R", "wx", "b" }) do
        results[#results + 1] = { fs.open(path("never"), m) }
      end
    end)
    for _, r in ipairs(results) do assert.same({ nil, "fs.open invalid mode" }, r) end
    assert.is_false(exists(path("never")))
  end)

  it("returns libuv's error text for missing files and directories", function()
    local r = {}
    run(function()
      r[1] = { fs.open(path("missing"), "r") }
      r[2] = { fs.open(path("no/such/dir/file"), "w") }
      r[3] = { fs.open(dir, "w") }
    end)
    assert.same({ nil, "no such file or directory" }, r[1])
    assert.same({ nil, "no such file or directory" }, r[2])
    assert.same({ nil, "illegal operation on a directory" }, r[3])
  end)

  it("refuses paths containing NUL bytes instead of truncating them", function()
    local r = {}
    run(function()
      r.open = { fs.open(path("cut") .. "\0tail", "w") }
      r.stat = { fs.stat(dir .. "\0/x") }
      r.scandir = { fs.scandir(dir .. "\0") }
    end)
    assert.same({ nil, "fs.open requires a path without NUL bytes" }, r.open)
    assert.same({ nil, "fs.stat requires a path without NUL bytes" }, r.stat)
    assert.same({ nil, "fs.scandir requires a path without NUL bytes" }, r.scandir)
    assert.is_false(exists(path("cut")))
  end)
end)

describe("lunet.fs close and descriptors", function()
  it("double close returns 'bad file descriptor'; later reads and writes fail the same way", function()
    local r = {}
    run(function()
      local fd = assert(fs.open(path("dc"), "w+"))
      r.first = pack(fs.close(fd))
      r.second = pack(fs.close(fd))
      r.read = { fs.read(fd, 1) }
      r.write = { fs.write(fd, "x") }
    end)
    assert.same({ n = 1 }, r.first) -- one nil
    assert.same({ n = 1, "bad file descriptor" }, r.second)
    assert.same({ nil, "bad file descriptor" }, r.read)
    assert.same({ nil, "bad file descriptor" }, r.write)
  end)

  it("refuses descriptors it did not open (never closes stdio or libuv's own)", function()
    local r = {}
    run(function()
      for _, fd in ipairs({ 0, 1, 2, 3, 4, 5, 6, 7, 8, -1, 1.5, 2 ^ 40, 0 / 0 }) do
        r[#r + 1] = { fs.close(fd) }
        r[#r + 1] = { select(2, fs.write(fd, "x")) }
        r[#r + 1] = { select(2, fs.read(fd, 1)) }
      end
      lunet.sleep(1) -- the loop still works
    end)
    for _, v in ipairs(r) do assert.same({ "bad file descriptor" }, v) end
  end)

  it("close waits for a read in flight on the same descriptor", function()
    local data = ("z"):rep(4 * 1024 * 1024)
    spit(path("inflight"), data)
    local got, closed, order = nil, nil, {}
    run(function()
      local fd = assert(fs.open(path("inflight"), "r"))
      local reader_done = false
      lunet.spawn(function()
        got = fs.read(fd, #data)
        order[#order + 1] = "read"
        reader_done = true
      end)
      closed = { fs.close(fd) }
      order[#order + 1] = "close"
      while not reader_done do lunet.sleep(1) end
    end)
    assert.is_nil(closed[1])
    assert.equal(#data, #got)
    assert.same({ "read", "close" }, order)
  end)
end)

describe("lunet.fs stat", function()
  it("returns every field as a number, the type, and fractional times", function()
    spit(path("st"), "12345")
    assert.equal(0, (H.sh("touch -d @1577836800.25 " .. H.shquote(path("st")))))
    local st
    run(function() st = assert(fs.stat(path("st"))) end)
    for _, k in ipairs({ "size", "mode", "uid", "gid", "nlink", "ino", "dev", "rdev",
                         "blksize", "blocks", "atime", "mtime", "ctime" }) do
      assert.equal("number", type(st[k]), k)
    end
    assert.equal(5, st.size)
    assert.equal("file", st.type)
    assert.equal(tonumber("100000", 8), bit.band(st.mode, tonumber("170000", 8)))
    assert.equal(1, st.nlink)
    assert.equal(1577836800.25, st.mtime)
    assert.equal(1577836800.25, st.atime)
    assert.is_true(st.ctime > 1577836800)
    assert.is_true(st.blksize > 0)
  end)

  it("names the type of directories, devices, fifos and link targets", function()
    assert.equal(0, (H.sh("mkfifo " .. H.shquote(path("fifo")))))
    assert.equal(0, (H.sh("ln -s " .. H.shquote(dir) .. " " .. H.shquote(path("dirlink")))))
    local t = {}
    run(function()
      t.dir = fs.stat(dir).type
      t.null = fs.stat("/dev/null").type
      t.fifo = fs.stat(path("fifo")).type
      t.link = fs.stat(path("dirlink")).type -- stat follows links
    end)
    assert.same({ dir = "dir", null = "char", fifo = "fifo", link = "dir" }, t)
  end)

  it("returns nil, err for missing paths and bad arguments", function()
    local r = {}
    run(function()
      r[1] = { fs.stat(path("nothing")) }
      r[2] = { fs.stat("") }
      r[3] = { fs.stat() }
      r[4] = { fs.stat({}) }
    end)
    assert.same({ nil, "no such file or directory" }, r[1])
    assert.same({ nil, "no such file or directory" }, r[2])
    assert.same({ nil, "fs.stat requires path" }, r[3])
    assert.same({ nil, "fs.stat requires path" }, r[4])
  end)
end)

describe("lunet.fs scandir", function()
  it("lists entries sorted by name with their types, without . and ..", function()
    local d = path("scan")
    assert.equal(0, (H.sh(("mkdir %s && cd %s && touch b a && mkdir c && mkfifo f && ln -s a l && touch .hidden")
      :format(H.shquote(d), H.shquote(d)))))
    local list, empty
    run(function()
      list = assert(fs.scandir(d))
      assert.equal(0, (H.sh("mkdir " .. H.shquote(d .. "/c/empty"))))
      empty = assert(fs.scandir(d .. "/c/empty"))
    end)
    assert.same({
      { name = ".hidden", type = "file" },
      { name = "a", type = "file" },
      { name = "b", type = "file" },
      { name = "c", type = "dir" },
      { name = "f", type = "fifo" },
      { name = "l", type = "link" },
    }, list)
    assert.same({}, empty)
  end)

  it("sorts many entries by name", function()
    local d = path("many")
    assert.equal(0, (H.sh(("mkdir %s && cd %s && for i in $(seq 1 300); do touch n$i; done"):format(H.shquote(d), H.shquote(d)))))
    local names
    run(function()
      names = {}
      for _, e in ipairs(assert(fs.scandir(d))) do names[#names + 1] = e.name end
    end)
    assert.equal(300, #names)
    local sorted = { unpack(names) }
    table.sort(sorted)
    assert.same(sorted, names)
  end)

  it("returns nil, err for missing paths, files and bad arguments", function()
    spit(path("plain"), "")
    local r = {}
    run(function()
      r[1] = { fs.scandir(path("nowhere")) }
      r[2] = { fs.scandir(path("plain")) }
      r[3] = { fs.scandir(nil) }
      r[4] = { fs.scandir(true) }
    end)
    assert.same({ nil, "no such file or directory" }, r[1])
    assert.same({ nil, "not a directory" }, r[2])
    assert.same({ nil, "fs.scandir requires path" }, r[3])
    assert.same({ nil, "fs.scandir requires path" }, r[4])
  end)
end)

describe("lunet.fs bad arguments", function()
  -- README "Argument errors": what a call acts on (a path, a descriptor)
  -- keeps C lunet's nil, "fs.<fn> requires ..."; a wrong parameter raises.
  it("a missing or wrong path or descriptor returns nil, 'fs.<fn> requires ...'", function()
    local r = {}
    run(function()
      local function try(name, ...)
        local res = { pcall(fs[name], ...) }
        assert.is_true(res[1], name .. " raised: " .. tostring(res[2]))
        r[#r + 1] = { name, res[2], res[3] }
      end
      try("open", nil, "r"); try("open", {}, "r"); try("open", true, "r")
      try("read", nil, 1); try("read", "x", 1); try("read", {}, 1)
      try("write", nil, "x"); try("write", "fd", "x"); try("write", {}, "x")
      try("stat"); try("stat", false)
      try("scandir"); try("scandir", {})
    end)
    local want = {
      open = "fs.open requires path and mode", read = "fs.read requires fd and length",
      write = "fs.write requires fd and data", stat = "fs.stat requires path",
      scandir = "fs.scandir requires path",
    }
    assert.equal(13, #r)
    for _, v in ipairs(r) do
      assert.is_nil(v[2], v[1])
      assert.equal(want[v[1]], v[3])
    end
  end)

  it("close returns its message as one value", function()
    local r = {}
    run(function()
      r.close = { fs.close() }
      r.close2 = { fs.close("x") }
      r.close3 = { fs.close({}) }
    end)
    assert.same({ "fs.close requires 1 integer fd" }, r.close)
    assert.same({ "fs.close requires 1 integer fd" }, r.close2)
    assert.same({ "fs.close requires 1 integer fd" }, r.close3)
  end)

  it("a wrong mode type, length or data raises a bad argument error, before the path or descriptor is looked at", function()
    local r = {}
    run(function()
      local fd = assert(fs.open(path("args"), "w+"))
      local function try(key, name, ...)
        local ok, err = pcall(fs[name], ...)
        assert.is_false(ok, key .. " did not raise")
        r[key] = tostring(err):gsub("^[^']-: ", "")
      end
      try("open_nil", "open", path("args"))
      try("open_num", "open", path("args"), 1)
      try("open_both", "open", nil, nil)
      try("read_nil", "read", fd)
      try("read_str", "read", fd, "many")
      try("read_neg", "read", fd, -1)
      try("read_nan", "read", fd, 0 / 0)
      try("read_nofd", "read", nil, nil)
      try("write_nil", "write", fd, nil)
      try("write_tbl", "write", fd, {})
      try("write_bool", "write", 3, true)
      -- The error names the caller's line, not lunet's yield guard.
      r.where = select(2, pcall(function() fs.read(fd) end))
      -- The descriptor is untouched by the refused calls.
      r.still = { fs.write(fd, "ok") }
      assert.is_nil(fs.close(fd))
    end)
    local function bad(n, fn, what) return ("bad argument #%d to 'fs.%s' (%s)"):format(n, fn, what) end
    assert.equal(bad(2, "open", "string expected, got no value"), r.open_nil)
    assert.equal(bad(2, "open", "string expected, got number"), r.open_num)
    assert.equal(bad(2, "open", "string expected, got nil"), r.open_both)
    assert.equal(bad(2, "read", "number expected, got no value"), r.read_nil)
    assert.equal(bad(2, "read", "number expected, got string"), r.read_str)
    assert.equal(bad(2, "read", "length must be >= 0"), r.read_neg)
    assert.equal(bad(2, "read", "length must be >= 0"), r.read_nan)
    assert.equal(bad(2, "read", "number expected, got nil"), r.read_nofd)
    assert.equal(bad(2, "write", "string expected, got nil"), r.write_nil)
    assert.equal(bad(2, "write", "string expected, got table"), r.write_tbl)
    assert.equal(bad(2, "write", "string expected, got boolean"), r.write_bool)
    assert.matches("^[^\n]*fs_spec%.lua:%d+: bad argument #2 to 'fs%.read'", r.where)
    assert.same({ 2 }, r.still)
  end)

  it("numbers stand for strings and numeric strings for numbers, as in Lua's own library", function()
    local r = {}
    run(function()
      local fd = assert(fs.open(path("conv"), "w+"))
      r.wrote = { fs.write(fd, 12.5) }
      assert.is_nil(fs.close(fd))
      fd = assert(fs.open(path("conv"), "r"))
      r.read = { fs.read(fd, "3") }
      assert.is_nil(fs.close(fd))
    end)
    assert.same({ 4 }, r.wrote)
    assert.same({ "12." }, r.read)
  end)
end)

describe("lunet.fs at exit", function()
  it("releases coroutines still waiting on requests when the state closes", function()
    local rc, out, err = H.lunet_run([[
      local lunet = require("lunet")
      local fs = require("lunet.fs")
      for _ = 1, 20 do lunet.spawn(function() fs.stat("."); fs.scandir(".") end) end
      print("exiting")
      os.exit(0, true)
    ]])
    assert.equal(0, rc, err)
    assert.equal("exiting\n", out)
    if H.build:match("debug") then
      assert.matches("balance=0", err)
    end
  end)
end)
