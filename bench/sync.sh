#!/usr/bin/env bash
# Benchmarks of the coordination primitives (issue 13), this checkout only,
# every ratio taken within one run (one process per measurement, rounds
# repeated so machine noise shows as a range):
#
#   bench/sync.sh            BENCH_ROUNDS (default 7), BENCH_N (default 200000)
#
# Measures:
#   - channel ping-pong round trip between two tasks (rendezvous and
#     capacity 1) against a sleep(0) round trip of one task, same process;
#   - 10,000 tasks waiting on one channel that is closed: how many have
#     resumed when a sleep(0) queued right after the close comes back, and ns
#     per woken task;
#   - memory of 100,000 tasks parked in recv on one channel against 100,000
#     parked in a 60 s sleep (RSS and Lua heap KiB per 1,000 tasks).
# Prints medians and ranges; fails only if something could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-7}
B=${BENCH_BUILD:-build/release}
echo "sync: $B at $(git rev-parse --short HEAD), $ROUNDS rounds"

declare -A V
add() { V[$1]="${V[$1]:-} $2"; }
run() { "$B/lunet-run" bench/sync.lua "$1"; }

for ((r = 1; r <= ROUNDS; r++)); do
  for what in pingpong close memory_sleep memory_recv; do
    while read -r k v; do add "$k" "$v"; done < <(run "$what")
  done
  add ratio_mem_rss "$(calc "${V[mem_rss_kb_per_1k_recv]##* } / ${V[mem_rss_kb_per_1k_sleep]##* }")"
  add ratio_mem_heap "$(calc "${V[mem_heap_kb_per_1k_recv]##* } / ${V[mem_heap_kb_per_1k_sleep]##* }")"
  echo "round $r done" >&2
done

show() { median_range ${V[$1]}; }
row() { printf '%-58s %s\n' "$1" "$(show "$2")"; }
printf '%-58s %s\n' "benchmark" "median (min-max)"
row "sleep(0) round trip, 1 task, ns" sleep0_ns
row "channel ping-pong round trip (rendezvous), ns" pingpong_ns
row "channel ping-pong round trip (capacity 1), ns" pingpong_buffered_ns
row "ping-pong / sleep(0), rendezvous (same run)" ratio_pingpong
row "ping-pong / sleep(0), capacity 1 (same run)" ratio_pingpong_buffered
row "10,000 receivers, close: resumed before a sleep(0) after it" close_woken_in_next_batch
row "10,000 receivers, close: ns per woken task" close_wake_ns_per_task
row "100k tasks parked in sleep, RSS KiB/1k" mem_rss_kb_per_1k_sleep
row "100k tasks parked in recv, RSS KiB/1k" mem_rss_kb_per_1k_recv
row "100k tasks parked in sleep, Lua heap KiB/1k" mem_heap_kb_per_1k_sleep
row "100k tasks parked in recv, Lua heap KiB/1k" mem_heap_kb_per_1k_recv
row "recv / sleep, RSS" ratio_mem_rss
row "recv / sleep, Lua heap" ratio_mem_heap
echo "targets: ping-pong / sleep(0) <= 2; all 10,000 resumed in one batch; recv / sleep memory <= 1"
