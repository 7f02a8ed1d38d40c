#!/usr/bin/env bash
# Real-component test of `lunet-run --workers` (run by `make test`): a real
# two-worker HTTP server (bench/http_workers.lua) on loopback, driven by curl
# and wrk.
#
#   1. requests are answered by more than one process;
#   2. a reload (SIGHUP) in the middle of a wrk run: zero socket errors, zero
#      non-2xx responses, and the new generation answers afterwards;
#   3. a reload with code that fails to load keeps the old generation
#      serving; a worker killed with SIGKILL is restarted (and logged);
#   4. SIGTERM with an idle keep-alive connection open: every process ends
#      within the drain timeout (the idle connection is closed by the worker);
#   5. SIGTERM with a connection that never finishes its request, then a
#      second SIGTERM: everything ends at once, without waiting for the drain.
#   6. reloads under wrk with a new connection per request, in a private
#      network namespace with net.ipv4.tcp_migrate_req=1 (README "Workers"):
#      zero socket errors. Skipped where `unshare -n` is not allowed.
#
# Every wait is bounded; nothing here asserts a speed.
# Usage: scripts/test-workers.sh [build dir, default build/release]
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
source bench/lib.sh

if [ "$BUILD" = --netns ]; then # part 6, inside its own network namespace
  BUILD=$2
  ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 || exit 1
  PORT=$(free_port)
  "$BUILD/lunet-run" --workers 2 --drain-timeout 5 bench/http_workers.lua "$PORT" >/tmp/lunet-netns.$$.log 2>&1 &
  sup=$!
  wait_port "$PORT" || exit 1
  sleep 0.3
  ( sleep 1; kill -HUP $sup; sleep 1; kill -HUP $sup ) &
  out=$(wrk -t2 -c32 -d3s -H "Connection: close" "http://127.0.0.1:$PORT/" 2>&1)
  wait $!
  kill -TERM $sup; wait $sup
  echo "$out" | grep "requests in"
  reloads=$(grep -c "serving; generation" /tmp/lunet-netns.$$.log)
  rm -f /tmp/lunet-netns.$$.log
  echo "  $reloads reloads"
  if [ "$reloads" -eq 2 ] && ! grep -q "Socket errors\|Non-2xx" <<<"$out"; then exit 0; fi
  grep "Socket errors\|Non-2xx" <<<"$out" >&2 # (what failed, for the report)
  exit 1
fi

for tool in wrk curl luajit; do
  command -v "$tool" >/dev/null || { echo "test-workers: $tool is missing (scripts/deps.sh test)" >&2; exit 1; }
done

RUN=$(mktemp -d /tmp/lunet-workers.XXXXXX)
SUP=
failed=0
cleanup() {
  if [ -n "$SUP" ]; then
    kill -KILL $(worker_pids) "$SUP" 2>/dev/null
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; failed=1; }
pass() { echo "ok: $*"; }

# The worker processes of the running supervisor (its children).
worker_pids() { pgrep -P "$SUP" 2>/dev/null | tr '\n' ' '; }

# wait_until SECONDS CMD...: polls CMD every 50 ms until it succeeds.
wait_until() {
  local limit=$1; shift
  local n=$((limit * 20))
  for _ in $(seq 1 "$n"); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}

start() { # start DRAIN_SECONDS: starts the server with two workers on $PORT
  PORT=$(free_port)
  cp bench/http_workers.lua "$RUN/server.lua"
  "$BUILD/lunet-run" --workers 2 --drain-timeout "$1" "$RUN/server.lua" "$PORT" >"$RUN/log" 2>&1 &
  SUP=$!
  wait_port "$PORT" || { cat "$RUN/log" >&2; exit 1; }
  # Both workers serve once each has a listener: wait for two pids.
  wait_until 10 two_answer || fail "two workers did not both answer"
}

two_answer() {
  local seen
  seen=$(for _ in $(seq 1 20); do curl -s --max-time 2 "http://127.0.0.1:$PORT/"; echo; done | sort -u | grep -c .)
  [ "$seen" -ge 2 ]
}

gone() { ! kill -0 "$SUP" 2>/dev/null; }

