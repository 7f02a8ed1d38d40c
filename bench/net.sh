#!/usr/bin/env bash
# Network benchmarks for lunet.socket, run by `make bench` after the release build:
#
#   1. HTTP keep-alive hello world, wrk -t1 -c50, against a minimal lunet
#      server (bench/http_lunet.lua), the same server written with luv's
#      callbacks (bench/http_luv.lua) and nginx with `return 200`.
#   2. TCP echo with 8 KiB and 64 KiB messages: lunet (bench/echo_lunet.lua)
#      against a plain C epoll server (bench/echo_server.c), both driven by
#      bench/loadclient.c.
#   3. RSS per idle connection with 5,000 connections open.
#   lunet-http (bench/http_serve.lua) is the same hello answered through
#   lunet.http's http.serve, in 1 and 3, and in a run with 1,000 connections;
#   openresty is the same answer from nginx with lua-nginx-module
#   (content_by_lua_block), in both HTTP runs. OpenResty itself is not
#   packaged in Debian 12: this is Debian's nginx with Debian's
#   lua-nginx-module 0.10.23, lua-resty-core and OpenResty's LuaJIT branch,
#   unpacked by scripts/deps.sh bench into .tmp/bench/lua-nginx (installing
#   them would replace Debian's luajit). Without them the row is skipped.
#
# Servers run pinned to CPU 0, load generators to CPU 1, everything on
# 127.0.0.1, every run bounded in time. Server CPU time comes from
# /proc/<pid>/stat (utime+stime) read before and after a run; syscalls are
# counted in a separate run with `perf stat` on the syscalls:sys_enter_*
# tracepoints (strace -c -f if perf cannot), because counting slows the server.
#
# A benchmark, not a test: it prints what it measured and the targets from
# issue 3, and fails only if something could not run. Numbers move a lot on a
# shared machine; run it a few times before drawing conclusions.
#
# Environment: BUILD (default build/release), BENCH_SECONDS (length of each
# measured run, default 5), ECHO_CONNS (echo connections, default 8),
# BENCH_ROUNDS (repeat the HTTP and echo measurements, default 1), IDLE_CONNS
# (default 5000), BENCH_ONLY (http, echo or idle: run just that).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build/release}
SECS=${BENCH_SECONDS:-5}
ECHO_CONNS=${ECHO_CONNS:-8}
IDLE_CONNS=${IDLE_CONNS:-5000}
ONLY=${BENCH_ONLY:-}
ROUNDS=${BENCH_ROUNDS:-1}
HZ=$(getconf CLK_TCK)
RUN=$(mktemp -d /tmp/lunet-bench.XXXXXX)
SERVER_PID=

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT

for tool in wrk nginx taskset cc luajit; do
  command -v "$tool" >/dev/null || { echo "net.sh: $tool is missing (make bench installs it: scripts/deps.sh bench)" >&2; exit 1; }
done
luajit -e 'require("luv")' 2>/dev/null || { echo "net.sh: luv is missing for luajit (Debian lua-luv)" >&2; exit 1; }

mkdir -p .tmp/bench
cc -O2 -Wall -o .tmp/bench/echo_server bench/echo_server.c
cc -O2 -Wall -o .tmp/bench/loadclient bench/loadclient.c

# Syscall counter: perf on the tracepoints if it works here, else strace.
if perf stat -e 'syscalls:sys_enter_getpid' -x, -o /dev/null -- true 2>/dev/null; then
  COUNTER=perf
  PERF_SYSCALLS="read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait
    epoll_ctl accept4 close shutdown setsockopt getsockopt ioctl futex brk mmap munmap madvise mprotect"
elif command -v strace >/dev/null; then
  COUNTER=strace
else
  COUNTER=none
fi

# ------------------------------------------------------------------ helpers

source bench/lib.sh

