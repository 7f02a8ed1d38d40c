-- The luv side of the HTTP keep-alive benchmark (bench/net.sh): the same
-- fixed response as bench/http_lunet.lua, written with luv's callbacks.
--
--   luajit bench/http_luv.lua [port]     (0 or nothing = any free port)
local uv = require("luv")

local BODY = "Hello, World!"
local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
  .. #BODY .. "\r\n\r\n" .. BODY
local find, sub, rep = string.find, string.sub, string.rep

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))

local function on_connection(err)
  assert(not err, err)
  local conn = uv.new_tcp()
  server:accept(conn)
  conn:nodelay(true)
  local rest = ""
  conn:read_start(function(rerr, data)
    if rerr or not data then
      conn:close()
      return
    end
    if rest ~= "" then data = rest .. data end
    local count, pos = 0, 1
    while true do
      local e = find(data, "\r\n\r\n", pos, true)
      if not e then break end
      count, pos = count + 1, e + 4
    end
    rest = sub(data, pos)
    if count > 0 then conn:write(count == 1 and RESPONSE or rep(RESPONSE, count)) end
  end)
end

assert(server:listen(511, on_connection))
print("listening on 127.0.0.1:" .. server:getsockname().port)
io.stdout:flush()

local term = uv.new_signal()
term:start("sigterm", function() os.exit(0) end)
uv.run()
