#!/usr/bin/env bash
# RSS of the MCP example (examples/06_mcp_sse.lua) idle, and with N open SSE
# sessions (default 100), each having received its endpoint event; against
# the seed's table (C lunet's MCP server: 7 MB). Run by `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BUILD=${BUILD:-build/release}
N=${MCP_SESSIONS:-100}
port=$(free_port)
"$BUILD/lunet-run" examples/06_mcp_sse.lua "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_port "$port"
sleep 0.3
idle=$(rss_kb "$server")
# A lunet client holding N sessions open (it sleeps until killed).
client=$(mktemp /tmp/lunet-mcp-client-XXXXXX.lua)
out=$(mktemp /tmp/lunet-mcp-client-XXXXXX.out)
cat >"$client" <<'LUA'
local lunet, socket = require("lunet"), require("lunet.socket")
local port, n = tonumber(arg[1]), tonumber(arg[2])
local held, ready = {}, 0
for i = 1, n do
  lunet.spawn(function()
    local c = assert(socket.connect("127.0.0.1", port))
    socket.write(c, "GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    assert(socket.read_until(c, "event: endpoint"))
    held[i] = c
    ready = ready + 1
    if ready == n then print("ready") io.stdout:flush() end
    lunet.sleep(600000)
  end)
end
LUA
"$BUILD/lunet-run" "$client" "$port" "$N" >"$out" 2>&1 &
holder=$!
trap 'kill $server $holder 2>/dev/null || true; rm -f "$client" "$out"' EXIT
for _ in $(seq 1 600); do grep -q ready "$out" && break; sleep 0.05; done
grep -q ready "$out" || { echo "mcp_sse.sh: the client did not open its sessions:" >&2; cat "$out" >&2; exit 1; }
sleep 0.3
busy=$(rss_kb "$server")
printf 'MCP example RSS: idle %d KiB, with %d SSE sessions %d KiB (%.2f KiB per session); C lunet (seed table): 7 MB\n' \
  "$idle" "$N" "$busy" "$(calc "($busy - $idle) / $N")"
