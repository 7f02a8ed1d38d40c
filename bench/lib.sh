# Shell helpers shared by the benchmark scripts (bench/net.sh, bench/compare.sh).
# Sourced, not run.

calc() { awk "BEGIN { printf \"%s\", $1 }"; }          # calc '1/3' -> 0.333333
fmt() { awk -v v="$2" "BEGIN { printf \"$1\", v }"; }  # fmt %.2f 1.234

cpu_ticks() { # utime+stime of a process, in clock ticks
  local s
  s=$(cat "/proc/$1/stat")
  s=${s##*) }            # drop "pid (comm) "
  awk '{ print $12 + $13 }' <<<"$s"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

free_port() {
  luajit -e 'local uv = require("luv"); local t = uv.new_tcp(); t:bind("127.0.0.1", 0); print(t:getsockname().port); t:close(); uv.run()'
}

wait_port() { # port: waits until something accepts on it
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on port $1" >&2
  return 1
}

wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }

# median_range v1 v2 ...: "median (min-max)"
median_range() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.3g (%.3g-%.3g)", m, v[1], v[NR] }'
}

median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    printf "%s", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
