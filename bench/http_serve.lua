-- The lunet.http side of the HTTP keep-alive benchmark (bench/net.sh): the
-- same fixed answer as bench/http_lunet.lua, nginx and luv, but through
-- http.serve (parsed heads, a request table, the handler, one vectored
-- write per response), so the numbers are what a real lunet.http
-- application pays for the protocol.
--
--   lunet-run bench/http_serve.lua [port]     (0 or nothing = any free port)
--
-- SIGUSR1 prints the Lua heap after a full collection; SIGTERM exits.
local lunet = require("lunet")
local http = require("lunet.http")

local HEADERS = { ["Content-Type"] = "text/plain" }
local BODY = "Hello, World!"

local srv = assert(http.serve({ port = tonumber(arg[1]) or 0 }, function()
  return 200, HEADERS, BODY
end))
local _, port = srv:address()
print("listening on 127.0.0.1:" .. port)
io.stdout:flush()

require("bench.server_signals")()
