-- The Lua side of lunet.socket, run once on the module table: a TLS
-- connect is a connect followed by a handshake, both inside the connect's
-- time limit (`opts.timeout`), and a failed handshake closes the connection.
return function(socket, now)
local raw_connect, handshake, close = socket.connect, socket._starttls, socket.close
local max, type, rawget, error = math.max, type, rawget, error

function socket.connect(host, port, opts)
  local o = opts
  if type(port) == "table" then o = port end -- connect(path, opts)
  local tls = type(o) == "table" and rawget(o, "tls") or nil
  if tls == nil or tls == false then return raw_connect(host, port, opts) end
  if tls ~= true and type(tls) ~= "table" then
    error("socket.connect: option tls must be true or a table (got " .. type(tls) .. ")", 2)
  end
  local t0 = now()
  local conn, err = raw_connect(host, port, opts)
  if not conn then return nil, err end
  local limit = rawget(o, "timeout")
  local left = type(limit) == "number" and max(0, limit - (now() - t0)) or nil
  local ok, terr = handshake(conn, tls, left, host)
  if not ok then
    close(conn)
    return nil, terr
  end
  return conn
end

function socket.starttls(conn, opts)
  return handshake(conn, opts == nil and true or opts)
end

-- lot:next() -> conn, data, nil, waiting | conn, nil, err, waiting | nil, err.
-- A task woken because a connection was queued for it while no libuv
-- callback could hand it over (socket.park found it ready at once) looks
-- again; another task may have taken it meanwhile, then it waits again.
local lot_methods = debug.getregistry()["lunet.socket.parking"].__index
local lot_next = lot_methods._next
function lot_methods.next(lot)
  while true do
    local conn, a, b, c = lot_next(lot)
    if conn ~= nil or a ~= nil then return conn, a, b, c end
  end
end
end
