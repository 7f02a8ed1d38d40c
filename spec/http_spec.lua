-- lunet.http (server) and lunet.httpc (client): in-process checks with raw
-- sockets for the exact bytes, and real clients (curl, Python's http.client
-- and websockets) against spec/fixtures/http_app.lua in a child process.
local H = require("spec.helper")
local lunet = H.lunet
local socket = require("lunet.socket")
local http = require("lunet.http")
local httpc = require("lunet.httpc")

local PY = "/usr/bin/python3"

-- Everything `c` receives until the peer closes it (or a read fails).
local function read_all(c)
  local got = {}
  while true do
    local d = socket.read(c)
    if not d then break end
    got[#got + 1] = d
  end
  return table.concat(got)
end

-- Sends `raw` on a new connection and reads until the server closes it
-- (or `ms` pass); returns everything received.
local function exchange(port, raw, ms)
  local c = assert(socket.connect("127.0.0.1", port))
  if raw ~= "" then assert(socket.write(c, raw) == nil) end
  socket.settimeout(c, ms or 3000)
  local r = read_all(c)
  socket.close(c)
  return r
end

-- Runs `body(port, srv)` against an in-process server with `handler`.
local function with_server(opts, handler, body)
  H.run(function()
    opts.port = 0
    local srv = assert(http.serve(opts, handler))
    local _, port = srv:address()
    local ok, err = pcall(body, port, srv)
    srv:close()
    assert(H.eventually(function() return srv:connections() == 0 end))
    if not ok then error(err, 0) end
  end, 20000)
end

-- A body function for httpc that gives the strings of `list`, then nil.
local function source(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

local function echo(req)
  if req.path == "/echo" then
    local b, err = req:body()
    if not b then return 200, nil, "unreachable " .. tostring(err) end
    return 200, { ["X-Len"] = #b }, b
  end
  return 200, { ["Content-Type"] = "text/plain" }, req.method .. " " .. req.path .. "?" .. req.query
end

-- Reads the whole request body through req:body_reader(opts): the pieces,
-- and the error that ended the reading (nil at the body's end).
local function pieces_of(req, opts)
  local r = req:body_reader(opts)
  local got = {}
  while true do
    local p, err = r:read()
    if not p then return got, err end
    got[#got + 1] = p
  end
end

describe("lunet.http server", function()
  it("parses the request: method, path, query, version, lower-case headers", function()
    local seen
    with_server({}, function(req)
      seen = { req.method, req.path, req.query, req.version, req.headers["x-thing"], req.headers.cookie,
        req.headers.accept, req.target }
      return 200, nil, "ok"
    end, function(port)
      local r = exchange(port, "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Thing: v\r\nCookie: a=1\r\n"
        .. "Cookie: b=2\r\nAccept: a\r\nAccept: b\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 200 OK\r\n", r)
      assert.matches("\r\nContent%-Length: 2\r\n", r)
      assert.matches("\r\nConnection: close\r\n", r)
      assert.matches("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", r)
      assert.matches("\r\n\r\nok$", r)
    end)
    assert.same({ "GET", "/a/b", "x=1&y=2", "1.1", "v", "a=1; b=2", "a, b", "/a/b?x=1&y=2" }, seen)
  end)

  it("keeps connections alive and answers pipelined requests in order", function()
    with_server({}, echo, function(port)
      local r = exchange(port, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        .. "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
        .. "GET /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      local bodies = {}
      for b in r:gmatch("\r\n\r\n([^H]*)") do bodies[#bodies + 1] = b end
      assert.same({ "GET /1?", "hello", "abcde", "GET /4?" }, bodies)
      assert.equal(4, select(2, r:gsub("HTTP/1.1 200 OK", "")))
    end)
  end)

  it("HTTP/1.0: closes unless asked to keep alive", function()
    with_server({}, echo, function(port)
      local r = exchange(port, "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
      assert.equal(1, select(2, r:gsub("HTTP/1.1 200", "")))
      assert.matches("Connection: close", r)
      r = exchange(port, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
      assert.equal(2, select(2, r:gsub("HTTP/1.1 200", "")))
      assert.matches("Connection: keep%-alive", r)
    end)
  end)

  it("answers HEAD with the length and no body, 204 without a length", function()
    with_server({}, function(req)
      if req.path == "/none" then return 204, nil, nil end
      return 200, nil, "12345"
    end, function(port)
      local r = exchange(port, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /none HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 200 OK\r\n.-Content%-Length: 5\r\n\r\nHTTP/1.1 204 No Content\r\n", r)
      assert.not_matches("12345", r)
      assert.not_matches("204 No Content\r\n.-Content%-Length", r)
    end)
  end)

  -- Each bad request gets its status and a closed connection; the server
  -- goes on serving (checked after each one).
  local BAD = {
    { "garbage request line", "GARBAGE\r\n\r\n", 400 },
    { "space in the method", "G T / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
    { "obs-fold header", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n", 400 },
    { "space before the colon", "GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n", 400 },
    { "missing Host", "GET / HTTP/1.1\r\n\r\n", 400 },
    { "duplicate Content-Length", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", 400 },
    { "Content-Length and chunked", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
    { "negative Content-Length", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", 400 },
    { "Content-Length past 2^53", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400 },
    { "huge Content-Length", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999\r\n\r\n", 413 },
    { "body over the limit", "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n", 413 },
    { "chunked body over the limit", "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "400\r\n" .. ("x"):rep(1024) .. "\r\n1\r\nx\r\n0\r\n\r\n", 413 },
    { "bad chunk size", "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400 },
    { "huge chunk size", "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", 400 },
    { "chunk without its CRLF", "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400 },
    { "unknown transfer coding", "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
    { "chunked in HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
    { "too many header fields", "GET / HTTP/1.1\r\nHost: h\r\n" .. ("X: y\r\n"):rep(11) .. "\r\n", 431 },
    { "header too large", "GET / HTTP/1.1\r\nHost: h\r\nX: " .. ("y"):rep(2100) .. "\r\n\r\n", 431 },
    { "endless header", "GET / HTTP/1.1\r\nHost: h\r\nX: " .. ("y"):rep(2100), 431 },
    { "request line too long", "GET /" .. ("a"):rep(600) .. " HTTP/1.1\r\nHost: h\r\n\r\n", 414 },
    { "HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505 },
    { "unknown expectation", "GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417 },
  }
  it("rejects malformed and oversized requests with the right status and keeps serving", function()
    with_server({ limits = { max_body = 1024, max_headers = 10, max_head = 2048, max_line = 512 } }, echo, function(port)
      for _, case in ipairs(BAD) do
        local name, raw, status = case[1], case[2], case[3]
        local r = exchange(port, raw)
        assert.equal(tostring(status), r:match("^HTTP/1.1 (%d+)"), name .. ": " .. r)
        assert.matches("Connection: close\r\n", r, 1, true)
        assert.equal(1, select(2, r:gsub("HTTP/1.1", "")), name .. ": one response only")
        local ok = exchange(port, "GET /fine HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert.matches("GET /fine%?$", ok, nil, name)
      end
    end)
  end)

  it("survives randomly mutated requests: every answer is a status line or a close", function()
    math.randomseed(15)
    local base = "POST /echo?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
      .. "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n"
    local noise = { "\r", "\n", ":", " ", "\0", "\255", "0", "-", ",", "chunked", "Content-Length: 3\r\n" }
    with_server({ limits = { max_body = 1024, max_headers = 10, max_head = 2048, max_line = 512 } }, echo, function(port)
      for _ = 1, 150 do
        local m = base
        for _ = 1, math.random(1, 4) do
          local at = math.random(1, #m)
          local r = math.random(3)
          if r == 1 then
            m = m:sub(1, at - 1) .. noise[math.random(#noise)] .. m:sub(at + 1)
          elseif r == 2 then
            m = m:sub(1, at) .. noise[math.random(#noise)] .. m:sub(at + 1)
          else
            m = m:sub(1, at)
          end
        end
        local c = assert(socket.connect("127.0.0.1", port))
        socket.write(c, m)
        socket.shutdown(c) -- the server sees the end of what was sent
        socket.settimeout(c, 3000)
        local r = read_all(c)
        socket.close(c)
        if r ~= "" then
          assert.matches("^HTTP/1%.1 %d%d%d ", r, nil, ("%q"):format(m))
        end
      end
      assert.matches("GET /fine", exchange(port, "GET /fine HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    end)
  end)

  it("answers 408 to a client sending its head too slowly, serving others meanwhile", function()
    with_server({ timeouts = { header = 300 } }, echo, function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      local t0 = H.now_ms()
      local head = "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
      local answer
      local slow = lunet.spawn(function()
        for i = 1, #head do
          if socket.write(c, head:sub(i, i)) then break end
          lunet.sleep(50)
        end
      end)
      -- Another client is served while the slow one trickles.
      assert.matches("GET /other", exchange(port, "GET /other HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
      socket.settimeout(c, 5000)
      answer = read_all(c)
      assert.matches("^HTTP/1.1 408 Request Timeout\r\n", answer)
      assert.is_true(H.now_ms() - t0 >= 290)
      slow:join()
      socket.close(c)
    end)
  end)

  it("closes a kept-alive connection after the idle timeout without an answer", function()
    with_server({ timeouts = { idle = 100 } }, echo, function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      socket.settimeout(c, 5000)
      -- Nothing is sent, and the server ends the stream (a timeout here fails).
      assert.same({ "" }, { socket.read(c, "*a") })
      socket.close(c)
    end)
  end)

  it("answers 500 to a handler error, reports it with the request, and goes on", function()
    local reports = {}
    with_server({ on_error = function(err, tb, req) reports[#reports + 1] = { err, tb, req.path } end }, function(req)
      if req.path == "/boom" then error("kaboom") end
      if req.path == "/badheader" then return 200, { ["X-Evil"] = "a\r\nSet-Cookie: x" }, "" end
      if req.path == "/badstatus" then return "200" end
      return 200, nil, "fine"
    end, function(port)
      for _, p in ipairs({ "/boom", "/badheader", "/badstatus" }) do
        local r = exchange(port, "GET " .. p .. " HTTP/1.1\r\nHost: h\r\n\r\n")
        assert.matches("^HTTP/1.1 500 Internal Server Error\r\n", r)
        assert.not_matches("Set%-Cookie", r)
      end
      assert.matches("fine$", exchange(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    end)
    assert.equal(3, #reports)
    assert.matches("kaboom", reports[1][1])
    assert.matches("stack traceback", reports[1][2])
    assert.equal("/boom", reports[1][3])
    assert.matches("CR, LF or NUL", reports[2][1])
    assert.matches("status code", reports[3][1])
  end)

  it("reports a handler error through lunet.on_error when the server has no on_error", function()
    local seen
    lunet.on_error(function(err) seen = err end)
    with_server({}, function() error("unhandled in handler") end, function(port)
      assert.matches("^HTTP/1.1 500", exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
      assert.is_true(H.eventually(function() return seen ~= nil end))
    end)
    lunet.on_error(nil)
    assert.matches("unhandled in handler", seen)
  end)

  it("Expect: 100-continue: says Continue when the handler reads the body, closes when it does not", function()
    with_server({}, function(req)
      if req.path == "/echo" then return 200, nil, assert(req:body()) end
      return 403, nil, "no"
    end, function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      socket.settimeout(c, 3000)
      socket.write(c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      assert.equal("HTTP/1.1 100 Continue", socket.read(c, "*l"))
      assert.equal("", socket.read(c, "*l"))
      socket.write(c, "ping")
      local head = assert(socket.read_until(c, "\r\n\r\n"))
      assert.matches("^HTTP/1.1 200 OK", head)
      assert.equal("ping", socket.read(c, 4))
      socket.close(c)
      local r = exchange(port, "POST /other HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      assert.matches("^HTTP/1.1 403 Forbidden\r\n", r)
      assert.not_matches("100 Continue", r)
      assert.matches("Connection: close", r)
    end)
  end)

  it("skips a small unread body to keep the connection", function()
    with_server({}, function(req) return 200, nil, req.path end, function(port)
      local r = exchange(port, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
        .. "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.matches("\r\n\r\n/a.*\r\n\r\n/b$", r)
    end)
  end)

  it("streams responses in chunks and Server-Sent Events", function()
    with_server({}, function(req)
      if req.path == "/sse" then
        local s = req:sse()
        s:send({ event = "greet", id = 7, data = "line one\nline two" })
        s:comment("keep")
        s:send({ data = "plain", retry = 1500 })
        assert.has_error(function() s:send({ event = "a\nb" }) end)
        return
      end
      local w = req:stream(201, { ["X-Kind"] = "stream" })
      assert(w:write("ab"))
      assert(w:write(""))
      assert(w:write("cde"))
      assert(w:close())
      assert.equal("closed", select(2, w:write("x")))
    end, function(port)
      local r = exchange(port, "GET /s HTTP/1.1\r\nHost: h\r\n\r\nGET /sse HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      local s1, s2 = r:match("^(.-)(HTTP/1.1 200.*)$")
      assert.matches("^HTTP/1.1 201 Created\r\n", s1)
      assert.matches("Transfer%-Encoding: chunked\r\n", s1)
      assert.matches("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n$", s1)
      assert.matches("Content%-Type: text/event%-stream\r\n", s2)
      assert.matches("Cache%-Control: no%-cache\r\n", s2)
      local body = s2:match("\r\n\r\n(.*)$"):gsub("%x+\r\n(.-)\r\n", "%1")
      assert.equal("event: greet\nid: 7\ndata: line one\ndata: line two\n\n: keep\n\nretry: 1500\ndata: plain\n\n", body)
    end)
  end)

  it("srv:close() stops accepting, closes idle connections and lets a request in flight finish", function()
    H.run(function()
      local release = false
      local srv = assert(http.serve({ port = 0 }, function()
        while not release do lunet.sleep(5) end
        return 200, nil, "finished"
      end))
      local _, port = srv:address()
      local idle = assert(socket.connect("127.0.0.1", port))
      local busy = assert(socket.connect("127.0.0.1", port))
      socket.write(busy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
      assert(H.eventually(function() return srv:connections() == 2 end))
      lunet.sleep(20)
      srv:close()
      srv:close()
      assert.is_nil((socket.connect("127.0.0.1", port)))
      socket.settimeout(idle, 3000)
      assert.equal("", socket.read(idle, "*a"))
      release = true
      socket.settimeout(busy, 3000)
      local r = socket.read(busy, "*a")
      assert.matches("^HTTP/1.1 200 OK\r\n.-Connection: close\r\n.*finished$", r)
      socket.close(idle)
      socket.close(busy)
      assert(H.eventually(function() return srv:connections() == 0 end))
    end)
  end)

  it("a handler that waits holds up no other connection, and idle connections hold no task", function()
    H.run(function()
      local release = false
      local srv = assert(http.serve({ port = 0 }, function(req)
        if req.path == "/slow" then
          while not release do lunet.sleep(5) end
        end
        return 200, nil, req.path
      end))
      local _, port = srv:address()
      local slow = assert(socket.connect("127.0.0.1", port))
      socket.write(slow, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
      lunet.sleep(20)
      -- 40 keep-alive connections, each answered while /slow still waits.
      local conns = {}
      local parked_before = lunet._pending()
      for i = 1, 40 do
        conns[i] = assert(socket.connect("127.0.0.1", port))
        socket.write(conns[i], "GET /fast" .. i .. " HTTP/1.1\r\nHost: h\r\n\r\n")
      end
      for i = 1, 40 do
        socket.settimeout(conns[i], 3000)
        local head = assert(socket.read(conns[i], "*l"))
        assert.equal("HTTP/1.1 200 OK", head)
      end
      assert.equal(41, srv:connections())
      -- The 40 idle keep-alive connections wait in the server's lot: the
      -- waits of the program grew by a few (workers), not by one each.
      assert.is_true(lunet._pending() - parked_before < 10, "waits: " .. (lunet._pending() - parked_before))
      release = true
      socket.settimeout(slow, 3000)
      assert.equal("HTTP/1.1 200 OK", socket.read(slow, "*l"))
      for i = 1, 40 do socket.close(conns[i]) end
      socket.close(slow)
      srv:close()
      assert(H.eventually(function() return srv:connections() == 0 end))
    end)
  end)

  it("srv:close(grace_ms) ends SSE and WebSocket handlers still running after the grace period", function()
    H.run(function()
      local reported = {}
      local srv = assert(http.serve({ port = 0, on_error = function(e) reported[#reported + 1] = e end }, function(req)
        if req.path == "/events" then
          local sse = req:sse()
          while true do
            if not sse:send({ data = "tick" }) then return end
            lunet.sleep(10)
          end
        end
        local ws = assert(req:websocket())
        while true do
          local msg = ws:recv()
          if not msg then return end
        end
      end))
      local _, port = srv:address()
      local events = assert(socket.connect("127.0.0.1", port))
      socket.write(events, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
      local ws = assert(socket.connect("127.0.0.1", port))
      socket.write(ws, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
      socket.settimeout(events, 3000)
      socket.settimeout(ws, 3000)
      assert.matches("^HTTP/1.1 200", socket.read(events, "*l"))
      assert.matches("^HTTP/1.1 101", socket.read(ws, "*l"))
      assert.has_error(function() srv:close(-1) end)
      local t0 = H.now_ms()
      srv:close(100)
      -- Both end (the client sees the end of the stream), not before the grace.
      read_all(events)
      read_all(ws)
      assert.is_true(H.now_ms() - t0 >= 90)
      assert(H.eventually(function() return srv:connections() == 0 end))
      lunet.sleep(20)
      assert.same({}, reported, "ending a handler at close is not a handler error")
      socket.close(events)
      socket.close(ws)
    end)
  end)

  it("raises for programmer errors in serve", function()
    assert.has_error(function() http.serve(nil, function() end) end)
    assert.has_error(function() http.serve({ port = 0 }) end)
    assert.has_error(function() http.serve({}, function() end) end)
    assert.has_error(function() http.serve({ port = 0, limits = { max_body = -1 } }, function() end) end)
    assert.has_error(function() http.serve({ port = 0, limits = { nope = 1 } }, function() end) end)
    local ok, err = pcall(http.serve, { port = 0, tls = true }, function() end)
    assert.is_false(ok)
    assert.matches("tls must be a table", err)
  end)

  it("serves https (lunet.socket's TLS): httpc and curl verify it against the test CA", function()
    local certs = H.test_certs()
    local tls = { cert_file = certs .. "/server.pem", key_file = certs .. "/server.key" }
    local conns = {}
    H.run(function()
      local srv = assert(http.serve({ port = 0, tls = tls }, function(req)
        conns[req._conn] = true
        if req.path == "/echo" then return 200, nil, assert(req:body()) end
        return 200, nil, "secure " .. req.path
      end))
      local _, port = srv:address()
      local base = "https://localhost:" .. port
      local ca = { ca_file = certs .. "/ca.pem" }
      local r = assert(httpc.request({ url = base .. "/a", tls = ca }))
      assert.equal("secure /a", r.body)
      r = assert(httpc.request({ url = base .. "/echo", method = "POST", body = ("x"):rep(100000), tls = ca }))
      assert.equal(100000, #r.body)
      -- Not signed by a CA the system trusts: refused, never silently unverified.
      local none, err = httpc.request({ url = base .. "/b" })
      assert.is_nil(none)
      assert.matches("^tls: ", err)
      -- A plain-HTTP client on the TLS port gets no HTTP answer.
      local plain = httpc.request({ url = "http://127.0.0.1:" .. port .. "/", timeout_ms = 2000 })
      assert.is_nil(plain)
      srv:close()
      httpc.close_idle()
    end)
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(2, n) -- no pooling with custom TLS options: one connection per request
  end)
end)

describe("lunet.http streamed request bodies (req:body_reader)", function()
  -- A handler that reads its body through a reader and records the pieces
  -- and how the reading ended in `seen`; answers with the pieces joined by "|".
  local function streamer(seen)
    return function(req)
      local max = tonumber(req.query:match("max=(%d+)") or nil)
      local got, err = pieces_of(req, max and { max = max } or nil)
      seen[#seen + 1] = { pieces = got, err = err }
      return 200, nil, table.concat(got, "|")
    end
  end

  it("reads Content-Length and chunked bodies piece by piece, then serves the next pipelined request", function()
    local seen = {}
    with_server({}, streamer(seen), function(port)
      local r = exchange(port, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        .. "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
        .. "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.equal(3, select(2, r:gsub("HTTP/1.1 200 OK", "")))
      assert.matches("\r\n\r\nhello.*\r\n\r\nabc|de.*Content%-Length: 0\r\n", r)
    end)
    assert.same({ { pieces = { "hello" } }, { pieces = { "abc", "de" } }, { pieces = {} } }, seen)
  end)

  it("hands over a piece as it arrives, before the rest of the body is sent", function()
    local got = {}
    with_server({}, function(req)
      local r = req:body_reader()
      while true do
        local p = assert(r:read())
        got[#got + 1] = p
        if table.concat(got) == "first second" then break end
      end
      return 200, nil, table.concat(got, "|")
    end, function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      socket.settimeout(c, 3000)
      socket.write(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: close\r\n\r\nfirst")
      assert.is_true(H.eventually(function() return got[1] == "first" end))
      socket.write(c, " second")
      local r = read_all(c)
      socket.close(c)
      assert.matches("\r\n\r\nfirst| second$", r)
    end)
  end)

  it("Expect: 100-continue: says Continue only when the handler starts reading", function()
    local go = false
    with_server({}, function(req)
      local r = req:body_reader()
      assert(H.eventually(function() return go end))
      return 200, nil, assert(r:read())
    end, function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      socket.write(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      socket.settimeout(c, 200)
      assert.same({ nil, "timeout" }, { socket.read(c) })
      go = true
      socket.settimeout(c, 3000)
      assert.equal("HTTP/1.1 100 Continue", socket.read(c, "*l"))
      assert.equal("", socket.read(c, "*l"))
      socket.write(c, "ping")
      assert.matches("^HTTP/1.1 200 OK", assert(socket.read_until(c, "\r\n\r\n")))
      assert.equal("ping", socket.read(c, 4))
      socket.close(c)
    end)
  end)

  it("enforces limits.max_body, or a lower opts.max: 413 and a closed connection", function()
    local seen = {}
    with_server({ limits = { max_body = 100 } }, streamer(seen), function(port)
      local r = exchange(port, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"
        .. ("x"):rep(100) .. "\r\n1\r\ny\r\n0\r\n\r\n")
      assert.matches("^HTTP/1.1 413 ", r)
      assert.matches("Connection: close\r\n", r)
      r = exchange(port, "POST /?max=10 HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n" .. ("x"):rep(20))
      assert.matches("^HTTP/1.1 413 ", r)
      r = exchange(port, "POST /?max=10 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "5\r\nxxxxx\r\n6\r\nxxxxxx\r\n0\r\n\r\n")
      assert.matches("^HTTP/1.1 413 ", r)
      r = exchange(port, "POST /?max=10 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        .. ("x"):rep(10))
      assert.matches("^HTTP/1.1 200 .*\r\n\r\nxxxxxxxxxx$", r)
    end)
    assert.same({ pieces = { ("x"):rep(100) }, err = "body too large" }, seen[1])
    assert.same({ pieces = {}, err = "body too large" }, seen[2])
    assert.same({ pieces = { "xxxxx" }, err = "body too large" }, seen[3])
  end)

  it("a malformed chunk in the middle: 400 after the good pieces", function()
    local seen = {}
    with_server({}, streamer(seen), function(port)
      local r = exchange(port, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "5\r\nabcde\r\nZZ\r\nxx\r\n0\r\n\r\n")
      assert.matches("^HTTP/1.1 400 ", r)
      r = exchange(port, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "2\r\nabXY0\r\n\r\n")
      assert.matches("^HTTP/1.1 400 ", r)
      assert.matches("^HTTP/1.1 200 ", exchange(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    end)
    assert.same({ pieces = { "abcde" }, err = "malformed chunked body" }, seen[1])
    assert.same({ pieces = {}, err = "malformed chunked body" }, seen[2])
  end)

  it("a client vanishing mid-body gives nil, \"closed\"; one stalling gives a 408", function()
    local seen = {}
    with_server({ timeouts = { body = 100 } }, streamer(seen), function(port)
      local c = assert(socket.connect("127.0.0.1", port))
      socket.write(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" .. ("v"):rep(100))
      socket.close(c)
      assert.is_true(H.eventually(function() return seen[1] ~= nil end))
      local r = exchange(port, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n" .. ("s"):rep(10))
      assert.matches("^HTTP/1.1 408 ", r)
      assert.matches("^HTTP/1.1 200 ", exchange(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    end)
    assert.equal("closed", seen[1].err)
    assert.equal(("v"):rep(100), table.concat(seen[1].pieces))
    assert.same({ pieces = { ("s"):rep(10) }, err = "timeout" }, seen[2])
  end)

  it("after the handler returns, a small unread rest is skipped and a large one closes", function()
    with_server({}, function(req)
      local p = assert(req:body_reader():read())
      return 200, nil, "first " .. #p
    end, function(port)
      -- Content-Length: 5 of 10 bytes read; the rest comes after the answer.
      local c = assert(socket.connect("127.0.0.1", port))
      socket.settimeout(c, 3000)
      socket.write(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
      local head = assert(socket.read_until(c, "\r\n\r\n"))
      assert.not_matches("Connection: close", head)
      assert.equal("first 5", socket.read(c, 7))
      -- Chunked: one chunk of two read.
      socket.write(c, "56789POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
      head = assert(socket.read_until(c, "\r\n\r\n"))
      assert.not_matches("Connection: close", head)
      assert.equal("first 3", socket.read(c, 7))
      socket.write(c, "4\r\ndefg\r\n0\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\nxyz")
      head = assert(socket.read_until(c, "\r\n\r\n"))
      assert.matches("^HTTP/1.1 200 .*Connection: close$", head)
      assert.equal("first 3", read_all(c))
      socket.close(c)
    end)
  end)

  it("mixing with req:body(), misuse and use after the handler returned", function()
    local kept, errs = nil, {}
    with_server({}, function(req)
      if req.path == "/body-first" then
        local b = assert(req:body())
        local r = req:body_reader()
        assert(r == req:body_reader())
        local p1, p2 = r:read(), r:read()
        return 200, nil, b .. "=" .. tostring(p1) .. "," .. tostring(p2)
      elseif req.path == "/reader-first" then
        kept = req:body_reader()
        assert(kept:read())
        errs[#errs + 1] = select(2, pcall(req.body, req))
        return 200, nil, "x"
      end
      errs[#errs + 1] = select(2, pcall(req.body_reader, req, 5))
      errs[#errs + 1] = select(2, pcall(req.body_reader, req, { max = -1 }))
      return 200, nil, "y"
    end, function(port)
      local r = exchange(port, "POST /body-first HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
      assert.matches("\r\n\r\nabc=abc,nil$", r)
      r = exchange(port, "POST /reader-first HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
      assert.matches("\r\n\r\nx$", r)
      r = exchange(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
      assert.matches("\r\n\r\ny$", r)
      local ok, err = pcall(kept.read, kept)
      assert.is_false(ok)
      errs[#errs + 1] = err
    end)
    assert.matches("req:body: the body is being streamed", errs[1])
    assert.matches("opts must be a table", errs[2])
    assert.matches("max must be a number", errs[3])
    assert.matches("reader:read: the request is finished", errs[4])
    assert.has_error(function() kept:read() end)
  end)
end)

describe("lunet.http WebSocket", function()
  -- A masked client frame.
  local function frame(op, payload, fin)
    local key = "\1\2\3\4"
    local len = #payload
    local h = string.char((fin == false and 0 or 0x80) + op)
    if len < 126 then
      h = h .. string.char(0x80 + len)
    else
      h = h .. string.char(0x80 + 126, math.floor(len / 256), len % 256)
    end
    local out = {}
    for i = 1, len do
      out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
    end
    return h .. key .. table.concat(out)
  end
  local HANDSHAKE = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
  local function ws_echo(req)
    local ws, err = req:websocket()
    if not ws then return 200, nil, "unreachable " .. err end
    while true do
      local data, kind = ws:recv()
      if not data then return end
      ws:send(data, kind)
    end
  end
  -- The close code in the server's last frame of `r` (after the 101 head).
  local function close_code(r)
    local frames = r:match("\r\n\r\n(.*)$")
    local at = frames:find("\136", 1, true)
    if not at then return nil end
    local b1, b2 = frames:byte(at + 2, at + 3)
    return b1 * 256 + b2
  end

  it("answers the handshake (RFC 6455 sample key), echoes, answers pings and closes", function()
    with_server({}, ws_echo, function(port)
      local r = exchange(port, HANDSHAKE .. frame(1, "hi") .. frame(9, "p") .. frame(2, "\0\1", false)
        .. frame(0, "\2") .. frame(8, "\3\232"))
      assert.matches("^HTTP/1.1 101 Switching Protocols\r\n", r)
      assert.matches("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", r)
      local frames = r:match("\r\n\r\n(.*)$")
      assert.equal("\129\2hi" .. "\138\1p" .. "\130\3\0\1\2" .. "\136\2\3\232", frames)
    end)
  end)

  local WS_BAD = {
    { "unmasked client frame", "\129\2hi", 1002 },
    { "invalid UTF-8 in a text frame", "text", 1007 },
    { "frame over the payload limit", "big", 1009 },
    { "reserved bits", "rsv", 1002 },
    { "unknown opcode", "op", 1002 },
    { "continuation without a message", "cont", 1002 },
    { "fragmented control frame", "ctl", 1002 },
  }
  it("fails bad frames with the right close code and keeps serving", function()
    with_server({ limits = { max_ws_payload = 100 } }, ws_echo, function(port)
      for _, case in ipairs(WS_BAD) do
        local name, what, code = case[1], case[2], case[3]
        local bytes = what
        if what == "text" then bytes = frame(1, "\255\254") end
        if what == "big" then bytes = frame(2, ("x"):rep(200)) end
        if what == "rsv" then bytes = frame(1, "x"):gsub("^\129", "\193") end
        if what == "op" then bytes = frame(3, "x") end
        if what == "cont" then bytes = frame(0, "x") end
        if what == "ctl" then bytes = frame(9, "x", false) end
        local r = exchange(port, HANDSHAKE .. bytes)
        assert.equal(code, close_code(r), name)
      end
      assert.matches("^HTTP/1.1 426", exchange(port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
    end)
  end)

  it("refuses a request that is not a handshake", function()
    with_server({}, ws_echo, function(port)
      local r = exchange(port, "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n")
      assert.matches("^HTTP/1.1 426 Upgrade Required\r\n", r)
      r = exchange(port, (HANDSHAKE:gsub("dGhlIHNhbXBsZSBub25jZQ==", "short")))
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", r)
    end)
  end)
end)

describe("lunet.httpc", function()
  it("GET, POST and a chunked response, reusing one pooled connection", function()
    local conns = {}
    with_server({}, function(req)
      conns[req._conn] = true
      if req.path == "/chunked" then
        local w = req:stream(200)
        w:write("one ")
        w:write("two")
        return
      end
      return echo(req)
    end, function(port)
      local base = "http://127.0.0.1:" .. port
      local r = assert(httpc.request({ url = base .. "/x?q=1", headers = { ["X-A"] = "1" } }))
      assert.equal(200, r.status)
      assert.equal("GET /x?q=1", r.body)
      assert.equal(base .. "/x?q=1", r.effective_url)
      local names = {}
      for _, h in ipairs(r.headers) do names[h.name] = h.value end
      assert.equal("text/plain", names["Content-Type"])
      r = assert(httpc.request({ url = base .. "/echo", method = "POST", body = "payload",
        headers = { { "X-B", "2" } } }))
      assert.equal("payload", r.body)
      r = assert(httpc.request({ url = base .. "/chunked" }))
      assert.equal("one two", r.body)
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.equal(1, n)
      assert.equal(1, httpc.pool_size())
      httpc.close_idle()
      assert.equal(0, httpc.pool_size())
    end)
  end)

  it("follows redirects only when asked, and enforces max_body_bytes and timeouts", function()
    with_server({}, function(req)
      if req.path == "/old" then return 302, { Location = "/new" }, "" end
      if req.path == "/loop" then return 301, { Location = "/loop" }, "" end
      if req.path == "/big" then return 200, nil, ("x"):rep(1000) end
      if req.path == "/slow" then lunet.sleep(500) end
      return 200, nil, req.path
    end, function(port)
      local base = "http://127.0.0.1:" .. port
      local r = assert(httpc.request({ url = base .. "/old" }))
      assert.equal(302, r.status)
      r = assert(httpc.request({ url = base .. "/old", follow_redirects = true }))
      assert.equal(200, r.status)
      assert.equal("/new", r.body)
      assert.equal(base .. "/new", r.effective_url)
      assert.same({ nil, "too many redirects" }, { httpc.request({ url = base .. "/loop", follow_redirects = true }) })
      assert.same({ nil, "body too large" }, { httpc.request({ url = base .. "/big", max_body_bytes = 999 }) })
      assert.equal(1000, #assert(httpc.request({ url = base .. "/big", max_body_bytes = 1000 })).body)
      assert.same({ nil, "timeout" }, { httpc.request({ url = base .. "/slow", timeout_ms = 50 }) })
      httpc.close_idle()
    end)
  end)

  it("streams large response bodies to a sink, and stops when the sink says so", function()
    local big = ("0123456789abcdef"):rep(20000) -- 320,000 bytes
    with_server({}, function(req)
      if req.path == "/chunked" then
        local w = req:stream(200)
        for i = 1, #big, 100000 do w:write(big:sub(i, i + 99999)) end
        return
      end
      if req.path == "/old" then return 302, { Location = "/length" }, "moved" end
      return 200, nil, big
    end, function(port)
      local base = "http://127.0.0.1:" .. port
      for _, path in ipairs({ "/length", "/chunked", "/old" }) do
        local pieces = {}
        local r = assert(httpc.request({ url = base .. path, max_body_bytes = 10, follow_redirects = true,
          sink = function(p) pieces[#pieces + 1] = p return true end }))
        assert.equal(200, r.status)
        assert.equal("", r.body)
        assert.is_true(#pieces > 1, path)
        assert.equal(big, table.concat(pieces), path)
      end
      local n = 0
      local r, err = httpc.request({ url = base .. "/length", sink = function()
        n = n + 1
        if n == 2 then return nil, "enough" end
        return true
      end })
      assert.is_nil(r)
      assert.equal("enough", err)
      assert.has_error(function() httpc.request({ url = base, sink = "x" }) end)
      httpc.close_idle()
    end)
  end)

  it("uploads a body given as a function: chunked, piece by piece, on its own connection", function()
    local seen = {}
    with_server({}, function(req)
      if req.path == "/307" then return 307, { Location = "/up" }, "again" end
      if req.path == "/303" then return 303, { Location = "/up" }, "see" end
      if req.path == "/early" then return 401, nil, "no" end
      local got, err = pieces_of(req)
      seen[#seen + 1] = { req.method, req.headers["transfer-encoding"], table.concat(got, "|"), err }
      return 200, nil, table.concat(got)
    end, function(port)
      local base = "http://127.0.0.1:" .. port
      local r = assert(httpc.request({ url = base .. "/up", method = "PUT", body = source({ "one", "", "two", "three" }) }))
      assert.equal("onetwothree", r.body)
      assert.same({ "PUT", "chunked", "one|two|three" }, seen[1])
      r = assert(httpc.request({ url = base .. "/up", method = "POST", body = source({}) }))
      assert.equal("", r.body)
      assert.same({ "POST", "chunked", "" }, seen[2])
      -- The source's nil, err ends the request with that error.
      local n = 0
      assert.same({ nil, "disk on fire" }, { httpc.request({ url = base .. "/up", method = "POST", body = function()
        n = n + 1
        if n == 1 then return "part" end
        return nil, "disk on fire"
      end }) })
      -- A streamed body is not sent again: 307 comes back; 303 is followed with GET.
      r = assert(httpc.request({ url = base .. "/307", method = "POST", follow_redirects = true,
        body = source({ "x" }) }))
      assert.equal(307, r.status)
      assert.equal("again", r.body)
      r = assert(httpc.request({ url = base .. "/303", method = "POST", follow_redirects = true,
        body = source({ "x" }) }))
      assert.equal(200, r.status)
      assert.same({ "GET", nil, "" }, seen[#seen])
      -- A server that answers without reading the body: its answer arrives.
      n = 0
      r = assert(httpc.request({ url = base .. "/early", method = "POST", body = function()
        n = n + 1
        if n <= 16 then return ("x"):rep(16384) end
      end }))
      assert.equal(401, r.status)
      assert.equal("no", r.body)
      -- Programmer errors raise: a source returning a non-string, or raising.
      assert.has_error(function()
        httpc.request({ url = base .. "/up", method = "POST", body = function() return 42 end })
      end, "httpc.request: the body function must return a string or nil (got number)")
      assert.has_error(function()
        httpc.request({ url = base .. "/up", method = "POST", body = function() error("boom", 0) end })
      end, "boom")
      assert.has_error(function() httpc.request({ url = base, body = true }) end)
      httpc.close_idle()
    end)
  end)

  it("uploads a body function with the caller's Content-Length as is, and checks its length", function()
    local seen = {}
    with_server({}, function(req)
      local got, err = pieces_of(req)
      seen[#seen + 1] = { req.headers["content-length"], req.headers["transfer-encoding"], table.concat(got), err }
      return 200, nil, table.concat(got)
    end, function(port)
      local base = "http://127.0.0.1:" .. port
      local r = assert(httpc.request({ url = base .. "/up", method = "PUT", headers = { ["Content-Length"] = "11" },
        body = source({ "one", "", "two", "three" }) }))
      assert.equal("onetwothree", r.body)
      assert.same({ "11", nil, "onetwothree" }, seen[1])
      -- More or fewer bytes than announced end the request (the connection
      -- is closed: the server sees a body cut short, never a wrong one).
      assert.same({ nil, "the body function gave more than Content-Length (4 bytes)" },
        { httpc.request({ url = base .. "/up", method = "PUT", headers = { ["content-length"] = 4 },
          body = source({ "abc", "de" }) }) })
      assert.same({ nil, "the body function gave 3 of Content-Length's 10 bytes" },
        { httpc.request({ url = base .. "/up", method = "PUT", headers = { { "Content-Length", "10" } },
          body = source({ "abc" }) }) })
      for _, bad in ipairs({ "-1", "1.5", "ten", "1e3" }) do
        assert.has_error(function()
          httpc.request({ url = base .. "/up", method = "PUT", headers = { ["Content-Length"] = bad }, body = source({}) })
        end)
      end
      httpc.close_idle()
    end)
  end)

  it("a server announcing a chunk too big to read at once gives a sink nil, err (it raised)", function()
    H.run(function()
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      lunet.spawn(function()
        local c = socket.accept(l)
        socket.read(c)
        socket.write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFF\r\nabc")
        socket.close(c)
      end)
      local got = {}
      local r, err = httpc.request({ url = "http://127.0.0.1:" .. port .. "/",
        sink = function(p) got[#got + 1] = p return true end })
      assert.is_nil(r)
      assert.equal("closed", err)
      assert.same({}, got)
      socket.close(l)
    end)
  end)

  it("retries an idempotent request once when its pooled connection was closed by the server", function()
    local conns = {}
    with_server({ timeouts = { idle = 30 } }, function(req)
      conns[req._conn] = true
      return 200, nil, req.method
    end, function(port, srv)
      local url = "http://127.0.0.1:" .. port .. "/"
      assert.equal("GET", assert(httpc.request({ url = url })).body)
      assert.equal(1, httpc.pool_size())
      -- The server closes the idle connection meanwhile.
      assert.is_true(H.eventually(function() return srv:connections() == 0 end))
      assert.equal("GET", assert(httpc.request({ url = url })).body)
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.equal(2, n)
      httpc.configure({ max_idle_per_host = 0 })
      assert(httpc.request({ url = url }))
      assert.equal(0, httpc.pool_size())
      httpc.configure({ max_idle_per_host = 8 })
      httpc.close_idle()
    end)
  end)

  it("returns nil, err for runtime failures and raises for programmer errors", function()
    H.run(function()
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      socket.close(l)
      local r, err = httpc.request({ url = "http://127.0.0.1:" .. port .. "/" })
      assert.is_nil(r)
      assert.equal("connection refused", err)
      assert.same({ nil, "invalid url" }, { httpc.request({ url = "ftp://x/" }) })
      assert.same({ nil, "invalid url" }, { httpc.request({ url = "http://" }) })
      assert.has_error(function() httpc.request() end)
      assert.has_error(function() httpc.request({}) end)
      assert.has_error(function() httpc.request({ url = "http://x/", method = "G T" }) end)
      assert.has_error(function() httpc.request({ url = "http://x/", headers = { ["X"] = "a\r\nb" } }) end)
      assert.has_error(function() httpc.request({ url = "http://x/", timeout_ms = -1 }) end)
    end)
  end)
end)

describe("lunet.http with real clients", function()
  local app, port, log
  setup(function()
    log = os.tmpname()
    local pidf = os.tmpname()
    os.execute(("%s/lunet-run spec/fixtures/http_app.lua 300 >%s 2>&1 & echo $! >%s"):format(H.build, log, pidf))
    local f = io.open(pidf)
    app = f:read("*l")
    f:close()
    os.remove(pidf)
    for _ = 1, 200 do
      local lf = io.open(log)
      local text = lf and lf:read("*a") or ""
      if lf then lf:close() end
      port = text:match("http://127%.0%.0%.1:(%d+)")
      if port then break end
      os.execute("sleep 0.05")
    end
    assert(port, "the fixture server did not start")
  end)
  teardown(function()
    if app then os.execute("kill " .. app) end
    if log then os.remove(log) end
  end)
  local function curl(args)
    local rc, out, err = H.sh("curl -sS --max-time 10 " .. args:gsub("URL", "http://127.0.0.1:" .. port))
    assert.equal(0, rc, err)
    return out, err
  end

  it("curl: keep-alive across requests, HTTP/1.0, chunked upload", function()
    local out, err = curl("-v URL/hello URL/hello")
    assert.equal("hello\nhello\n", out)
    assert.matches("Re%-using existing connection", err)
    assert.equal("hello\n", curl("--http1.0 URL/hello"))
    local file = os.tmpname()
    local f = io.open(file, "wb")
    f:write(("0123456789"):rep(3000))
    f:close()
    out = curl("-H 'Transfer-Encoding: chunked' --data-binary @" .. file .. " -D - URL/echo")
    os.remove(file)
    assert.matches("X%-Length: 30000", out)
    assert.matches(("0123456789"):rep(3000) .. "$", out)
    out = curl("-H 'Expect: 100-continue' --data-binary 'xyz' URL/echo")
    assert.equal("xyz", out)
    out = curl("-o /dev/null -w '%{http_code}' --data-binary x -H 'Content-Length: 70000' URL/echo")
    assert.equal("413", out)
  end)

  it("curl: https with the test CA", function()
    local certs = H.test_certs()
    local out = os.tmpname()
    H.run(function()
      local srv = assert(http.serve({ port = 0, tls = { cert_file = certs .. "/server.pem",
        key_file = certs .. "/server.key" } }, function(req) return 200, nil, "tls " .. req.path end))
      local _, p = srv:address()
      -- In the background: the loop must keep running to answer it.
      os.execute(("(curl -sS --max-time 10 --cacert %s https://localhost:%d/hello; echo ' DONE') >%s 2>&1 &")
        :format(certs .. "/ca.pem", p, out))
      assert(H.eventually(function()
        local f = io.open(out)
        local text = f and f:read("*a") or ""
        if f then f:close() end
        return text:find("DONE", 1, true) ~= nil
      end, 15000))
      srv:close()
    end, 20000)
    local f = assert(io.open(out))
    local text = f:read("*a")
    f:close()
    os.remove(out)
    assert.equal("tls /hello DONE\n", text)
  end)

  it("curl -N: Server-Sent Events arrive as a stream", function()
    local out = curl("-N URL/sse?n=3")
    assert.equal("event: tick\nid: 1\ndata: n=1\n\nevent: tick\nid: 2\ndata: n=2\n\nevent: tick\nid: 3\ndata: n=3\n\n", out)
  end)

  it("Python http.client: pipelined requests on one socket, and a malformed one", function()
    local rc, out, err = H.sh(PY .. " - " .. port .. [[ <<'EOF'
import http.client, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
class Keep:  # one buffered reader for every response (http.client reads ahead)
    def __init__(self, f): self.f = f
    def __getattr__(self, n): return getattr(self.f, n)
    def close(self): pass
shared = Keep(s.makefile("rb"))
class Sock:
    def makefile(self, *a, **k): return shared
s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" +
          b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
          b"GET /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
for _ in range(3):
    r = http.client.HTTPResponse(Sock(), method="GET")
    r.begin()
    print(r.status, r.read().decode().replace("\n", "|"))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
r = http.client.HTTPResponse(Sock(), method="GET")
r.begin()
print(r.status, r.getheader("Connection"))
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/error")
r = c.getresponse()
print(r.status, r.read().decode().strip())
c.request("GET", "/hello")
r = c.getresponse()
print(r.status, r.read().decode().strip())
EOF
]])
    assert.equal(0, rc, err)
    assert.equal("200 hello|\n200 abc\n200 piece 1|piece 2|\n400 close\n500 Internal Server Error\n200 hello\n", out)
  end)

  it("Python websockets: echo, binary, ping, close code", function()
    local rc, out, err = H.sh(PY .. " - " .. port .. [[ <<'EOF'
import asyncio, sys
import websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%s/ws" % sys.argv[1], max_size=None) as ws:
        await ws.send("héllo")
        print(await ws.recv())
        await ws.send(b"\x00\x01\x02")
        print(repr(await ws.recv()))
        await ws.send("x" * 60000)
        print(len(await ws.recv()))
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
        print("pong")
        await ws.send("bye")
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print("closed", e.rcvd.code, e.rcvd.reason)
asyncio.run(main())
EOF
]])
    assert.equal(0, rc, err)
    assert.equal("héllo\nb'\\x00\\x01\\x02'\n60000\npong\nclosed 4000 bye\n", out)
  end)

  -- Runs the shell command `cmd` in the background while the loop keeps
  -- serving; returns what it printed (stdout and stderr).
  local function background(cmd, ms)
    local out = os.tmpname()
    os.execute(("(%s; echo ' DONE') >%s 2>&1 &"):format(cmd, out))
    local text = ""
    assert(H.eventually(function()
      local f = io.open(out)
      text = f and f:read("*a") or ""
      if f then f:close() end
      return text:find(" DONE\n", 1, true) ~= nil
    end, ms or 20000), "the background command did not finish")
    os.remove(out)
    return (text:gsub(" DONE\n$", ""))
  end

  it("streamed uploads: 64 MiB from curl (chunked) and Python (Content-Length) in bounded memory", function()
    local BIG = 64 * 1048576
    H.run(function()
      local srv = assert(http.serve({ port = 0, limits = { max_body = 2 * BIG } }, function(req)
        if req.path == "/pieces" then
          local got, err = pieces_of(req)
          return 200, nil, table.concat(got, "|") .. (err and " " .. err or "")
        end
        -- Counts the body's bytes (all zeros) and the Lua heap's growth.
        collectgarbage()
        local base = collectgarbage("count")
        local peak, n, bad = base, 0, false
        local r = req:body_reader()
        while true do
          local p, err = r:read()
          if not p then
            if err then return 200, nil, "error " .. err end
            break
          end
          n = n + #p
          bad = bad or p:find("[^%z]") ~= nil
          local kb = collectgarbage("count")
          if kb > peak then peak = kb end
        end
        return 200, nil, ("%s %d %d %s"):format(req.headers["transfer-encoding"] or "length", n,
          math.floor(peak - base), tostring(bad))
      end))
      local _, port = srv:address()
      local url = "http://127.0.0.1:" .. port
      local f
      local out = background(("head -c %d /dev/zero | curl -sS --max-time 60 -T - %s/count"):format(BIG, url), 60000)
      local kind, n, growth, bad = out:match("^(%S+) (%d+) (%d+) (%S+)$")
      assert(kind, out)
      assert.equal("chunked", kind)
      assert.equal(BIG, tonumber(n))
      assert.equal("false", bad)
      -- The heap grows by a few pieces' worth, not by the body.
      assert.is_true(tonumber(growth) < 16384, "heap grew by " .. growth .. " KiB")
      local script = os.tmpname()
      f = io.open(script, "w")
      f:write([[
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
N = 64 * 1024 * 1024
def zeros():
    z = b"\0" * 65536
    for _ in range(N // 65536):
        yield z
c.request("POST", "/count", body=zeros(), headers={"Content-Length": str(N)})
r = c.getresponse()
print(r.status, r.read().decode())
c.request("POST", "/pieces", body=iter([b"a", b"bc", b"", b"def"]), encode_chunked=True)
r = c.getresponse()
print(r.status, r.read().decode())
]])
      f:close()
      out = background(PY .. " " .. script .. " " .. port, 60000)
      os.remove(script)
      local status, growth2
      status, kind, n, growth2, bad = out:match("^(%d+) (%S+) (%d+) (%d+) (%S+)\n")
      assert(status, out)
      assert.equal("200", status)
      assert.equal("length", kind)
      assert.equal(BIG, tonumber(n))
      assert.equal("false", bad)
      assert.is_true(tonumber(growth2) < 16384, "heap grew by " .. growth2 .. " KiB")
      assert.matches("\n200 a|bc|def\n$", out)
      srv:close()
    end, 90000)
  end)

  it("curl -T -: a chunked upload cut off mid-body reaches the handler as nil, \"closed\"", function()
    H.run(function()
      local got, result = {}, nil
      local srv = assert(http.serve({ port = 0 }, function(req)
        local r = req:body_reader()
        while true do
          local p, err = r:read()
          if not p then
            result = err or "end"
            return 200, nil, "ok"
          end
          got[#got + 1] = p
        end
      end))
      local _, port = srv:address()
      local pidf = os.tmpname()
      os.execute(("(printf 'hello'; sleep 5) | curl -sS -T - http://127.0.0.1:%d/ >/dev/null 2>&1 & echo $! >%s")
        :format(port, pidf))
      local f = io.open(pidf)
      local pid = f:read("*l")
      f:close()
      os.remove(pidf)
      -- curl is killed while it still has a body to send.
      assert(H.eventually(function() return got[1] ~= nil end, 10000))
      os.execute("kill -9 " .. pid)
      assert(H.eventually(function() return result ~= nil end, 10000))
      assert.same({ "hello" }, got)
      assert.equal("closed", result)
      srv:close()
    end, 15000)
  end)

  it("reported the handler error on stderr and is still serving", function()
    assert.equal("hello\n", curl("URL/hello"))
    local f = io.open(log)
    local text = f:read("*a")
    f:close()
    assert.matches("handler exploded", text)
  end)
end)
