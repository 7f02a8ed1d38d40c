-- A TCP chat room: every line a client sends goes to every other client.
--
--   build/release/lunet-run examples/07_chat.lua [port]   serve (default 7000)
--   build/release/lunet-run examples/07_chat.lua demo     three clients chat over
--                                                         loopback, then it exits
--
-- A client's first line is its name. Each client has an outbox, a channel
-- drained by a writer task that alone writes to the connection, so a
-- broadcast never waits for a slow reader: a client whose outbox is full is
-- dropped. A client's reader and writer are a task group; whichever ends
-- first (the peer left, a write failed, the outbox was closed) ends the
-- client, and the group's cancel stops the other.
local lunet = require("lunet")
local socket = require("lunet.socket")

local OUTBOX = 64     -- lines queued for one client before it counts as stuck
local clients = {}    -- connection -> its outbox

-- An iterator over the lines (without their end) a connection receives,
-- each at most 4 KiB; it ends with the connection or at an overlong line.
local function lines(conn)
  return function()
    return (socket.read(conn, "*l", { max = 4096 }))
  end
end

-- Queues `text` for every client but `from`; never waits (a send on a
-- buffered channel with room returns at once).
local function broadcast(from, text)
  for conn, outbox in pairs(clients) do
    if conn ~= from then
      if #outbox < OUTBOX then
        outbox:send(text)
      else
        outbox:close() -- its writer ends, and with it the client
      end
    end
  end
end

local function serve(conn)
  local next_line = lines(conn)
  local name = next_line()
  if not name then
    socket.close(conn)
    return
  end
  local outbox = lunet.channel(OUTBOX)
  clients[conn] = outbox
  outbox:send("* welcome, " .. name .. "\n")
  broadcast(conn, "* " .. name .. " joined\n")

  local g = lunet.group()
  local writer = g:spawn(function()
    while true do
      local text = outbox:recv()
      if text == nil then return end        -- closed: dropped as too slow
      if socket.write(conn, text) then return end -- the write failed
    end
  end)
  local reader = g:spawn(function()
    for line in next_line do
      broadcast(conn, name .. ": " .. line .. "\n")
    end
  end)
  lunet.wait_any({ reader, writer })
  g:cancel()
  g:wait()
  clients[conn] = nil
  socket.close(conn)
  broadcast(nil, "* " .. name .. " left\n")
end

local function accept_loop(listener)
  while true do
    local conn = socket.accept(listener)
    if not conn then return end -- the listener was closed
    lunet.spawn(serve, conn)
  end
end

-- Three clients: each says its name and waits until all three are in; then
-- alice says hello and the others print what they hear.
local function demo(listener, port)
  local ready, heard = lunet.waitgroup(), lunet.waitgroup()
  ready:add(3)
  heard:add(2)
  local g = lunet.group()
  for _, name in ipairs({ "alice", "bob", "carol" }) do
    g:spawn(function()
      local conn = assert(socket.connect("127.0.0.1", port))
      local next_line = lines(conn)
      socket.write(conn, name .. "\n")
      print(name .. " got: " .. tostring(next_line()))
      ready:done()
      assert(ready:wait(5000))
      if name == "alice" then
        socket.write(conn, "hello, everyone\n")
        assert(heard:wait(5000))
      else
        local line
        repeat line = next_line() until line == nil or line:find("^alice: ")
        print(name .. " got: " .. tostring(line))
        heard:done()
      end
      socket.close(conn)
    end)
  end
  print("chat demo:", g:wait(10000))
  socket.close(listener)
end

local mode = arg and arg[1]
local listener = assert(socket.listen("tcp", "127.0.0.1", mode == "demo" and 0 or tonumber(mode) or 7000))
local _, port = socket.getsockname(listener)
lunet.spawn(accept_loop, listener)
if mode == "demo" then
  lunet.spawn(demo, listener, port)
else
  print(("chat on 127.0.0.1:%d (try: nc 127.0.0.1 %d)"):format(port, port))
  io.stdout:flush()
end
