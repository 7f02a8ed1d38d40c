-- lunet.socket: TCP and Unix stream sockets.
local H = require("spec.helper")
local lunet = H.lunet
local socket = require("lunet.socket")

local function listener(host)
  local l = assert(socket.listen("tcp", host or "127.0.0.1", 0))
  local _, port = socket.getsockname(l)
  return l, port
end

-- An accepted server end and a connected client end.
local function pair()
  local l, port = listener()
  local server
  lunet.spawn(function() server = assert(socket.accept(l)) end)
  local client = assert(socket.connect("127.0.0.1", port))
  while not server do lunet.sleep(0) end
  socket.close(l)
  return server, client
end

local function read_n(conn, n)
  local parts, got = {}, 0
  while got < n do
    local d, err = socket.read(conn)
    if not d then return table.concat(parts), err end
    parts[#parts + 1] = d
    got = got + #d
  end
  return table.concat(parts)
end

local open_fds = H.open_fds

describe("lunet.socket", function()
  it("can be required on its own from plain luajit", function()
    local rc, out, err = H.luajit([[
      local socket = require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      print(type(l), package.loaded.lunet == nil)
      socket.close(l)
    ]])
    assert.equal(0, rc, err)
    assert.equal("userdata\ttrue\n", out)
  end)

  describe("handles", function()
    it("are userdata with methods and a descriptive tostring", function()
      local l = listener()
      assert.equal("userdata", type(l))
      assert.matches("^tcp listener: ", tostring(l))
      assert.equal(l.accept, socket.accept)
      l:close()
      assert.equal("tcp listener (closed)", tostring(l))
      H.run(function()
        local s, c = pair()
        assert.matches("^tcp connection: ", tostring(c))
        assert.is_nil(c:write("x"))
        assert.equal("x", s:read())
        s:close(); c:close()
        assert.equal("tcp connection (closed)", tostring(c))
      end)
    end)

    it("reject values that are not sockets without crashing", function()
      local fake = newproxy(true)
      for _, v in ipairs({ 1, "x", {}, true, fake, io.stdout }) do
        assert.same({ nil, "invalid socket handle" }, { socket.getpeername(v) })
        assert.same({ nil, "invalid socket handle" }, { socket.getsockname(v) })
        assert.same({ nil, "invalid socket handle" }, { socket.close(v) })
        H.run(function()
          assert.same({ nil, "not a listening socket" }, { socket.accept(v) })
          assert.same({ nil, "invalid socket handle" }, { socket.read(v) })
          assert.equal("invalid socket handle", socket.write(v, "x"))
        end)
      end
      H.run(function()
        assert.same({ nil, "not a listening socket" }, { socket.accept(nil) })
      end)
    end)

    it("accept on a client connection returns not a listening socket", function()
      H.run(function()
        local s, c = pair()
        assert.same({ nil, "not a listening socket" }, { socket.accept(c) })
        assert.same({ nil, "not a listening socket" }, { s:accept() })
        s:close(); c:close()
      end)
    end)

    it("read and write on a listener return not a connection", function()
      local l = listener()
      H.run(function()
        assert.same({ nil, "not a connection" }, { socket.read(l) })
        assert.equal("not a connection", socket.write(l, "x"))
      end)
      l:close()
    end)

    it("close is idempotent, and closed handles return errors", function()
      local l = listener()
      assert.is_nil(socket.close(l))
      assert.is_nil(socket.close(l))
      H.run(function() assert.same({ nil, "listener closed" }, { socket.accept(l) }) end)
      assert.same({ nil, "socket closed" }, { socket.getsockname(l) })
      H.run(function()
        local s, c = pair()
        c:close(); c:close()
        assert.same({ nil, "socket closed" }, { c:read() })
        assert.equal("socket closed", c:write("x"))
        assert.same({ nil, "socket closed" }, { c:getpeername() })
        assert.same({ nil, nil }, { s:read() }) -- the peer sees EOF
        s:close()
      end)
    end)

    it("yielding functions raise outside a coroutine", function()
      local l = listener()
      assert.has_error(function() socket.accept(l) end, "socket.accept must be called from coroutine")
      assert.has_error(function() socket.connect("127.0.0.1", 1) end, "socket.connect must be called from coroutine")
      assert.has_error(function() socket.read(l) end, "socket.read must be called from coroutine")
      assert.has_error(function() socket.write(l, "") end, "socket.write must be called from coroutine")
      l:close()
    end)

    it("a listener made in a finished coroutine survives collectgarbage and accepts", function()
      local l, port
      H.run(function() l, port = listener() end)
      collectgarbage(); collectgarbage()
      H.run(function()
        local got
        lunet.spawn(function() got = assert(socket.accept(l)) end)
        local c = assert(socket.connect("127.0.0.1", port))
        while not got do lunet.sleep(0) end
        c:close(); got:close(); l:close()
      end)
    end)

    it("an unreferenced handle is closed by its finaliser", function()
      local port
      do
        local l
        l, port = listener()
      end
      collectgarbage(); collectgarbage()
      H.run(function()
        assert.same({ nil, "connection refused" }, { socket.connect("127.0.0.1", port) })
      end)
    end)
  end)

  describe("closing wakes waiters", function()
    it("in accept", function()
      local l = listener()
      local r
      H.run(function()
        lunet.spawn(function() r = { socket.accept(l) } end)
        lunet.sleep(1)
        socket.close(l)
      end)
      assert.same({ nil, "listener closed" }, r)
    end)

    it("a second accept gets another accept already in progress", function()
      local l = listener()
      local r
      H.run(function()
        lunet.spawn(function() socket.accept(l) end)
        r = { socket.accept(l) }
        socket.close(l)
      end)
      assert.same({ nil, "another accept already in progress" }, r)
    end)

    it("in read, and a second reader is refused", function()
      local r1, r2
      H.run(function()
        local s, c = pair()
        lunet.spawn(function() r1 = { c:read() } end)
        r2 = { c:read() }
        c:close()
        lunet.sleep(0)
        s:close()
      end)
      assert.same({ nil, "another read already in progress" }, r2)
      assert.same({ nil, "socket closed" }, r1)
    end)

    it("in write", function()
      local errs = {}
      H.run(function()
        local s, c = pair()
        local big = string.rep("w", 32 * 1024 * 1024) -- far more than the socket buffers hold
        for i = 1, 3 do
          lunet.spawn(function() errs[i] = c:write(big) end)
        end
        lunet.sleep(5)
        c:close()
        while #errs < 3 do lunet.sleep(1) end
        s:close()
      end)
      assert.same({ "socket closed", "socket closed", "socket closed" }, errs)
    end)

    it("closing a listener closes queued, unaccepted connections", function()
      local l, port = listener()
      local r
      H.run(function()
        local c = assert(socket.connect("127.0.0.1", port))
        lunet.sleep(5) -- the library accepts it into the queue
        socket.close(l)
        r = { c:read() }
        c:close()
      end)
      assert.is_nil(r[1])
      assert.is_true(r[2] == nil or r[2] == "connection reset by peer")
    end)
  end)

  describe("reading and writing", function()
    it("round-trips any bytes, NULs included, and numbers as strings", function()
      H.run(function()
        local s, c = pair()
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        local all = table.concat(bytes) .. "\0\0end"
        assert.is_nil(c:write(all))
        assert.equal(all, read_n(s, #all))
        assert.is_nil(c:write(12345))
        assert.equal("12345", read_n(s, 5))
        assert.is_nil(c:write(""))
        assert.is_nil(c:write({}))
        assert.has_error(function() c:write({ true }) end)
        assert.has_error(function() c:write() end)
        s:close(); c:close()
      end)
    end)

    it("EOF is sticky", function()
      H.run(function()
        local s, c = pair()
        c:write("last")
        c:close()
        assert.equal("last", s:read())
        assert.same({ nil, nil }, { s:read() })
        assert.same({ nil, nil }, { s:read() })
        s:close()
      end)
    end)

    it("a 64 MiB write arrives whole", function()
      local n = 64 * 1024 * 1024
      local received
      H.run(function()
        local s, c = pair()
        local data = string.rep("0123456789abcdef", n / 16)
        local werr = "not done"
        lunet.spawn(function() werr = c:write(data) end)
        received = s:read(n) -- one framed read of 64 MiB
        assert.is_nil(werr)
        assert.equal(data, received)
        s:close(); c:close()
      end, 60000)
      assert.equal(n, #received)
    end)

    it("four concurrent writers never interleave", function()
      local got
      H.run(function()
        local s, c = pair()
        local chunk = 3 * 1024 * 1024 + 7
        for i = 1, 4 do
          lunet.spawn(function() assert(c:write(string.rep(string.char(64 + i), chunk)) == nil) end)
        end
        got = read_n(s, 4 * chunk)
        s:close(); c:close()
      end, 60000)
      -- Four runs of one letter each, in call order.
      assert.is_truthy(got:match("^A+B+C+D+$"))
      for _, ch in ipairs({ "A", "B", "C", "D" }) do
        local _, count = got:gsub(ch, "")
        assert.equal(3 * 1024 * 1024 + 7, count)
      end
    end)

    it("writing after the peer vanished is an error, never SIGPIPE", function()
      local err
      H.run(function()
        local s, c = pair()
        s:close()
        lunet.sleep(5)
        for _ = 1, 50 do
          err = c:write(string.rep("z", 65536))
          if err then break end
          lunet.sleep(1)
        end
        c:close()
      end)
      assert.is_true(err == "broken pipe" or err == "connection reset by peer", tostring(err))
    end)

    it("honours read buffer sizes from 1 byte to 1 MiB", function()
      finally(function() socket.set_read_buffer_size(65536) end)
      for _, size in ipairs({ 1, 7, 4096, 65536, 1024 * 1024 }) do
        socket.set_read_buffer_size(size)
        H.run(function()
          local s, c = pair()
          local total = math.min(size * 3 + 5, 3 * 1024 * 1024)
          if size == 1 then total = 300 end
          lunet.spawn(function() c:write(string.rep("r", total)) end)
          local got, largest = 0, 0
          while got < total do
            local d = assert(s:read())
            got = got + #d
            if #d > largest then largest = #d end
          end
          assert.equal(total, got)
          assert.is_true(largest <= size, ("read %d bytes with size %d"):format(largest, size))
          s:close(); c:close()
        end, 30000)
      end
    end)

    it("set_read_buffer_size rejects bad sizes", function()
      for _, v in ipairs({ 0, -1, 16 * 1024 * 1024 + 1, 1.5, "x", {} }) do
        assert.has_error(function() socket.set_read_buffer_size(v) end)
      end
      socket.set_read_buffer_size(16 * 1024 * 1024)
      socket.set_read_buffer_size(65536)
    end)
  end)

  describe("connecting", function()
    it("1,000 refused connects leave the open-fd count flat", function()
      local before = open_fds()
      H.run(function()
        for _ = 1, 1000 do
          local c, err = socket.connect("127.0.0.1", 1)
          assert.is_nil(c)
          assert.equal("connection refused", err)
        end
      end, 60000)
      -- A few more loop iterations for the last close callbacks (bounded, unlike
      -- a bare lunet.run(), which a coroutine left over by a failed test could hold).
      H.run(function() H.eventually(function() return open_fds() <= before end, 5000) end)
      assert.equal(before, open_fds())
    end)

    it("validates host and port", function()
      H.run(function()
        for _, args in ipairs({ { "127.0.0.1", 0 }, { "127.0.0.1", 70000 }, { "127.0.0.1", "x" }, { "", 80 }, { nil, 80 }, { {}, 80 } }) do
          assert.same({ nil, "invalid host or port" }, { socket.connect(args[1], args[2]) })
        end
        local c, err = socket.connect("bad\0host", 80)
        assert.is_nil(c)
        assert.equal("invalid host or port", err)
      end)
    end)

    it("reaches localhost and ::1", function()
      for _, host in ipairs({ "localhost", "::1", "[::1]" }) do
        H.run(function()
          local l, port = listener(host)
          local s
          lunet.spawn(function() s = assert(socket.accept(l)) end)
          local c = assert(socket.connect(host, port))
          c:write("hi " .. host)
          while not s do lunet.sleep(0) end
          assert.equal("hi " .. host, s:read())
          local peer = c:getpeername()
          assert.is_truthy(peer == "127.0.0.1:" .. port or peer == "[::1]:" .. port, peer)
          c:close(); s:close(); l:close()
        end)
      end
    end)

    it("getsockname and getpeername report addresses", function()
      local l, port = listener("::1")
      assert.same({ "::1", port }, { socket.getsockname(l) })
      l:close()
      H.run(function()
        local s, c = pair()
        local host, cport = c:getsockname()
        assert.equal("127.0.0.1", host)
        assert.equal("127.0.0.1:" .. cport, s:getpeername())
        s:close(); c:close()
      end)
    end)
  end)

  describe("listening", function()
    it("refuses non-loopback addresses without the launcher flag, allows them with it", function()
      assert.same({ nil, "binding to non-loopback addresses requires --dangerously-skip-loopback-restriction flag" },
        { socket.listen("tcp", "0.0.0.0", 0) })
      assert.same({ nil, "binding to non-loopback addresses requires --dangerously-skip-loopback-restriction flag" },
        { socket.listen("tcp", "::", 0) })
      local src = [[
        local socket = require("lunet.socket")
        local l, err = socket.listen("tcp", "0.0.0.0", 0)
        print(l and "listening" or err)
        if l then socket.close(l) end
      ]]
      local rc, out = H.lunet_run(src)
      assert.equal(0, rc)
      assert.matches("requires %-%-dangerously", out)
      rc, out = H.lunet_run(src, "--dangerously-skip-loopback-restriction")
      assert.equal(0, rc)
      assert.equal("listening\n", out)
    end)

    it("reports a busy port", function()
      local l, port = listener()
      local l2, err = socket.listen("tcp", "127.0.0.1", port)
      assert.is_nil(l2)
      assert.matches("^failed to %a+: address already in use$", err)
      l:close()
    end)

    it("rejects other protocols and bad arguments", function()
      assert.same({ nil, "only tcp and unix are supported" }, { socket.listen("udp", "127.0.0.1", 0) })
      assert.same({ nil, "only tcp and unix are supported" }, { socket.listen(nil) })
      assert.same({ nil, "invalid host or port" }, { socket.listen("tcp", "127.0.0.1", 65536) })
      assert.same({ nil, "invalid host or port" }, { socket.listen("tcp", "127.0.0.1", -1) })
      assert.same({ nil, "invalid host or port" }, { socket.listen("tcp", {}, 0) })
    end)
  end)

  describe("unix sockets", function()
    local function tmp_path()
      local p = os.tmpname()
      os.remove(p)
      return p .. ".sock"
    end

    it("listen, connect, exchange, and remove the socket file on close", function()
      local path = tmp_path()
      local l = assert(socket.listen("unix", path))
      assert.matches("^unix listener", tostring(l))
      assert.equal(path, socket.getsockname(l))
      H.run(function()
        local s
        lunet.spawn(function() s = assert(socket.accept(l)) end)
        local c = assert(socket.connect(path))
        c:write("over unix")
        while not s do lunet.sleep(0) end
        assert.equal("over unix", s:read())
        assert.equal("unix", s:getpeername())
        c:close(); s:close()
      end)
      l:close()
      assert.is_nil(io.open(path, "r"))
    end)

    it("replaces a stale socket file", function()
      local path = tmp_path()
      -- A socket file whose listener is gone: made by a process that exits.
      local rc = H.luajit(([[
        local socket = require("lunet.socket")
        local l = assert(socket.listen("unix", %q))
        os.exit(0)  -- no close: the file stays behind
      ]]):format(path))
      assert.equal(0, rc)
      assert.equal(0, (H.sh("test -S " .. path)))
      local l, err = socket.listen("unix", path)
      assert.is_truthy(l, err)
      l:close()
    end)

    it("leaves a regular file in the way alone and fails", function()
      local path = tmp_path()
      local f = assert(io.open(path, "w"))
      f:write("precious")
      f:close()
      local l, err = socket.listen("unix", path)
      assert.is_nil(l)
      assert.matches("address already in use", err)
      f = assert(io.open(path))
      assert.equal("precious", f:read("*a"))
      f:close()
      os.remove(path)
    end)

    it("refuses to take over a live socket", function()
      local path = tmp_path()
      local l = assert(socket.listen("unix", path))
      local l2, err = socket.listen("unix", path)
      assert.is_nil(l2)
      assert.matches("address already in use", err)
      l:close()
    end)

    it("connect to a missing path fails cleanly", function()
      H.run(function()
        local c, err = socket.connect(os.tmpname() .. ".missing/x.sock")
        assert.is_nil(c)
        assert.is_truthy(err == "no such file or directory" or err == "not a directory", err)
      end)
    end)
  end)

  it("1,000 concurrent connections each doing 20 round trips", function()
    local rc, out, err = H.lunet_run([[
      local lunet = require("lunet")
      local socket = require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      local N, R = 1000, 20
      lunet.spawn(function()
        for _ = 1, N do
          local c = assert(socket.accept(l))
          lunet.spawn(function()
            while true do
              local d = c:read()
              if not d then break end
              c:write("re:" .. d)
            end
            c:close()
          end)
        end
        l:close()
      end)
      local done, bad = 0, 0
      for i = 1, N do
        lunet.spawn(function()
          local c = assert(socket.connect("127.0.0.1", port))
          for r = 1, R do
            local msg = i .. "/" .. r
            c:write(msg)
            if c:read() ~= "re:" .. msg then bad = bad + 1 end
          end
          c:close()
          done = done + 1
        end)
      end
      lunet.run()
      print(done, bad)
    ]])
    assert.equal(0, rc, err)
    assert.equal("1000\t0\n", out)
  end)
end)