# ------------------------------------------------------------------ 1 + 2
start 5
pass "answers from more than one worker process"
before=$(worker_pids)
(sleep 1; kill -HUP "$SUP") &
hup=$!
wrk -t2 -c32 -d3s "http://127.0.0.1:$PORT/" >"$RUN/wrk" 2>&1
wait "$hup"
cat "$RUN/wrk"
grep -q "requests in" "$RUN/wrk" || fail "wrk did not run"
if grep -q "Socket errors" "$RUN/wrk"; then fail "socket errors during the reload"; fi
if grep -q "Non-2xx" "$RUN/wrk"; then fail "non-2xx responses during the reload"; fi
grep -q "generation 2 serving" "$RUN/log" || fail "no new generation after SIGHUP: $(cat "$RUN/log")"
wait_until 10 bash -c "for p in $before; do kill -0 \$p 2>/dev/null && exit 1; done; exit 0" \
  || fail "old workers still running after the reload"
after=$(curl -s "http://127.0.0.1:$PORT/")
case " $before " in *" $after "*) fail "an old worker ($after) answered after the reload" ;; esac
pass "reload under wrk load: no socket error, no non-2xx, new generation serving"

# ------------------------------------------------------------------ 3
serving=$(worker_pids)
echo 'error("broken deploy")' >"$RUN/server.lua"
kill -HUP "$SUP"
wait_until 10 grep -q "reload failed: generation 2 keeps serving" "$RUN/log" || fail "failed reload not reported"
[ "$(worker_pids)" = "$serving" ] || fail "workers changed after a failed reload: $serving -> $(worker_pids)"
answer=$(curl -s "http://127.0.0.1:$PORT/")
case " $serving " in *" $answer "*) ;; *) fail "after a failed reload, '$answer' answered instead of $serving" ;; esac
cp bench/http_workers.lua "$RUN/server.lua"
pass "a reload with code that fails keeps the old generation serving"

victim=$(worker_pids | awk '{ print $1 }')
kill -KILL "$victim"
wait_until 10 grep -q "pid $victim) killed by signal 9; restarting" "$RUN/log" || fail "SIGKILL not logged"
wait_until 10 bash -c "[ \$(pgrep -P $SUP | wc -l) -eq 2 ]" || fail "killed worker not restarted"
wait_until 10 two_answer || fail "restarted worker does not answer"
pass "a worker killed with SIGKILL comes back"

# ------------------------------------------------------------------ 4
exec 3<>"/dev/tcp/127.0.0.1/$PORT" # an idle keep-alive connection
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&3
t0=$(date +%s%N)
kill -TERM "$SUP"
wait_until 8 gone || fail "SIGTERM: supervisor still running after 8 s"
t1=$(date +%s%N)
exec 3<&-
wait "$SUP" 2>/dev/null
rc=$?
[ "$rc" -eq 0 ] || fail "SIGTERM: supervisor exit status $rc"
ms=$(((t1 - t0) / 1000000))
[ "$ms" -lt 5000 ] || fail "SIGTERM: took $ms ms, more than the 5 s drain timeout"
pass "SIGTERM: all processes ended in $ms ms (drain timeout 5 s)"
SUP=

# ------------------------------------------------------------------ 5
start 30
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET / HTTP/1.1\r\n' >&3 # an unfinished request: the drain would wait 30 s
sleep 0.3
workers=$(worker_pids)
kill -TERM "$SUP"
sleep 0.5
kill -TERM "$SUP"
wait_until 5 gone || fail "second SIGTERM: supervisor still running"
wait_until 5 bash -c "for p in $workers; do kill -0 \$p 2>/dev/null && exit 1; done; exit 0" \
  || fail "second SIGTERM: workers still running"
exec 3<&-
grep -q "again: killing every worker" "$RUN/log" || fail "second SIGTERM not logged"
pass "a second SIGTERM ends everything at once"
SUP=

# ------------------------------------------------------------------ 6
if [ -z "${WORKERS_NETNS:-}" ] && unshare -n true 2>/dev/null; then
  if WORKERS_NETNS=1 unshare -n "$0" --netns "$BUILD"; then
    pass "reloads with a connection per request (tcp_migrate_req=1): no socket error"
  else
    fail "reloads with a connection per request (tcp_migrate_req=1)"
  fi
else
  echo "skipped: reloads with a connection per request (unshare -n is not allowed here)"
fi

[ "$failed" -eq 0 ] && echo "test-workers: all passed" || { echo "--- server log"; cat "$RUN/log"; }
exit "$failed"
