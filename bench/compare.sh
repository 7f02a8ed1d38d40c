#!/usr/bin/env bash
# Side-by-side benchmark of this checkout against an earlier commit, in one
# run (rounds alternate between the two builds, so machine noise hits both):
#
#   bench/compare.sh [BASE]        BASE: a commit (default: $BENCH_BASE or
#                                  45818ea, the last commit before the
#                                  scheduler owned every wait)
#
# Measures (issue 11's targets):
#   - sleep(0) round trip, 1 and 100 coroutines (bench/waits.lua);
#   - arming and disarming a deadline on a wait, ns (this build only:
#     sleep(0) inside lunet.deadline minus plain sleep(0), same run);
#   - 1-byte TCP ping-pong with and without a read/send timeout (this build);
#   - memory of 100,000 parked sleepers: with a deadline each on this build,
#     plain on the base;
#   - HTTP keep-alive server CPU per request (bench/http_lunet.lua under
#     wrk -t1 -c50), server on CPU 0, wrk on CPU 1.
# Prints medians and ranges; fails only if something could not run.
# Environment: BENCH_ROUNDS (default 5), BENCH_SECONDS (HTTP run, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

BASE=${1:-${BENCH_BASE:-45818ea}}
ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECONDS:-3}
HZ=$(getconf CLK_TCK)
WT=.tmp/bench-base
RUN=$(mktemp -d /tmp/lunet-compare.XXXXXX)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT

for tool in wrk taskset git cargo; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing (scripts/deps.sh bench)" >&2; exit 1; }
done

# The base build, in its own worktree and target folder (kept between runs).
base_sha=$(git rev-parse --short "$BASE")
if [ ! -d "$WT" ] || [ "$(git -C "$WT" rev-parse --short HEAD 2>/dev/null)" != "$base_sha" ]; then
  rm -rf "$WT"
  git worktree prune
  git worktree add --detach "$WT" "$BASE" >/dev/null
fi
(cd "$WT" && cargo build --release --workspace -q && scripts/stage.sh release >/dev/null)
A=$WT/build/release # base
B=build/release     # this checkout
head_sha=$(git rev-parse --short HEAD)
echo "compare: base $base_sha ($A) vs this checkout $head_sha ($B), $ROUNDS rounds"

declare -A V
add() { V[$1]="${V[$1]:-} $2"; }

waits() { # build what -> key value lines (from the repo root: bench.clock)
  BENCH_N=${BENCH_N:-500000} "$1/lunet-run" bench/waits.lua "$2"
}

http_cpu() { # build -> CPU microseconds per request
  local port t0 t1 reqs
  port=$(free_port)
  taskset -c 0 "$1/lunet-run" bench/http_lunet.lua "$port" >"$RUN/http.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$port"
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$port/" >/dev/null
  t0=$(cpu_ticks "$SERVER_PID")
  taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$port/" >"$RUN/wrk.out"
  t1=$(cpu_ticks "$SERVER_PID")
  reqs=$(wrk_requests "$RUN/wrk.out")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  calc "($t1 - $t0) / $HZ / $reqs * 1e6"
}

for ((r = 1; r <= ROUNDS; r++)); do
  for side in base head; do
    build=$A; [ "$side" = head ] && build=$B
    while read -r k v; do add "$side/$k" "$v"; done < <(waits "$build" sleep0)
    while read -r k v; do add "$side/$k" "$v"; done < <(BENCH_N=1 waits "$build" memory)
    [ "$side" = head ] && while read -r k v; do add "$side/$k" "$v"; done < <(BENCH_N=1 waits "$build" memory_deadline)
    add "$side/http_cpu_us" "$(http_cpu "$build")"
  done
  while read -r k v; do add "head/$k" "$v"; done < <(waits "$B" deadline)
  while read -r k v; do add "head/$k" "$v"; done < <(BENCH_ROUNDTRIPS=50000 waits "$B" read)
  for k in sleep0_1_ns sleep0_100_ns http_cpu_us; do
    add "ratio/$k" "$(calc "${V[head/$k]##* } / ${V[base/$k]##* }")"
  done
  add "ratio/mem_rss" "$(calc "${V[head/mem_rss_kb_per_1k]##* } / ${V[base/mem_rss_kb_per_1k]##* }")"
  add "ratio/mem_heap" "$(calc "${V[head/mem_heap_kb_per_1k]##* } / ${V[base/mem_heap_kb_per_1k]##* }")"
  add "ratio/mem_rss_deadline" "$(calc "${V[head/mem_rss_kb_per_1k_deadline]##* } / ${V[base/mem_rss_kb_per_1k]##* }")"
  add "head/timeout_read_extra_ns" "$(calc "(${V[head/pingpong_timeout_ns]##* } - ${V[head/pingpong_ns]##* }) / 2")"
  echo "round $r done" >&2
done

show() { median_range ${V[$1]}; }
printf '%-44s %-26s %-26s %s\n' "benchmark (median (min-max))" "base $base_sha" "head $head_sha" "head/base"
printf '%-44s %-26s %-26s %s\n' "sleep(0) round trip, 1 coroutine, ns" "$(show base/sleep0_1_ns)" "$(show head/sleep0_1_ns)" "$(show ratio/sleep0_1_ns)"
printf '%-44s %-26s %-26s %s\n' "sleep(0) round trip, 100 coroutines, ns" "$(show base/sleep0_100_ns)" "$(show head/sleep0_100_ns)" "$(show ratio/sleep0_100_ns)"
printf '%-44s %-26s %-26s %s\n' "HTTP keep-alive CPU per request, us" "$(show base/http_cpu_us)" "$(show head/http_cpu_us)" "$(show ratio/http_cpu_us)"
printf '%-44s %-26s %-26s %s\n' "100k parked sleeps (timed waits), RSS KiB/1k" "$(show base/mem_rss_kb_per_1k)" "$(show head/mem_rss_kb_per_1k)" "$(show ratio/mem_rss)"
printf '%-44s %-26s %-26s %s\n' "100k parked sleeps, Lua heap KiB/1k" "$(show base/mem_heap_kb_per_1k)" "$(show head/mem_heap_kb_per_1k)" "$(show ratio/mem_heap)"
printf '%-44s %-26s %-26s %s\n' "100k sleeps each in lunet.deadline, RSS KiB/1k" "-" "$(show head/mem_rss_kb_per_1k_deadline)" "$(show ratio/mem_rss_deadline)"
printf '%-44s %-26s %-26s\n' "deadline armed+disarmed per wait, ns" "-" "$(show head/deadline_arm_disarm_ns)"
printf '%-44s %-26s %-26s\n' "read+send timeout, extra ns per read" "-" "$(show head/timeout_read_extra_ns)"
echo "targets: sleep(0) and HTTP CPU ratios <= 1.03; deadline arm+disarm <= 50 ns; memory ratios <= 1.10"
echo "(every head sleep is a timed wait in the deadline heap; the last memory row adds a lunet.deadline per sleeper)"
