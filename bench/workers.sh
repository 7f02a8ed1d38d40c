#!/usr/bin/env bash
# Benchmarks of `lunet-run --workers` (run by `make bench`), with the HTTP
# keep-alive server bench/http_workers.lua and wrk on 127.0.0.1:
#
#   1. CPU per request, 1 worker against 2 workers: the server (supervisor
#      and workers) pinned to CPU 0, wrk to CPU 1, so both runs have the same
#      core and the only difference is the number of worker processes.
#      Worker CPU time (utime+stime from /proc) divided by the requests wrk
#      completed; reported as the same-run ratio 2 workers / 1 worker
#      (median and range over BENCH_ROUNDS rounds). Target: within 5 %.
#   2. Reload under load: 2 workers (unpinned), wrk -t2 -c32 for
#      BENCH_SECONDS with a SIGHUP every second. Target: zero socket errors and
#      zero non-2xx responses.
#   3. The same with a new connection per request (wrk -H "Connection:
#      close"), with the machine's net.ipv4.tcp_migrate_req and, where
#      `unshare -n` is allowed, in a private network namespace with it set
#      to 1. Reported, no target: without migration the kernel resets
#      connections queued on a listener as it closes (README "Workers").
#
# A benchmark, not a test: it prints what it measured and whether the targets
# were met, and fails only if something could not run.
# Environment: BUILD (default build/release), BENCH_SECONDS (default 5),
# BENCH_ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build/release}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
RUN=$(mktemp -d /tmp/lunet-bench-workers.XXXXXX)
SUP=
source bench/lib.sh

cleanup() {
  if [ -n "$SUP" ]; then
    kill -KILL $(pgrep -P "$SUP") "$SUP" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT

for tool in wrk taskset luajit; do
  command -v "$tool" >/dev/null || { echo "workers.sh: $tool is missing (scripts/deps.sh bench)" >&2; exit 1; }
done

# reload_round CONNECTION_HEADER: one round of part 2 or 3; prints a line.
reload_round() {
  start 2
  ( for _ in $(seq 1 $((SECS - 1))); do sleep 1; kill -HUP "$SUP" 2>/dev/null || true; done ) &
  local hups=$!
  wrk -t2 -c32 -d"${SECS}s" ${1:+-H "$1"} "http://127.0.0.1:$PORT/" >"$RUN/wrk" 2>&1
  wait "$hups" || true
  local reloads errors non2xx
  reloads=$(grep -c "serving; generation" "$RUN/log" || true)
  errors=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$RUN/wrk")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$RUN/wrk")
  printf '%s requests, %d reloads, socket errors %d, non-2xx %d\n' \
    "$(wrk_requests "$RUN/wrk")" "$reloads" "${errors:-0}" "${non2xx:-0}"
  stop
}


start() { # start N [taskset prefix...]
  local n=$1; shift
  PORT=$(free_port)
  "$@" "$BUILD/lunet-run" --workers "$n" --drain-timeout 5 bench/http_workers.lua "$PORT" >"$RUN/log" 2>&1 &
  SUP=$!
  wait_port "$PORT" || { cat "$RUN/log" >&2; exit 1; }
  for _ in $(seq 1 100); do
    [ "$(pgrep -P "$SUP" | wc -l)" -eq "$n" ] && break
    sleep 0.05
  done
  sleep 0.3 # every worker's main chunk has run
}

stop() {
  kill -TERM "$SUP" 2>/dev/null || true
  wait "$SUP" 2>/dev/null || true
  SUP=
}

workers_ticks() { # sum of utime+stime over the supervisor's children
  local t=0 p
  for p in $(pgrep -P "$SUP"); do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}

# cpu_per_request N: microseconds of worker CPU per request, one run.
cpu_per_request() {
  start "$1" taskset -c 0
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 # warm-up
  local t0 t1
  t0=$(workers_ticks)
  taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$RUN/wrk" 2>&1
  t1=$(workers_ticks)
  local req
  req=$(wrk_requests "$RUN/wrk")
  stop
  calc "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $req"
}

if [ "${1:-}" = --netns-round ]; then # part 3 inside a private network namespace
  ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 || exit 1
  reload_round "Connection: close"
  exit
fi

echo "== lunet-run --workers: CPU per request, 1 worker vs 2 workers (server on CPU 0, wrk on CPU 1, ${SECS}s x $ROUNDS)"
one=() two=() ratio=()
for r in $(seq 1 "$ROUNDS"); do
  a=$(cpu_per_request 1)
  b=$(cpu_per_request 2)
  one+=("$a") two+=("$b") ratio+=("$(calc "$b / $a")")
  printf '  round %d: 1 worker %.2f us/request, 2 workers %.2f us/request, ratio %.3f\n' "$r" "$a" "$b" "${ratio[-1]}"
done
med=$(median "${ratio[@]}")
echo "  1 worker:  $(median_range "${one[@]}") us/request"
echo "  2 workers: $(median_range "${two[@]}") us/request"
echo "  ratio 2/1: $(median_range "${ratio[@]}")  (target: within 5 %: $(awk -v m="$med" 'BEGIN { print (m <= 1.05 && m >= 0.95) ? "met" : "NOT met" }'))"

echo "== lunet-run --workers 2: reload (SIGHUP every second) under wrk -t2 -c32, ${SECS}s x $ROUNDS"
for r in $(seq 1 "$ROUNDS"); do
  line=$(reload_round "")
  case "$line" in *"socket errors 0, non-2xx 0"*) verdict=met ;; *) verdict="NOT met" ;; esac
  echo "  round $r: $line (target 0 and 0: $verdict)"
done

echo "== the same with a new connection per request (Connection: close), ${SECS}s x $ROUNDS"
migrate=$(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null || echo "?")
for r in $(seq 1 "$ROUNDS"); do
  echo "  round $r, tcp_migrate_req=$migrate: $(reload_round "Connection: close")"
  if unshare -n true 2>/dev/null; then
    echo "  round $r, private netns, tcp_migrate_req=1: $(BUILD=$BUILD BENCH_SECONDS=$SECS unshare -n "$0" --netns-round)"
  fi
done