# start_server NAME PORT CMD...: starts CMD pinned to CPU 0 (it must serve PORT).
start_server() {
  local name=$1 port=$2; shift 2
  taskset -c 0 "$@" >"$RUN/$name.log" 2>&1 &
  SERVER_PID=$!
  SERVER_PORT=$port
  wait_port "$port" || { cat "$RUN/$name.log" >&2; exit 1; }
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# count_syscalls OUTFILE CMD...: counts the server's syscalls while CMD runs;
# writes "total" and the top syscalls as "name count" lines.
count_syscalls() {
  local out=$1; shift
  case $COUNTER in
    perf)
      # The total from raw_syscalls, a breakdown from the usual suspects
      # (a wildcard over all syscalls:sys_enter_* takes perf ~15 s to set up).
      local ev=raw_syscalls:sys_enter sc
      for sc in $PERF_SYSCALLS; do ev+=",syscalls:sys_enter_$sc"; done
      perf stat -e "$ev" -x, -o "$RUN/perf.csv" -p "$SERVER_PID" &
      local ppid=$!
      sleep 0.5
      "$@" >"$RUN/load.out"
      kill -INT "$ppid"
      wait "$ppid" 2>/dev/null || true
      awk -F, '$1 ~ /^[0-9]+$/ { sub(/^[a-z_]+:sys_enter_?/, "", $3); print ($3 == "" ? "total" : $3), $1 }' "$RUN/perf.csv" \
        | sort -k2,2nr >"$out"
      ;;
    strace)
      strace -c -f -q -p "$SERVER_PID" -o "$RUN/strace.txt" &
      local spid=$!
      sleep 0.5
      "$@" >"$RUN/load.out"
      kill -INT "$spid"; wait "$spid" 2>/dev/null || true
      awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { print $NF, $4 }' "$RUN/strace.txt" \
        | sort -k2,2nr >"$out"
      ;;
    none)
      "$@" >"$RUN/load.out"
      : >"$out"
      ;;
  esac
}

# A count file has "name count" lines; perf's also has a "total" line.
syscall_total() {
  awk '$1 == "total" { t = $2 } $1 != "total" { n += $2 } END { print (t != "" ? t : n + 0) }' "$1"
}

# "read 1.00, write 0.99, ..." per unit for the top syscalls.
syscall_top() { # file units
  local total
  total=$(syscall_total "$1")
  awk -v u="$2" -v total="$total" '$1 != "total" && $2 > 0 {
      if (++n <= 4) { printf "%s%s %.2f", (n > 1 ? ", " : ""), $1, $2 / u; listed += $2 } }
    END { if (total - listed > 0) printf ", other %.2f", (total - listed) / u }' "$1"
}

# Every measurement is kept per round (BENCH_ROUNDS, default 1; the servers
# take turns within a round, so slow phases of a shared machine hit all of
# them); tables show the median and, with several rounds, the range.
declare -A V
add() { V[$1]+="${V[$1]:+ }$2"; }                 # add key value
med() { tr ' ' '\n' <<<"${V[$1]}" | sort -g | awk '{ a[NR] = $1 }
  END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
show() { # printf-format key: "median" or "median (min-max)"
  tr ' ' '\n' <<<"${V[$2]}" | sort -g | awk -v f="$1" '{ a[NR] = $1 }
    END { m = (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)
          printf f, m; if (NR > 1) { printf " ("; printf f, a[1]; printf "-"; printf f, a[NR]; printf ")" } }'
}
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=" ? v <= t : v >= t); print (ok ? "met" : "MISSED") }'; }

# ------------------------------------------------------------------ HTTP

wrk_run() { # seconds -> wrk output on stdout
  taskset -c 1 wrk -t1 -c"${WRK_CONNS:-50}" -d"$1"s --latency "http://127.0.0.1:$SERVER_PORT/"
}

wrk_p99_ms() { # wrk prints 99% with us/ms/s units
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
       if (u == "us") v /= 1000; else if (u == "s") v *= 1000; print v }' "$1"
}

LUA_NGINX=$PWD/.tmp/bench/lua-nginx
if [ -e "$LUA_NGINX/usr/lib/nginx/modules/ngx_http_lua_module.so" ]; then OPENRESTY=openresty; else
  OPENRESTY=
  echo "net.sh: no lua-nginx-module in $LUA_NGINX (scripts/deps.sh bench unpacks it): no openresty row" >&2
fi

