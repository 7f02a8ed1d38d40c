#!/usr/bin/env bash
# TLS benchmarks (run by `make bench`): lunet's TLS (rustls) against nginx
# (OpenSSL) with the same certificate (EC P-256, made for the run), both
# limited to one CPU, wrk on the other:
#   1. HTTPS keep-alive hello: CPU per request (target: <= nginx's, TLS 1.3);
#   2. full handshakes (openssl s_time -new: a new session per request):
#      handshakes per CPU-second (target: >= 0.9x nginx's);
#   3. memory per idle TLS connection (target: <= 40 KB), TLS_IDLE_CONNS
#      connections (default 2000) opened by bench/tls_idle_client.lua.
# Environment: BUILD (default build/release), BENCH_SECONDS (default 5),
# BENCH_ROUNDS (default 3), TLS_IDLE_CONNS.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BUILD=${BUILD:-build/release}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${TLS_IDLE_CONNS:-2000}
HZ=$(getconf CLK_TCK)
RUN=$(mktemp -d /tmp/lunet-tls-bench.XXXXXX)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$RUN"
}
trap cleanup EXIT
for tool in wrk nginx openssl taskset; do
  command -v "$tool" >/dev/null || { echo "tls.sh: $tool is missing (scripts/deps.sh bench)" >&2; exit 1; }
done
scripts/gen-test-certs.sh "$RUN/certs"
CERT=$RUN/certs/server.pem KEY=$RUN/certs/server.key

nginx_tls_conf() { # dir port keepalive(on|off)
  mkdir -p "$1/logs"
  local ka="keepalive_requests 10000000;"
  [ "$3" = off ] && ka="keepalive_timeout 0;"
  cat >"$1/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  server_tokens off;
  default_type text/plain;
  $ka
  client_body_temp_path $1/cb; proxy_temp_path $1/px; fastcgi_temp_path $1/fc;
  uwsgi_temp_path $1/uw; scgi_temp_path $1/sc;
  server {
    listen 127.0.0.1:$2 ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    location / { return 200 "Hello, World!"; }
  }
}
CONF
}

start() { # name mode(keepalive|close) -> SERVER_PID, PORT
  PORT=$(free_port)
  case $1 in
    lunet)
      local close=0
      [ "$2" = close ] && close=1
      HTTP_TLS_CERT=$CERT HTTP_TLS_KEY=$KEY HTTP_CLOSE=$close HTTP_READ=lines \
        taskset -c 0 "$BUILD/lunet-run" bench/http_lunet.lua "$PORT" >"$RUN/lunet.log" 2>&1 &
      ;;
    nginx)
      local ka=on
      [ "$2" = close ] && ka=off
      nginx_tls_conf "$RUN/nginx" "$PORT" "$ka"
      taskset -c 0 nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log" >"$RUN/nginx.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  wait_port "$PORT"
}
stop() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

declare -A V
add() { V[$1]+="${V[$1]:+ }$2"; }
show() { median_range ${V[$1]}; }

wrk_tls() { # seconds
  taskset -c 1 wrk -t1 -c50 -d"$1"s "https://127.0.0.1:$PORT/"
}

# Full handshakes: `openssl s_time -new` makes a new connection with a full
# handshake (no resumption) for every request, one at a time; wrk would
# resume sessions.
stime() { # seconds
  taskset -c 1 openssl s_time -connect "127.0.0.1:$PORT" -new -time "$1" -www / 2>&1
}

measure() { # name mode
  local t0 t1 reqs
  start "$1" "$2"
  if [ "$2" = close ]; then
    stime 1 >/dev/null
    t0=$(cpu_ticks "$SERVER_PID")
    stime "$SECS" >"$RUN/wrk.out"
    t1=$(cpu_ticks "$SERVER_PID")
    reqs=$(awk '/connections in/ && !done { print $1; done = 1 }' "$RUN/wrk.out")
  else
    wrk_tls 1 >/dev/null
    t0=$(cpu_ticks "$SERVER_PID")
    wrk_tls "$SECS" >"$RUN/wrk.out"
    t1=$(cpu_ticks "$SERVER_PID")
    reqs=$(wrk_requests "$RUN/wrk.out")
    if grep -q 'Non-2xx\|Socket errors' "$RUN/wrk.out"; then
      echo "  ($1 $2: $(grep 'Non-2xx\|Socket errors' "$RUN/wrk.out" | tr -s ' '))"
    fi
  fi
  stop
  add "us/$1/$2" "$(calc "($t1 - $t0) / $HZ / $reqs * 1e6")"
  add "rate/$1/$2" "$(calc "$reqs / (($t1 - $t0) / $HZ)")"
}

echo "== TLS: HTTPS hello, wrk (TLS 1.3 negotiated), $ROUNDS round(s) of ${SECS}s, server on CPU 0"
for ((r = 1; r <= ROUNDS; r++)); do
  for s in lunet nginx; do measure "$s" keepalive; measure "$s" close; done
  add ka_ratio "$(calc "${V[us/lunet/keepalive]##* } / ${V[us/nginx/keepalive]##* }")"
  add hs_ratio "$(calc "${V[rate/lunet/close]##* } / ${V[rate/nginx/close]##* }")"
done
printf '%-6s %-30s %-30s\n' server "keep-alive CPU us/request" "handshakes per CPU-second"
for s in lunet nginx; do
  printf '%-6s %-30s %-30s\n' "$s" "$(show "us/$s/keepalive")" "$(show "rate/$s/close")"
done
echo "lunet/nginx keep-alive CPU per request: $(show ka_ratio) (target <= 1.0)"
echo "lunet/nginx full handshakes per CPU-second: $(show hs_ratio) (target >= 0.9)"

echo
echo "== memory per idle TLS connection: $IDLE connections, each after one request"
ulimit -n $((IDLE * 2 + 100)) 2>/dev/null || true
for s in lunet nginx; do
  start "$s" keepalive
  sleep 0.3
  before=$(rss_kb "$SERVER_PID")
  coproc CLIENT { exec taskset -c 1 "$BUILD/lunet-run" bench/tls_idle_client.lua "$PORT" "$IDLE"; }
  read -r -t 120 _ <&"${CLIENT[0]}"
  sleep 0.5
  after=$(rss_kb "$SERVER_PID")
  kill -TERM "$CLIENT_PID" 2>/dev/null || true
  wait "$CLIENT_PID" 2>/dev/null || true
  stop
  printf '%-6s RSS %6d -> %6d KiB: %.2f KiB per connection\n' "$s" "$before" "$after" "$(calc "($after - $before) / $IDLE")"
done
echo "target for lunet: <= 40 KB per idle TLS connection"
