-- TLS for lunet.socket (rustls): verification, mTLS, ALPN/SNI, resumption,
-- real peers (openssl s_server / s_client, curl) and faults. The read
-- formats, writes, timeouts and cancellation on TLS are covered by
-- stream_spec.lua, which runs every stream spec over TLS as well.
local H = require("spec.helper")
local lunet = H.lunet
local socket = require("lunet.socket")

local CERTS = H.test_certs()
local function cert(name) return CERTS .. "/" .. name .. ".pem" end
local function key(name) return CERTS .. "/" .. name .. ".key" end

local function tls_listener(name, extra)
  local tls = { cert_file = cert(name), key_file = key(name) }
  for k, v in pairs(extra or {}) do tls[k] = v end
  local l = assert(socket.listen("tcp", "127.0.0.1", 0, { tls = tls }))
  local _, port = l:getsockname()
  return l, port
end

-- A free port for an outside server (bound and released at once).
local function free_port()
  local l = assert(socket.listen("tcp", "127.0.0.1", 0))
  local _, port = l:getsockname()
  l:close()
  return port
end

-- Starts `cmd` in the background; returns its pid.
local function spawn_bg(cmd, log)
  local rc, out = H.sh(("(%s) >%s 2>&1 </dev/null & echo $!"):format(cmd, log or "/dev/null"))
  assert(rc == 0)
  return tonumber(out)
end

local function kill(pid) os.execute("kill " .. pid .. " 2>/dev/null") end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Waits (in the loop) until a TCP port accepts connections.
local function wait_port(port)
  assert(H.eventually(function()
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return true end
    return false
  end, 10000), "port " .. port .. " never opened")
end