nginx_conf() { # prefix port [lua]
  local modules="" lua="" location='return 200 "Hello, World!";'
  if [ "${3:-}" = lua ]; then
    modules="load_module $LUA_NGINX/usr/lib/nginx/modules/ndk_http_module.so;
load_module $LUA_NGINX/usr/lib/nginx/modules/ngx_http_lua_module.so;"
    lua="lua_package_path \"$LUA_NGINX/usr/share/lua/5.1/?.lua;;\";"
    # The answer of bench/http_serve.lua's handler: text/plain, a length.
    location='content_by_lua_block {
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Content-Length"] = 13
        ngx.print("Hello, World!")
      }'
  fi
  mkdir -p "$1/logs"
  cat >"$1/nginx.conf" <<EOF
# Written by bench/net.sh for one run; deleted afterwards.
$modules
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events {
  worker_connections 16384;
}
http {
  access_log off;
  server_tokens off;
  default_type text/plain;
  keepalive_requests 10000000;
  tcp_nodelay on;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  $lua
  server {
    listen 127.0.0.1:$2;
    location / {
      $location
    }
  }
}
EOF
}

# start_named NAME: starts the benchmark server of that name on a free port.
start_named() {
  local port
  port=$(free_port)
  case $1 in
    lunet) start_server lunet "$port" "$BUILD/lunet-run" bench/http_lunet.lua "$port" ;;
    lunet-lines) HTTP_READ=lines start_server lunet-lines "$port" "$BUILD/lunet-run" bench/http_lunet.lua "$port" ;;
    luv) start_server luv "$port" luajit bench/http_luv.lua "$port" ;;
    lunet-http|lunet-http-1k) start_server "$1" "$port" "$BUILD/lunet-run" bench/http_serve.lua "$port" ;;
    nginx|nginx-1k)
      nginx_conf "$RUN/nginx" "$port"
      start_server nginx "$port" nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log"
      ;;
    openresty|openresty-1k)
      nginx_conf "$RUN/nginx" "$port" lua
      LD_LIBRARY_PATH=$LUA_NGINX/usr/lib/x86_64-linux-gnu start_server "$1" "$port" \
        nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log"
      ;;
    c-echo) start_server c-echo "$port" .tmp/bench/echo_server "$port" ;;
    lunet-echo) start_server lunet-echo "$port" "$BUILD/lunet-run" bench/echo_lunet.lua "$port" ;;
    lunet-echo-n) ECHO_EXACT=$ECHO_SIZE start_server lunet-echo-n "$port" "$BUILD/lunet-run" bench/echo_lunet.lua "$port" ;;
    lunet-hold) start_server lunet-hold "$port" "$BUILD/lunet-run" bench/idle_lunet.lua "$port" ;;
  esac
}

declare -A SYSTOP

http_bench() {
  local name=$1 t0 t1 reqs
  start_named "$name"
  wrk_run 1 >/dev/null # warm-up (LuaJIT traces, nginx caches)
  t0=$(cpu_ticks "$SERVER_PID")
  wrk_run "$SECS" >"$RUN/wrk.$name"
  t1=$(cpu_ticks "$SERVER_PID")
  add "rss/$name" "$(rss_kb "$SERVER_PID")"
  reqs=$(wrk_requests "$RUN/wrk.$name")
  add "rps/$name" "$(calc "$reqs / $SECS")"
  add "cpu/$name" "$(calc "($t1 - $t0) / $HZ / $reqs * 1e6")"
  add "p99/$name" "$(wrk_p99_ms "$RUN/wrk.$name")"
  # A second run, for the syscall count only.
  count_syscalls "$RUN/sys.$name" wrk_run "$SECS"
  reqs=$(wrk_requests "$RUN/load.out")
  add "sys/$name" "$(calc "$(syscall_total "$RUN/sys.$name") / $reqs")"
  SYSTOP[$name]=$(syscall_top "$RUN/sys.$name" "$reqs")
  stop_server
}

