-- For the idle-connection memory measurement (bench/net.sh): accepts
-- connections and only keeps their handles in a table, with no coroutine
-- reading them, so the RSS it gains per connection is what lunet's socket
-- layer itself costs (compare bench/http_lunet.lua, where every connection
-- also has a coroutine parked in socket.read).
--
--   lunet-run bench/idle_lunet.lua [port]     (0 or nothing = any free port)
--
-- SIGUSR1 prints the Lua heap after a full collection; SIGTERM exits.
local lunet = require("lunet")
local socket = require("lunet.socket")

local listener = assert(socket.listen("tcp", "127.0.0.1", tonumber(arg[1]) or 0))
local _, port = socket.getsockname(listener)
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()

local held = {}
lunet.spawn(function()
  while true do
    local conn = socket.accept(listener)
    if not conn then break end
    held[#held + 1] = conn
  end
end)

require("bench.server_signals")()
