#!/usr/bin/env bash
# Runs every example as a test against a build folder (default build/release)
# and checks its output.
set -euo pipefail
build=${1:-build/release}
pass=0 fail=0

check() { # name, command, expected-substring...
  local name=$1 cmd=$2; shift 2
  local out
  if ! out=$(timeout 60 bash -c "$cmd" 2>&1); then
    echo "FAIL $name: exit status $?"; echo "$out" | sed 's/^/    /'; fail=$((fail+1)); return
  fi
  for want in "$@"; do
    if ! grep -qF -- "$want" <<<"$out"; then
      echo "FAIL $name: output lacks '$want'"; echo "$out" | sed 's/^/    /'; fail=$((fail+1)); return
    fi
  done
  echo "ok   $name"; pass=$((pass+1))
}

# Starts an HTTP example on a free port, runs curl requests against it (each
# argument: "curl arguments|expected text", with @ standing for the base URL;
# "run <command>|expected text" runs a command instead of curl),
# then stops it with SIGTERM and expects a clean exit.
check_http() { # name, script, checks...
  local name=$1 script=$2; shift 2
  local log port="" pid problem=""
  log=$(mktemp)
  "$build/lunet-run" "$script" 0 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    problem="did not print its address"
  else
    for spec in "$@"; do
      local args=${spec%%|*} want=${spec#*|} out
      args=${args//@/http://127.0.0.1:$port}
      if [ "${args#run }" != "$args" ]; then
        out=$(eval "timeout 30 ${args#run }" 2>&1 || true)
      else
        out=$(eval "curl -sS --max-time 10 $args" 2>&1 || true)
      fi
      local line missing=""
      while IFS= read -r line; do # every line of the expected text
        grep -qF -- "$line" <<<"$out" || missing=$line
      done <<<"$want"
      if [ -n "$missing" ]; then
        problem="$args: expected '$missing', got: $out"
        break
      fi
    done
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  wait "$pid" || rc=$?
  if [ -z "$problem" ] && [ "$rc" -ne 0 ]; then problem="exit status $rc after SIGTERM"; fi
  if [ -z "$problem" ] && ! grep -q "shutting down" "$log"; then problem="no shutdown message"; fi
  if [ -n "$problem" ]; then
    echo "FAIL $name: $problem"; sed 's/^/    /' "$log"; fail=$((fail+1))
  else
    echo "ok   $name"; pass=$((pass+1))
  fi
  rm -f "$log"
}

check hello "$build/lunet-run examples/hello.lua" \
  "main chunk finished" "fast   tick 3 (every 10 ms)" "medium done" "slow   done"

check 07_chat "$build/lunet-run examples/07_chat.lua demo" \
  "alice got: * welcome, alice" "bob got: alice: hello, everyone" "carol got: alice: hello, everyone" "chat demo:	true"

check 03_db_sqlite3 "$build/lunet-run examples/03_db_sqlite3.lua" \
  "users kept from an earlier run: 0" "inserted Miles O'Brien    id=2" "lookup by name with a quote: 1 row, email miles@example.org" \
  "3 rows updated" "deleted users without email: 1" "#2  Miles O'Brien    miles@example.org      age 42" \
  "no such table: missing_table" "escaped:	Miles O''Brien" "done"
# 01 and 02 on lunet.http, and the same two servers on plain lunet.socket
# (examples/socket/, through examples/lib/tinyhttp.lua): same behaviour.
for dir in "" socket/; do
  check_http ${dir}01_http_json examples/${dir}01_http_json.lua \
    '@/hello|{"message":"hello from lunet","method":"GET","path":"/hello","served":1}' \
    '-X POST --data x @/p|"method":"POST"' \
    '-v @/a @/b|Re-using existing connection' \
    '-v -H "Connection: close" @/c|Connection: close' \
    '-i --http1.0 @/d|HTTP/1.1 200 OK'

  check_http ${dir}02_http_routing examples/${dir}02_http_routing.lua \
    '@/users/42|{"user":{"id":42,"name":"user42"}}' \
    '@/users/42/posts/7|{"post":"7","user":"42"}' \
    '-X POST --data ping-pong @/echo|ping-pong' \
    '-i -X DELETE @/users/1|405 Method Not Allowed' \
    '-i @/missing|404 Not Found' \
    '@/slow/30|{"slept_ms":30}' \
    '-v @/ @/users/1|Re-using existing connection'
done
# What only lunet.http does: chunked uploads.
check_http 02_http_routing_chunked examples/02_http_routing.lua \
  '-H "Transfer-Encoding: chunked" --data-binary chunked-upload @/echo|chunked-upload'

# MCP over SSE, with a client speaking the protocol (scripts/mcp_sse_client.py).
check_http 06_mcp_sse examples/06_mcp_sse.lua \
  'run /usr/bin/python3 scripts/mcp_sse_client.py @/sse|initialize 2024-11-05 lunet-notes
tools search_notes
search coroutine: Coroutines: Every connection is served by its own coroutine; a wait yields to the event loop.
search nothingmatches: no notes match nothingmatches
unknown method error -32601
ping {}
malformed json 400 -32700
done' \
  '-N --max-time 1 @/sse|event: endpoint' \
  '-i @/nope|404 Not Found'

dbfile=$(mktemp -u /tmp/lunet-example-XXXXXX.db)
# Twice on one file: the second run finds the first run's rows.
check 03_db_sqlite3_file "$build/lunet-run examples/03_db_sqlite3.lua $dbfile >/dev/null && $build/lunet-run examples/03_db_sqlite3.lua $dbfile" \
  "users kept from an earlier run: 3" "done"
rm -f "$dbfile"

# Against the server in LUNET_DB_* (default: the local test server), in a
# table of its own that it drops again.
check 04_db_mysql "$build/lunet-run examples/04_db_mysql.lua" \
  "inserted Miles O'Brien    id=2" "lookup by name with a quote: 1 row, email miles@example.org" \
  "3 rows updated" "after a rolled-back delete: 4 users" "deleted users without email: 1" \
  "#2  Miles O'Brien    miles@example.org      age 42" "Table 'missing_table_" \
  "Duplicate entry 'ada@example.org' for key 'email'" "escaped:	Miles O\\'Brien" "done"
mysql_left=$(mariadb -h"${LUNET_DB_HOST:-127.0.0.1}" -P"${LUNET_DB_PORT:-3306}" -u"${LUNET_DB_USER:-root}" \
  ${LUNET_DB_PASS:+-p"$LUNET_DB_PASS"} -N -e "SHOW TABLES LIKE 'example_users_%'" "${LUNET_DB_NAME:-test}" 2>&1 | wc -l)
if [ "$mysql_left" -eq 0 ]; then echo "ok   04_db_mysql dropped its table"; pass=$((pass+1))
else echo "FAIL 04_db_mysql left tables behind"; fail=$((fail+1)); fi

# Against the PostgreSQL server of LUNET_DB_* (default: the local test server);
# the example works in a table named for its run and drops it.
check 05_db_postgres "$build/lunet-run examples/05_db_postgres.lua" \
  "inserted Miles O'Brien    id=2" "avatar stored and read back: 16 bytes, identical: true" \
  "lookup by name with a quote: 1 row, email miles@example.org, active true" \
  "3 rows updated" "after a rolled-back DELETE: 4 users" "deleted users without email: 1" \
  "#2  Miles O'Brien    miles@example.org      age 42" 'relation "missing_table" does not exist' \
  "duplicate key value violates unique constraint" "escaped:	Miles O''Brien" "dropped: true" "done"

echo "examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