if [ -z "$ONLY" ] || [ "$ONLY" = http ]; then
  echo
  echo "== HTTP keep-alive hello world: wrk -t1 -c50 -d${SECS}s, $ROUNDS round(s) (server on CPU 0, wrk on CPU 1), syscalls by $COUNTER"
  for ((round = 1; round <= ROUNDS; round++)); do
    for s in lunet lunet-lines lunet-http luv nginx $OPENRESTY; do http_bench "$s"; done
    add cpu_http_nginx "$(calc "${V[cpu/lunet-http]##* } / ${V[cpu/nginx]##* }")"
    # Requests per CPU-second of lunet-http over openresty's: the inverse ratio of CPU per request.
    [ -n "$OPENRESTY" ] && add rpc_openresty "$(calc "${V[cpu/openresty]##* } / ${V[cpu/lunet-http]##* }")"
    add cpu_lines "$(calc "${V[cpu/lunet-lines]##* } / ${V[cpu/lunet]##* }")"
    r=${V[cpu/lunet]##* }
    add cpu_nginx "$(calc "$r / ${V[cpu/nginx]##* }")"
    add cpu_luv "$(calc "$r / ${V[cpu/luv]##* }")"
    r=${V[rps/lunet]##* }
    add rps_nginx "$(calc "$r / ${V[rps/nginx]##* }")"
    add rps_luv "$(calc "$r / ${V[rps/luv]##* }")"
  done
  printf '%-11s %-22s %-20s %-18s %-20s %-20s\n' server "req/s" "CPU us/request" "syscalls/request" "p99 ms" "RSS KiB"
  for s in lunet lunet-lines lunet-http luv nginx $OPENRESTY; do
    printf '%-11s %-22s %-20s %-18s %-20s %-20s\n' "$s" "$(show %.0f "rps/$s")" "$(show %.2f "cpu/$s")" \
      "$(show %.2f "sys/$s")" "$(show %.2f "p99/$s")" "$(show %.0f "rss/$s")"
  done
  echo "syscalls per request by kind (last round):"
  for s in lunet lunet-lines lunet-http luv nginx $OPENRESTY; do echo "  $s: ${SYSTOP[$s]}"; done
  echo "lunet-lines/lunet (read \"*l\" vs the hand-rolled buffer): CPU per request $(show %.2f cpu_lines) (target <= 1.0: $(verdict "$(med cpu_lines)" "<=" 1.0))"
  echo "lunet/nginx: req/s $(show %.2f rps_nginx), CPU per request $(show %.2f cpu_nginx) (target <= 0.95: $(verdict "$(med cpu_nginx)" "<=" 0.95))"
  echo "lunet/luv:   req/s $(show %.2f rps_luv), CPU per request $(show %.2f cpu_luv)"
  echo "lunet syscalls per request: $(show %.2f sys/lunet) (target <= 2.1: $(verdict "$(med sys/lunet)" "<=" 2.1))"
  echo "lunet-http/nginx (http.serve vs return 200): CPU per request $(show %.2f cpu_http_nginx) (target <= 1.0: $(verdict "$(med cpu_http_nginx)" "<=" 1.0))"
  [ -n "$OPENRESTY" ] && echo "lunet-http/openresty (http.serve vs content_by_lua_block): requests per CPU-second $(show %.2f rpc_openresty) (target >= 1.3: $(verdict "$(med rpc_openresty)" ">=" 1.3))"
  echo
  echo "== HTTP keep-alive hello world with 1,000 connections: wrk -t1 -c1000 -d${SECS}s, lunet.http against nginx${OPENRESTY:+ and openresty}"
  ulimit -n 4096 2>/dev/null || true
  for ((round = 1; round <= ROUNDS; round++)); do
    for s in lunet-http-1k nginx-1k ${OPENRESTY:+openresty-1k}; do WRK_CONNS=1000 http_bench "$s"; done
    add cpu_http_nginx_1k "$(calc "${V[cpu/lunet-http-1k]##* } / ${V[cpu/nginx-1k]##* }")"
    [ -n "$OPENRESTY" ] && add rpc_openresty_1k "$(calc "${V[cpu/openresty-1k]##* } / ${V[cpu/lunet-http-1k]##* }")"
  done
  printf '%-14s %-22s %-20s %-18s %-20s %-20s\n' server "req/s" "CPU us/request" "syscalls/request" "p99 ms" "RSS KiB"
  for s in lunet-http-1k nginx-1k ${OPENRESTY:+openresty-1k}; do
    printf '%-14s %-22s %-20s %-18s %-20s %-20s\n' "$s" "$(show %.0f "rps/$s")" "$(show %.2f "cpu/$s")" \
      "$(show %.2f "sys/$s")" "$(show %.2f "p99/$s")" "$(show %.0f "rss/$s")"
  done
  echo "lunet-http/nginx with 1,000 connections: CPU per request $(show %.2f cpu_http_nginx_1k) (target <= 1.0: $(verdict "$(med cpu_http_nginx_1k)" "<=" 1.0))"
  [ -n "$OPENRESTY" ] && echo "lunet-http/openresty with 1,000 connections: requests per CPU-second $(show %.2f rpc_openresty_1k) (target >= 1.3: $(verdict "$(med rpc_openresty_1k)" ">=" 1.3))"
fi

# ------------------------------------------------------------------ echo

declare -A ESYS

echo_bench() { # server size
  local name=$1 size=$2 t0 t1 bytes key="$1/$2"
  start_named "$name"
  taskset -c 1 .tmp/bench/loadclient echo "$SERVER_PORT" "$size" "$ECHO_CONNS" 1 >/dev/null
  t0=$(cpu_ticks "$SERVER_PID")
  taskset -c 1 .tmp/bench/loadclient echo "$SERVER_PORT" "$size" "$ECHO_CONNS" "$SECS" >"$RUN/echo.out"
  t1=$(cpu_ticks "$SERVER_PID")
  bytes=$(sed -n 's/^bytes=\([0-9]*\).*/\1/p' "$RUN/echo.out")
  add "mibs/$key" "$(calc "$bytes / 1048576 / $SECS")"
  add "mibcpu/$key" "$(calc "$bytes / 1048576 / (($t1 - $t0) / $HZ)")"
  # A second run, for the syscall count only.
  count_syscalls "$RUN/esys" taskset -c 1 .tmp/bench/loadclient echo "$SERVER_PORT" "$size" "$ECHO_CONNS" "$SECS"
  bytes=$(sed -n 's/^bytes=\([0-9]*\).*/\1/p' "$RUN/load.out")
  add "esys/$key" "$(calc "$(syscall_total "$RUN/esys") / ($bytes / 1048576)")"
  ESYS[$key]=$(syscall_top "$RUN/esys" "$(calc "$bytes / 1048576")")
  stop_server
}

if [ -z "$ONLY" ] || [ "$ONLY" = echo ]; then
  echo
  echo "== TCP echo: $ECHO_CONNS connections, one message in flight on each, ${SECS}s, $ROUNDS round(s) (server on CPU 0, client on CPU 1)"
  for ((round = 1; round <= ROUNDS; round++)); do
    for size in 8192 65536; do
      ECHO_SIZE=$size
      for s in c-echo lunet-echo lunet-echo-n; do echo_bench "$s" "$size"; done
      add "ratio/$size" "$(calc "${V[mibcpu/lunet-echo/$size]##* } / ${V[mibcpu/c-echo/$size]##* }")"
      add "ratio_n/$size" "$(calc "${V[mibcpu/lunet-echo-n/$size]##* } / ${V[mibcpu/c-echo/$size]##* }")"
    done
  done
  printf '%-13s %4s %-22s %-22s %-20s\n' server msg "MiB/s" "MiB per CPU-second" "syscalls per MiB"
  for size in 8192 65536; do
    for s in c-echo lunet-echo lunet-echo-n; do
      printf '%-13s %3dK %-22s %-22s %-20s\n' "$s" $((size / 1024)) "$(show %.0f "mibs/$s/$size")" \
        "$(show %.0f "mibcpu/$s/$size")" "$(show %.1f "esys/$s/$size")"
    done
  done
  echo "syscalls per MiB by kind (last round):"
  for size in 8192 65536; do
    for s in c-echo lunet-echo lunet-echo-n; do echo "  $s $((size / 1024))K: ${ESYS[$s/$size]}"; done
  done
  for size in 8192 65536; do
    echo "$((size / 1024)) KiB: lunet/C MiB per CPU-second: plain reads $(show %.2f "ratio/$size"), read(conn, $size) $(show %.2f "ratio_n/$size") (target >= 0.95: $(verdict "$(med "ratio_n/$size")" ">=" 0.95))"
  done
fi

# ------------------------------------------------------------------ idle connections

# Waits until the server holds `n` more descriptors than `base`.
await_fds() { # base n
  local fds
  for _ in $(seq 1 200); do
    fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
    [ "$fds" -ge $(($1 + $2)) ] && break
    sleep 0.05
  done
  sleep 0.5
}

idle_bench() { # server [request] -> "KiB per connection"
  local name=$1 mode=${2:-} before after after2 base heap0="" heap1="" pid2 w2
  start_named "$name"
  sleep 0.3
  if [ "${name#lunet}" != "$name" ]; then
    kill -USR1 "$SERVER_PID"; sleep 0.3
    heap0=$(awk '/lua heap KiB/ { v = $4 } END { print v }' "$RUN/$name.log")
  fi
  before=$(rss_kb "$SERVER_PID")
  base=$(ls "/proc/$SERVER_PID/fd" | wc -l)
  coproc IDLE { exec taskset -c 1 .tmp/bench/loadclient idle "$SERVER_PORT" "$IDLE_CONNS" $mode; }
  read -r -t 60 _ <&"${IDLE[0]}" # "ready"
  await_fds "$base" "$IDLE_CONNS"
  if [ "${name#lunet}" != "$name" ]; then
    kill -USR1 "$SERVER_PID"; sleep 0.3
    heap1=$(awk '/lua heap KiB/ { v = $4 } END { print v }' "$RUN/$name.log")
  fi
  after=$(rss_kb "$SERVER_PID")
  # As many again: what one more connection costs once the server is warm
  # (code paged in, allocator and Lua heap grown), the marginal figure.
  rm -f "$RUN/idle2.in" "$RUN/idle2.out"
  mkfifo "$RUN/idle2.in"
  taskset -c 1 .tmp/bench/loadclient idle "$SERVER_PORT" "$IDLE_CONNS" $mode <"$RUN/idle2.in" >"$RUN/idle2.out" &
  pid2=$!
  exec {w2}>"$RUN/idle2.in"
  for _ in $(seq 1 600); do grep -q ready "$RUN/idle2.out" 2>/dev/null && break; sleep 0.1; done
  await_fds "$base" $((2 * IDLE_CONNS))
  after2=$(rss_kb "$SERVER_PID")
  exec {w2}>&-
  wait "$pid2" 2>/dev/null || true
  eval "exec ${IDLE[1]}>&-" # the client closes its connections and exits
  wait "$IDLE_PID" 2>/dev/null || true
  stop_server
  printf '%-10s %-8s %11d %11d %10.2f %10.2f' "$name" "${mode:-idle}" "$before" "$after" \
    "$(calc "($after - $before) / $IDLE_CONNS")" "$(calc "($after2 - $after) / $IDLE_CONNS")"
  if [ -n "$heap1" ]; then printf '   Lua heap %.2f KiB/conn' "$(calc "($heap1 - $heap0) / $IDLE_CONNS")"; fi
  echo
}

if [ -z "$ONLY" ] || [ "$ONLY" = idle ]; then
  echo
  ulimit -n $((IDLE_CONNS * 3 + 100)) 2>/dev/null || true
  if [ "$(ulimit -n)" -lt $((IDLE_CONNS * 2 + 100)) ]; then
    echo "== idle connections: skipped, ulimit -n is $(ulimit -n) and cannot be raised"
  else
    echo "== RSS per idle connection: $IDLE_CONNS idle connections"
    echo "   (lunet: the HTTP server, a coroutine parked in socket.read per connection;"
    echo "    lunet-hold: accepted handles kept in a table, no coroutine; c-echo: bench/echo_server.c)"
    echo "   (KiB/conn: (RSS1 - RSS0) / N; marginal: what N more connections added, per connection)"
    printf '%-10s %-8s %11s %11s %10s %10s\n' server state "RSS0 KiB" "RSS1 KiB" "KiB/conn" "marginal"
    for s in lunet lunet-lines lunet-hold luv nginx c-echo; do idle_bench "$s"; done
    for s in lunet lunet-lines lunet-http luv nginx; do idle_bench "$s" request; done
    echo "targets for lunet: <= 0.6 KB per idle connection, <= 0.7 KB after one request (lunet-http too)"
  fi
fi
