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
  start 2
  ( for _ in $(seq 1 $((SECS - 1))); do sleep 1; kill -HUP "$SUP" 2>/dev/null || true; done ) &
  hups=$!
  wrk -t2 -c32 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$RUN/wrk" 2>&1
  wait "$hups" || true
  reloads=$(grep -c "serving; generation" "$RUN/log" || true)
  errors=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$RUN/wrk")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$RUN/wrk")
  printf '  round %d: %s requests, %d reloads, socket errors %d, non-2xx %d (target 0 and 0: %s)\n' "$r" \
    "$(wrk_requests "$RUN/wrk")" "$reloads" "${errors:-0}" "${non2xx:-0}" \
    "$([ "${errors:-0}" -eq 0 ] && [ "${non2xx:-0}" -eq 0 ] && echo met || echo "NOT met")"
  stop
done
