#!/usr/bin/env bash
# Databases under concurrency, side by side in one run: point SELECTs by
# primary key from 16 coroutines on 16 connections (bench/dbconc.lua) for
# sqlite3 (file database, WAL), mysql and postgres, on this build and on a
# base build, with libuv thread pools of 4, 8 and 16 threads. Rounds alternate
# between every combination, so machine noise hits all of them alike.
#
#   bench/dbconc.sh [BASE_BUILD_DIR]   default: $BENCH_BASE_BUILD, else this build only
#
# Prints, per combination, the median statements/s with the range, and the
# median process CPU time per statement. Also the synchronous rusqlite floor
# (one thread, statements/s = statements per CPU-second) when
# LUNET_SQLITE3_FLOOR names the sqlite3_floor example binary.
# Environment: BENCH_ROUNDS (default 5), BENCH_DB_N (statements per run),
# BENCH_DRIVERS (default "sqlite3 mysql postgres").
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${BENCH_ROUNDS:-5}
BASE=${1:-${BENCH_BASE_BUILD:-}}
BUILDS=("build/release")
[ -n "$BASE" ] && BUILDS+=("$BASE")
OUT=$(mktemp /tmp/lunet-dbconc.XXXXXX)
trap 'rm -f "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
  for db in ${BENCH_DRIVERS:-sqlite3 mysql postgres}; do
    for threads in 4 8 16; do
      for b in "${BUILDS[@]}"; do
        line=$(cd "$PWD" && DB=$db UV_THREADPOOL_SIZE=$threads LUA_PATH="./?.lua;;" "$b/lunet-run" bench/dbconc.lua)
        echo "$b $threads $line" >> "$OUT"
      done
    done
  done
done
if [ -n "${LUNET_SQLITE3_FLOOR:-}" ]; then
  for round in $(seq "$ROUNDS"); do
    "$LUNET_SQLITE3_FLOOR" .tmp/bench-dbconc-floor.db 10000 "${BENCH_DB_N:-100000}" | awk '/^select_per_s/ {print "floor 1 sqlite3", $2, 1e6 / $2}' >> "$OUT"
  done
  rm -f .tmp/bench-dbconc-floor.db*
fi
printf '%-16s %-8s %7s %10s %19s %12s\n' build driver threads "median/s" "range/s" "us CPU/stmt"
sort -k1,1 -k3,3 -k2,2n "$OUT" | awk '
  function flush() {
    if (n == 0) return
    asort(r); asort(c)
    printf "%-16s %-8s %7s %10.0f %9.0f-%-9.0f %12.2f\n", b, d, t, r[int((n + 1) / 2)], r[1], r[n], c[int((n + 1) / 2)]
    n = 0; delete r; delete c
  }
  { key = $1 " " $2 " " $3
    if (key != last) { flush(); last = key; b = $1; t = $2; d = $3 }
    n++; r[n] = $4; c[n] = $5 }
  END { flush() }'
