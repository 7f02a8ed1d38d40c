-- lunet.http's shared wire helpers (server and client): called once per Lua
-- state (the chunk returns a function) with the native functions (parsing with httparse, chunk sizes,
-- WebSocket masking); returns them with the Lua helpers added.
return function(N)
local socket = require("lunet.socket")
local read = socket.read
local format, concat, type, pairs = string.format, table.concat, type, pairs

local W = {}
for k, v in pairs(N) do W[k] = v end
local chunk_size = N.chunk_size

W.REASONS = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout",
  [409] = "Conflict", [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable", [417] = "Expectation Failed", [422] = "Unprocessable Content",
  [426] = "Upgrade Required", [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

-- Header names are tokens (RFC 9110 5.6.2); values carry no CR, LF or NUL.
local BAD_NAME, BAD_VALUE = "[^%w!#$%%&'*+%-.^_`|~]", "[\r\n%z]"

-- Names and values already found valid (most responses repeat the same
-- fields); emptied when it grows past a bound.
local names_ok, values_ok, nchecked = {}, {}, 0

--- Checks one header field; raises (at the caller's caller) for a bad one.
function W.check_field(name, value)
  if names_ok[name] and values_ok[value] then return end
  if type(name) ~= "string" or name == "" or name:find(BAD_NAME) then
    error("invalid header name " .. format("%q", tostring(name)), 3)
  end
  local tv = type(value)
  if tv == "number" then return end
  if tv ~= "string" then
    error(format("header %s: value must be a string or number (got %s)", name, tv), 3)
  end
  if value:find(BAD_VALUE) then
    error(format("header %s: value contains CR, LF or NUL", name), 3)
  end
  if nchecked >= 4096 then names_ok, values_ok, nchecked = {}, {}, 0 end
  names_ok[name], values_ok[value], nchecked = true, true, nchecked + 1
end

--- Reads the next piece of a chunked body. `st` = {left = 0, total = 0}
-- keeps the place between calls (bytes left in the current chunk, bytes so
-- far). Returns at most `most` bytes of data, false at the end (trailer
-- fields read and dropped), or nil, err where err is "body too large" (the
-- chunks announce more than `max` bytes), "malformed chunked body" or the
-- socket's error ("timeout", "closed", ...).
local function chunked_piece(conn, st, max, most)
  local left = st.left
  if left == 0 then
    local line, err = read(conn, "*L", { max = 1024 })
    if not line then
      return nil, err == "too long" and "malformed chunked body" or err
    end
    local size = chunk_size(line)
    if not size then return nil, "malformed chunked body" end
    if size == 0 then
      local trailer = 0
      while true do
        line, err = read(conn, "*l", { max = 8192 })
        if not line then
          return nil, err == "too long" and "malformed chunked body" or err
        end
        if line == "" then return false end
        trailer = trailer + #line
        if trailer > 8192 then return nil, "malformed chunked body" end
      end
    end
    st.total = st.total + size
    if st.total > max then return nil, "body too large" end
    left = size
  end
  local n = left < most and left or most
  local data, derr = read(conn, n)
  if not data then return nil, derr end
  left = left - n
  st.left = left
  if left == 0 then -- the chunk's data is followed by CRLF
    local crlf, cerr = read(conn, 2)
    if not crlf then return nil, cerr end
    if crlf ~= "\r\n" then return nil, "malformed chunked body" end
  end
  return data
end
W.chunked_piece = chunked_piece

--- Reads a chunked body (after the head): the decoded bytes, or nil, err
-- (as chunked_piece). `sink(data)`, when given, receives the body instead,
-- in pieces of at most 64 KiB (a chunk may be any size up to `max`).
function W.read_chunked(conn, max, sink)
  local st, parts, n = { left = 0, total = 0 }, {}, 0
  local most = sink and 65536 or max
  while true do
    local data, err = chunked_piece(conn, st, max, most)
    if data == false then return concat(parts) end
    if not data then return nil, err end
    if sink then
      local ok, serr = sink(data)
      if not ok then return nil, serr end
    else
      n = n + 1
      parts[n] = data
    end
  end
end

--- One chunk of a chunked body, as pieces for a vectored write.
function W.chunk(s)
  return { format("%x\r\n", #s), s, "\r\n" }
end

return W
end
