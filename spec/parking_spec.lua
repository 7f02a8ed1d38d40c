-- socket.parking / socket.park / lot:next(): idle connections that wait
-- without a task, handed to worker tasks when their input arrives.
local H = require("spec.helper")
local lunet = H.lunet
local socket = require("lunet.socket")

local CERTS = H.test_certs()

-- `n` accepted server ends and their client ends, over TLS when `tls`.
local function pairs_of(n, tls)
  local l = assert(socket.listen("tcp", "127.0.0.1", 0,
    tls and { tls = { cert_file = CERTS .. "/server.pem", key_file = CERTS .. "/server.key" } } or nil))
  local _, port = socket.getsockname(l)
  local servers, clients = {}, {}
  lunet.spawn(function()
    for i = 1, n do servers[i] = assert(socket.accept(l)) end
  end)
  for i = 1, n do
    if tls then
      -- (The handshake ends once the server side reads, so connect in tasks.)
      lunet.spawn(function()
        clients[i] = assert(socket.connect("127.0.0.1", port, { tls = { ca_file = CERTS .. "/ca.pem" } }))
      end)
    else
      clients[i] = assert(socket.connect("127.0.0.1", port))
    end
  end
  assert(H.eventually(function() return #servers == n end))
  socket.close(l)
  return servers, clients
end

local function close_all(list)
  for _, c in pairs(list) do socket.close(c) end
end

describe("socket.parking", function()
  it("hands a parked connection's next input to the task waiting in next()", function()
    H.run(function()
      local s, c = pairs_of(3)
      local lot = socket.parking()
      for i = 1, 3 do assert.is_true(socket.park(s[i], lot)) end
      assert.same({ 3, 0 }, { lot:count() })
      local got = {}
      local worker = lunet.spawn(function()
        for _ = 1, 3 do
          local conn, data, err, waiting = lot:next()
          got[#got + 1] = { conn, data, err, waiting }
        end
      end)
      socket.write(c[2], "two")
      socket.write(c[3], "three")
      socket.write(c[1], "one")
      assert(worker:join(5000))
      table.sort(got, function(a, b) return a[2] < b[2] end)
      assert.same({ s[1], "one", nil, 0 }, got[1])
      assert.same({ s[3], "three", nil, 0 }, got[2])
      assert.same({ s[2], "two", nil, 0 }, got[3])
      assert.same({ 0, 0 }, { lot:count() }, "handed-out connections leave the lot")
      -- A handed-out connection is an ordinary connection again.
      socket.write(c[1], "more")
      assert.equal("more", socket.read(s[1]))
      close_all(s); close_all(c)
      lot:close()
    end)
  end)

  it("queues connections that become ready while nobody waits; next() takes them without waiting", function()
    H.run(function()
      local s, c = pairs_of(2)
      local lot = socket.parking()
      socket.park(s[1], lot)
      socket.park(s[2], lot)
      socket.write(c[1], "a")
      socket.write(c[2], "b")
      assert(H.eventually(function() local _, ready = lot:count() return ready == 2 end))
      socket.write(c[1], "a2") -- joins what is queued
      lunet.sleep(20)
      local c1, d1 = lot:next()
      local c2, d2 = lot:next()
      assert.same({ s[1], "aa2", s[2], "b" }, { c1, d1, c2, d2 })
      close_all(s); close_all(c)
      lot:close()
    end)
  end)

  it("a connection with input already buffered is ready at once, and a waiting task is woken for it", function()
    H.run(function()
      local s, c = pairs_of(1)
      local lot = socket.parking()
      socket.write(c[1], "hello")
      assert.equal("hel", socket.read(s[1], 3))
      local got
      local worker = lunet.spawn(function() got = { lot:next() } end)
      assert.is_true(socket.park(s[1], lot))
      assert(worker:join(2000))
      assert.same({ s[1], "lo", nil, 0 }, got)
      close_all(s); close_all(c)
      lot:close()
    end)
  end)

  it("reports the end of the stream, an idle timeout, and errors as conn, nil, err", function()
    H.run(function()
      local s, c = pairs_of(3)
      local lot = socket.parking()
      socket.park(s[1], lot)
      socket.park(s[2], lot, 50)
      socket.park(s[3], lot, 30000)
      socket.close(c[1])
      local results = {}
      for _ = 1, 2 do
        local conn, data, err = lot:next()
        results[conn == s[1] and 1 or 2] = { data, err }
      end
      assert.same({ { nil, "closed" }, { nil, "timeout" } }, results)
      assert.same({ 1, 0 }, { lot:count() }, "the connection with a long timeout still waits")
      close_all(s); close_all(c)
      assert.same({ 0, 0 }, { lot:count() }, "closing a parked connection takes it out")
      lot:close()
    end)
  end)

  it("serves the latest waiter first and tells how many others still wait", function()
    H.run(function()
      local s, c = pairs_of(1)
      local lot = socket.parking()
      local order = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = lunet.spawn(function()
          local conn, data, err, waiting = lot:next()
          order[#order + 1] = { i, data, waiting }
          if conn then socket.close(conn) end
        end)
      end
      assert.equal(3, lot:waiting())
      socket.park(s[1], lot)
      socket.write(c[1], "x")
      assert(H.eventually(function() return #order == 1 end))
      assert.same({ 3, "x", 2 }, order[1])
      assert.equal(0, lot:close(), "it held no connection")
      for i = 1, 3 do tasks[i]:join(2000) end
      close_all(c)
    end)
  end)

  it("lot:close() closes what it holds and ends every wait with nil, 'closed'", function()
    H.run(function()
      local s, c = pairs_of(3)
      local lot = socket.parking()
      socket.park(s[1], lot)
      socket.park(s[2], lot, 10000)
      socket.write(c[3], "queued")
      socket.park(s[3], lot) -- ready at once: queued
      local ends = {}
      local waiter = lunet.spawn(function() ends[1] = { lot:next() } end)
      lunet.sleep(10)
      -- (The waiter took the queued connection; wait for a second one.)
      local waiter2 = lunet.spawn(function() ends[2] = { lot:next() } end)
      assert(waiter:join(2000))
      assert.equal(s[3], ends[1][1])
      assert.equal(2, lot:close())
      assert(waiter2:join(2000))
      assert.same({ nil, "closed" }, ends[2])
      assert.same({ nil, "closed" }, { lot:next() })
      assert.same({ nil, "parking lot closed" }, { socket.park(s[3], lot) })
      for i = 1, 2 do
        socket.settimeout(c[i], 2000)
        assert.same({}, { socket.read(c[i]) }, "the lot closed the server end")
      end
      assert.equal(0, lot:close(), "closing twice is harmless")
      close_all(s); close_all(c)
    end)
  end)

  it("refuses reads, unread and a second park on a parked connection", function()
    H.run(function()
      local s, c = pairs_of(1)
      local lot = socket.parking()
      socket.park(s[1], lot)
      assert.same({ nil, "the connection is parked" }, { socket.read(s[1]) })
      assert.same({ nil, "the connection is parked" }, { socket.unread(s[1], "x") })
      assert.same({ nil, "the connection is already parked" }, { socket.park(s[1], lot) })
      -- Writing is fine while parked.
      assert.is_nil(socket.write(s[1], "pong"))
      assert.equal("pong", socket.read(c[1]))
      close_all(s); close_all(c)
      lot:close()
    end)
  end)

  it("max_waiting: a surplus waiter gets nil, 'surplus' at once", function()
    H.run(function()
      local lot = socket.parking({ max_waiting = 2 })
      local t1 = lunet.spawn(function() return lot:next() end)
      local t2 = lunet.spawn(function() return lot:next() end)
      assert.same({ nil, "surplus" }, { lot:next() })
      lot:close()
      assert.same({ true, nil, "closed" }, { t1:join(1000) })
      t2:join(1000)
    end)
  end)

  it("a waiter can be cancelled or time out through its task's deadline, and leaves the lot", function()
    H.run(function()
      local lot = socket.parking()
      local t = lunet.spawn(function() return lot:next() end)
      assert.equal(1, lot:waiting())
      t:cancel()
      assert.same({ false, "cancelled" }, { t:join(1000) })
      assert.equal(0, lot:waiting())
      local r = { lunet.deadline(30, function() return lot:next() end) }
      assert.same({ nil, "timeout" }, r)
      assert.equal(0, lot:waiting())
      lot:close()
    end)
  end)

  it("a task waiting for parked connections keeps the program running", function()
    -- The peer is another process that writes late: nothing else of this
    -- one (no listener, no timer) keeps its loop alive meanwhile.
    local rc, out = H.lunet_run([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      os.execute(("python3 -c 'import socket,time; s=socket.create_connection((\"127.0.0.1\",%d)); "
        .. "time.sleep(0.4); s.sendall(b\"late\"); time.sleep(0.5)' &"):format(port))
      local lot = socket.parking()
      lunet.spawn(function()
        local conn = assert(socket.accept(l))
        socket.close(l)
        socket.park(conn, lot)
        local c, data = lot:next()
        print("got " .. tostring(data))
        socket.close(c)
        lot:close()
      end)
    ]], "", 20)
    assert.equal(0, rc)
    assert.matches("got late", out)
  end)

  it("TLS connections finish their handshake while parked and hand over plaintext", function()
    H.run(function()
      local s, c = pairs_of(2, true)
      local lot = socket.parking()
      socket.park(s[1], lot, 5000)
      socket.park(s[2], lot, 5000)
      assert(H.eventually(function() return c[1] and c[2] end))
      socket.write(c[2], "secret")
      local conn, data = lot:next()
      assert.same({ s[2], "secret" }, { conn, data })
      socket.write(s[2], "reply")
      assert.equal("reply", socket.read(c[2]))
      socket.close(c[1])
      local conn1, data1, err1 = lot:next()
      assert.equal(s[1], conn1)
      assert.is_nil(data1)
      assert.is_string(err1)
      close_all(s); close_all(c)
      lot:close()
    end)
  end)

  it("holds no task per connection: 500 parked connections cost far less Lua memory than coroutines", function()
    H.run(function()
      local s, c = pairs_of(500)
      local lot = socket.parking()
      collectgarbage()
      local before = collectgarbage("count")
      for i = 1, 500 do socket.park(s[i], lot, 60000) end
      collectgarbage()
      local per = (collectgarbage("count") - before) * 1024 / 500
      -- A coroutine waiting in socket.read costs more than 500 bytes.
      assert.is_true(per < 200, ("%.0f bytes per parked connection"):format(per))
      assert.equal(500, lot:close())
      close_all(c)
    end, 30000)
  end)

  it("leaks nothing over many park/next cycles and when dropped without close", function()
    local fds0 = H.open_fds()
    H.run(function()
      local s, c = pairs_of(4)
      local lot = socket.parking()
      for i = 1, 4 do socket.park(s[i], lot, 10000) end
      for round = 1, 500 do
        local i = round % 4 + 1
        socket.write(c[i], "r")
        local conn, data = lot:next()
        assert.equal("r", data)
        assert.is_true(socket.park(conn, lot, 10000))
      end
      assert.same({ 4, 0 }, { lot:count() })
      lot = nil
      collectgarbage()
      collectgarbage()
      -- The dropped lot closed its connections.
      for i = 1, 4 do
        socket.settimeout(c[i], 2000)
        assert.same({}, { socket.read(c[i]) })
      end
      close_all(c)
    end)
    collectgarbage()
    assert.equal(fds0, H.open_fds())
  end)

  it("raises for programmer errors and returns nil, err for handles", function()
    local lot = socket.parking()
    assert.has_error(function() socket.parking(5) end)
    assert.has_error(function() socket.parking({ max_waiting = 0 }) end)
    assert.has_error(function() socket.parking({ max_waiting = 1.5 }) end)
    assert.has_error(function() socket.park(nil, "lot") end)
    assert.has_error(function() socket.park(nil, lot, "soon") end)
    assert.has_error(function() socket.park(nil, lot, -1) end)
    assert.same({ nil, "invalid socket handle" }, { socket.park("x", lot) })
    assert.has_error(function() lot.count("x") end)
    assert.has_error(function() lot:next() end, "lot._next must be called from coroutine")
    assert.matches("parking lot: 0 parked", tostring(lot))
    lot:close()
    assert.equal("parking lot (closed)", tostring(lot))
  end)
end)