describe("lunet.socket TLS", function()
  describe("verification (on by default)", function()
    local cases = {
      { "expired", "certificate expired" },
      { "wronghost", "not valid for name" },
      { "self", "invalid peer certificate" },
      { "otherca-server", "UnknownIssuer" },
    }
    for _, case in ipairs(cases) do
      it("refuses a " .. case[1] .. " certificate with nil, 'tls: <reason>'", function()
        H.run(function()
          local l, port = tls_listener(case[1])
          lunet.spawn(function()
            local s = l:accept()
            if s then s:read("*l"); s:close() end
          end)
          local c, err = socket.connect("localhost", port, { tls = { ca_file = cert("ca") } })
          assert.is_nil(c)
          assert.matches("^tls: ", err)
          assert.matches(case[2], err, 1, true)
          l:close()
        end)
      end)
    end

    it("the system store does not trust the test CA", function()
      H.run(function()
        local l, port = tls_listener("server")
        lunet.spawn(function() local s = l:accept(); if s then s:read(1); s:close() end end)
        local c, err = socket.connect("localhost", port, { tls = true })
        assert.is_nil(c)
        assert.matches("^tls: invalid peer certificate", err)
        l:close()
      end)
    end)

    it("verify = false connects to a self-signed server (insecure, on request only)", function()
      H.run(function()
        local l, port = tls_listener("self")
        lunet.spawn(function() local s = assert(l:accept()); s:write("ok\n"); s:read("*a"); s:close() end)
        local c = assert(socket.connect("127.0.0.1", port, { tls = { verify = false } }))
        assert.equal("ok", c:read("*l"))
        c:close()
        l:close()
      end)
    end)

    it("checks options: bad types raise, unreadable files fail", function()
      H.run(function()
        assert.has_error(function() socket.connect("127.0.0.1", 1, { tls = "yes" }) end)
        assert.has_error(function() socket.listen("tcp", "127.0.0.1", 0, { tls = { cert_file = 5 } }) end)
        assert.has_error(function() socket.listen("tcp", "127.0.0.1", 0, { tls = { alpn = { "" } } }) end)
        local l, err = socket.listen("tcp", "127.0.0.1", 0, { tls = { cert_file = "/nonexistent.pem", key_file = "/x" } })
        assert.is_nil(l)
        assert.matches("^tls: cannot read cert_file /nonexistent.pem", err)
        local l2, err2 = socket.listen("tcp", "127.0.0.1", 0, { tls = {} })
        assert.is_nil(l2)
        assert.equal("tls: a server needs cert_file and key_file", err2)
      end)
    end)
  end)

  describe("features", function()
    it("ALPN, SNI, versions and ciphers show in tlsinfo; sessions resume", function()
      H.run(function()
        local l, port = tls_listener("server", { alpn = { "h2", "http/1.1" } })
        local infos = {}
        lunet.spawn(function()
          for i = 1, 2 do
            local s = assert(l:accept())
            assert.equal("hello", s:read("*l"))
            infos[i] = s:tlsinfo()
            s:write("bye\n")
            s:close()
          end
        end)
        local resumed = {}
        for i = 1, 2 do
          local c = assert(socket.connect("localhost", port, { tls = { ca_file = cert("ca"), alpn = { "http/1.1" } } }))
          c:write("hello\n")
          assert.equal("bye", c:read("*l"))
          local info = c:tlsinfo()
          assert.equal("TLSv1.3", info.version)
          assert.equal("http/1.1", info.alpn)
          assert.matches("TLS13_", info.cipher)
          assert.is_true(#info.peer_certificate > 100)
          assert.equal("CN=localhost", info.peer_subject)
          resumed[i] = info.resumed
          c:close()
        end
        while not infos[2] do lunet.sleep(1) end
        assert.equal("localhost", infos[1].server_name)
        assert.equal("http/1.1", infos[1].alpn)
        assert.is_false(resumed[1])
        assert.is_true(resumed[2])
        assert.is_nil(socket.tlsinfo(l))
        l:close()
      end)
    end)

    it("mutual TLS: the server requires a client certificate from its CA", function()
      H.run(function()
        local l, port = tls_listener("server", { client_ca_file = cert("ca") })
        local peer
        lunet.spawn(function()
          while true do
            local s = l:accept()
            if not s then return end
            lunet.spawn(function()
              local line = s:read("*l")
              if line then peer = s:tlsinfo().peer_subject; s:write("welcome\n") end
              s:close()
            end)
          end
        end)
        local c, err = socket.connect("localhost", port, { tls = { ca_file = cert("ca") } })
        if c then -- (TLS 1.3: the refusal may only show on the first read)
          c:write("hi\n")
          local d
          d, err = c:read("*l")
          assert.is_nil(d)
          c:close()
        end
        assert.matches("^tls: ", err)
        local c2 = assert(socket.connect("localhost", port,
          { tls = { ca_file = cert("ca"), cert_file = cert("client"), key_file = key("client") } }))
        c2:write("hi\n")
        assert.equal("welcome", c2:read("*l"))
        assert.equal("CN=lunet test client", peer)
        c2:close()
        l:close()
      end)
    end)

    it("starttls upgrades a plain connection, on both sides", function()
      H.run(function()
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, port = l:getsockname()
        lunet.spawn(function()
          local s = assert(l:accept())
          assert.equal("STARTTLS", s:read("*l"))
          s:write("GO\n")
          assert.is_true(socket.starttls(s, { server = true, cert_file = cert("server"), key_file = key("server") }))
          assert.equal("secret", s:read("*l"))
          s:write("done\n")
          s:close()
        end)
        local c = assert(socket.connect("127.0.0.1", port))
        c:write("STARTTLS\n")
        assert.equal("GO", c:read("*l"))
        assert.is_true(c:starttls({ server_name = "localhost", ca_file = cert("ca") }))
        assert.is_not_nil(c:tlsinfo())
        c:write("secret\n")
        assert.equal("done", c:read("*l"))
        local ok, err = c:starttls({ verify = false })
        assert.is_nil(ok)
        assert.equal("tls: the connection already speaks TLS", err)
        c:close()
        l:close()
      end)
    end)

    it("starttls on a connection the peer has closed, or after garbage, fails at once", function()
      H.run(function()
        local l = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, port = l:getsockname()
        lunet.spawn(function()
          local s = assert(l:accept())
          s:close()
          local s2 = assert(l:accept())
          s2:write("garbage, not a TLS record\r\n")
          s2:read("*a")
          s2:close()
        end)
        local c = assert(socket.connect("127.0.0.1", port))
        assert.equal("", c:read("*a")) -- the peer has closed
        local ok, err = c:starttls({ verify = false })
        assert.is_nil(ok)
        assert.matches("^tls: ", err)
        c:close()
        -- As a server: the peer's garbage is already buffered when we start.
        local c2 = assert(socket.connect("127.0.0.1", port))
        lunet.sleep(20)
        local ok2, err2 = c2:starttls({ server = true, cert_file = cert("server"), key_file = key("server") })
        assert.is_nil(ok2)
        assert.matches("^tls: ", err2)
        c2:close()
        l:close()
      end)
    end)
  end)

  it("garbage that arrives after our close_notify ends the read, never the process (rustls#959)", function()
    -- A client whose handshake timed out shuts down (close_notify goes out),
    -- then the plain server answers with bytes that are not TLS. rustls
    -- debug-asserts that it never sends a second alert; the tracing build
    -- compiles rustls without debug assertions (Cargo.toml) so this is a
    -- failed read there too. In a child process: an abort fails the spec.
    local rc, out, err = H.lunet_run([[
      local lunet, socket = require("lunet"), require("lunet.socket")
      local l = assert(socket.listen("tcp", "127.0.0.1", 0))
      local _, port = socket.getsockname(l)
      lunet.spawn(function()
        local s = assert(socket.accept(l))
        lunet.sleep(150)
        socket.write(s, "HTTP/1.1 400 Bad Request\r\n\r\n")
        lunet.sleep(100)
        socket.close(s)
        socket.close(l)
      end)
      lunet.spawn(function()
        local c = assert(socket.connect("127.0.0.1", port))
        socket.settimeout(c, 50)
        local ok, e = socket.starttls(c, { verify = false })
        print("handshake", ok, e)
        print("shutdown", socket.shutdown(c))
        socket.settimeout(c, 2000)
        print("read", socket.read(c))
        socket.close(c)
      end)
    ]], "", 20)
    assert.equal(0, rc, err)
    assert.matches("handshake\tnil\ttimeout", out)
    assert.matches("\nread\tnil\t", out)
  end)

  describe("real peers", function()
    for _, version in ipairs({ "-tls1_2", "-tls1_3" }) do
      it("our client against openssl s_server " .. version, function()
        local port = free_port()
        local log = os.tmpname()
        local pid = spawn_bg(("exec openssl s_server -accept 127.0.0.1:%d -cert %s -key %s %s -www -quiet")
          :format(port, cert("server"), key("server"), version), log)
        finally(function() kill(pid) end)
        H.run(function()
          wait_port(port)
          local c = assert(socket.connect("localhost", port, { tls = { ca_file = cert("ca") }, timeout = 5000 }))
          c:write("GET / HTTP/1.0\r\n\r\n")
          local status = c:read("*l")
          assert.matches("^HTTP/1%.0 200", status)
          local want = version == "-tls1_2" and "TLSv1.2" or "TLSv1.3"
          assert.equal(want, c:tlsinfo().version)
          c:close()
        end, 15000)
      end)
    end

    it("openssl s_client and curl against our server", function()
      local port
      local sc_out, curl_out = os.tmpname(), os.tmpname()
      H.run(function()
        local l
        l, port = tls_listener("server", { alpn = { "http/1.1" } })
        local served = 0
        lunet.spawn(function()
          while true do
            local s = l:accept()
            if not s then return end
            lunet.spawn(function()
              local head = s:read_until("\r\n\r\n", { max = 8192 })
              if head then
                local body = "hello over tls\n"
                s:write({ "HTTP/1.1 200 OK\r\nContent-Length: ", #body, "\r\nConnection: close\r\n\r\n", body })
                served = served + 1
              end
              s:close()
            end)
          end
        end)
        spawn_bg(("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:%d -CAfile %s -servername localhost -quiet")
          :format(port, cert("ca")), sc_out)
        spawn_bg(("curl -sS --max-time 10 --cacert %s https://localhost:%d/"):format(cert("ca"), port), curl_out)
        assert(H.eventually(function() return served >= 2 end, 10000), "both clients were served")
        lunet.sleep(50)
        l:close()
      end, 15000)
      -- (The background clients exit once served; give them a moment.)
      os.execute("sleep 0.3")
      assert.matches("hello over tls", slurp(sc_out))
      assert.equal("hello over tls\n", slurp(curl_out))
    end)
  end)

  describe("faults", function()
    it("plain HTTP or garbage on a TLS port gets a clear error; the server goes on", function()
      H.run(function()
        local l, port = tls_listener("server")
        local errors, good = {}, 0
        lunet.spawn(function()
          while true do
            local s = l:accept()
            if not s then return end
            lunet.spawn(function()
              local line, err = s:read("*l")
              if line then good = good + 1; s:write("ok\n") else errors[#errors + 1] = err end
              s:close()
            end)
          end
        end)
        for _, junk in ipairs({ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\22\3\1\0\5garbage-garbage" }) do
          local c = assert(socket.connect("127.0.0.1", port))
          c:write(junk)
          c:read("*a")
          c:close()
        end
        local c = assert(socket.connect("localhost", port, { tls = { ca_file = cert("ca") } }))
        c:write("fine\n")
        assert.equal("ok", c:read("*l"))
        c:close()
        assert(H.eventually(function() return #errors == 2 end))
        for _, e in ipairs(errors) do assert.matches("^tls: ", e) end
        assert.equal(1, good)
        l:close()
      end)
    end)

    it("a peer stalling mid-handshake is bounded by the read timeout; others are served meanwhile", function()
      H.run(function()
        local l, port = tls_listener("server")
        local stalled_err
        lunet.spawn(function()
          local s = assert(l:accept()) -- the staller
          s:settimeout(200)
          local _, err = s:read("*l")
          stalled_err = err
          s:close()
          local s2 = assert(l:accept())
          s2:write("served\n")
          s2:read("*a")
          s2:close()
        end)
        local staller = assert(socket.connect("127.0.0.1", port))
        staller:write("\22\3\1") -- the start of a record, then nothing
        local c = assert(socket.connect("localhost", port, { tls = { ca_file = cert("ca") }, timeout = 5000 }))
        assert.equal("served", c:read("*l"))
        c:close()
        assert(H.eventually(function() return stalled_err ~= nil end))
        assert.equal("timeout", stalled_err)
        staller:close()
        l:close()
      end)
    end)

    it("a client handshake against a silent server honours the connect timeout", function()
      H.run(function()
        local l = assert(socket.listen("tcp", "127.0.0.1", 0)) -- plain, never answers
        local _, port = l:getsockname()
        local held
        lunet.spawn(function() held = l:accept() end)
        local c, err = socket.connect("127.0.0.1", port, { tls = { verify = false }, timeout = 100 })
        assert.is_nil(c)
        assert.equal("timeout", err)
        if held then held:close() end
        l:close()
      end)
    end)

    it("truncation without close_notify is an error, not an end of stream", function()
      H.run(function()
        local l, port = tls_listener("server")
        lunet.spawn(function()
          local s = assert(l:accept())
          s:write("part of a stream")
          s:read("*a")
          s:close()
        end)
        -- A plain TCP proxy that forwards the server's bytes, then cuts the
        -- client off without forwarding a close_notify.
        local p = assert(socket.listen("tcp", "127.0.0.1", 0))
        local _, pport = p:getsockname()
        lunet.spawn(function()
          local down = assert(p:accept())
          local up = assert(socket.connect("127.0.0.1", port))
          lunet.spawn(function()
            while true do
              local d = down:read()
              if not d or up:write(d) then break end
            end
          end)
          local got = 0
          while got < 2 do -- handshake flight, then the data record
            local d = up:read()
            if not d then break end
            down:write(d)
            if #d > 0 then got = got + 1 end
          end
          lunet.sleep(50)
          down:close() -- FIN with no close_notify
          up:close()
        end)
        local c = assert(socket.connect("localhost", pport, { tls = { ca_file = cert("ca") } }))
        local data, err, partial = c:read("*a")
        assert.is_nil(data)
        assert.matches("without close_notify", err)
        assert.is_string(partial)
        c:close()
        p:close(); l:close()
      end)
    end)

    it("a renegotiation attempt (TLS 1.2) is refused with a clear error; the server goes on", function()
      local errs = {}
      H.run(function()
        local l, port = tls_listener("server")
        lunet.spawn(function()
          while true do
            local s = l:accept()
            if not s then return end
            lunet.spawn(function()
              while true do
                local line, err = s:read("*l")
                if not line then errs[#errs + 1] = err; break end
                s:write(line .. "\n")
              end
              s:close()
            end)
          end
        end)
        spawn_bg(("(printf 'hello\\n'; sleep 0.3; printf 'R\\n'; sleep 1) | openssl s_client -connect 127.0.0.1:%d -tls1_2 -CAfile %s -servername localhost")
          :format(port, cert("ca")))
        assert(H.eventually(function() return #errs >= 1 end, 10000), "the renegotiating client was dropped")
        assert.matches("^tls: ", errs[1])
        local c = assert(socket.connect("localhost", port, { tls = { ca_file = cert("ca") } }))
        c:write("still here\n")
        assert.equal("still here", c:read("*l"))
        c:close()
        l:close()
      end, 15000)
    end)

    -- (10,000 on the release build, as the issue asks; 1,000 on the slower
    -- tracing build.)
    local FAILED = (os.getenv("LUNET_BUILD") or ""):match("release") and 10000 or 1000
    it(FAILED .. " failed handshakes leak no descriptors and no memory", function()
      H.run(function()
        local l, port = tls_listener("server")
        lunet.spawn(function()
          while true do
            local s = l:accept()
            if not s then return end
            lunet.spawn(function() s:read("*l"); s:close() end)
          end
        end)
        local function fail_some(n)
          for _ = 1, n do
            local c = assert(socket.connect("127.0.0.1", port))
            c:write("nope\r\n\r\n")
            c:read("*a")
            c:close()
          end
          lunet.sleep(20)
          -- Twice: a finalised handle's memory is freed by the next cycle.
          collectgarbage("collect")
          collectgarbage("collect")
        end
        fail_some(2000) -- (warm-up: buffers, caches and compiled traces reach their size)
        local fds, heap = H.open_fds(), collectgarbage("count")
        fail_some(FAILED)
        assert.is_true(H.open_fds() <= fds + 2)
        local grown = collectgarbage("count") - heap
        assert.is_true(grown < 256, ("Lua heap grew by %.0f KiB"):format(grown))
        l:close()
      end, 120000)
    end)
  end)
end)
