-- Opens N TLS connections to 127.0.0.1:PORT (each finishes its handshake and
-- sends one keep-alive request), prints "ready", and holds them until
-- SIGTERM. For bench/tls.sh's memory per idle TLS connection.
--
--   lunet-run bench/tls_idle_client.lua PORT N
local lunet = require("lunet")
local socket = require("lunet.socket")
local signal = require("lunet.signal")

local port, n = assert(tonumber(arg[1])), assert(tonumber(arg[2]))
local held = {}
lunet.spawn(function()
  for i = 1, n do
    local c = assert(socket.connect("127.0.0.1", port, { tls = { verify = false } }))
    assert(c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == nil)
    assert(c:read_until("Hello, World!"))
    held[i] = c
  end
  print("ready")
  io.stdout:flush()
  signal.wait("TERM")
  os.exit(0, true)
end)
