#!/usr/bin/env bash
# Benchmark of snug-sidecar against the same nginx upstream, in one run:
#   direct            client -> nginx (the app)
#   snug-sidecar      client -> snug-sidecar -> nginx
#   nginx-proxy       client -> nginx reverse proxy (keep-alive upstream) -> nginx
#   haproxy-tcp       client -> haproxy mode tcp -> nginx   (the floor for any user-space hop)
# Prints latency at a fixed rate (HTTP/1.1, 50 connections, 2,000 req/s, held by oha's rate
# limiter with latency correction), maximum throughput (wrk), HTTP/2 figures (h2load) and RSS idle
# and with 1,000 open connections. Every measurement is repeated ROUNDS times with the paths
# alternating, and reported as medians with the range of the per-round ratios.
#
# Usage: tests/bench/sidecar.sh [path/to/release/snug-sidecar]
# Needs: nginx haproxy wrk nghttp2-client (h2load) python3 (apt), oha (cargo install oha);
# run as a user that may raise ulimit -n.
# Env: RATE_SECONDS (default 10), MAX_SECONDS (default 5), ROUNDS (default 3), RATE (default 2000),
# CONNS (default 50).
set -euo pipefail

BIN=${1:-target/release/snug-sidecar}
RATE=${RATE:-2000}
CONNS=${CONNS:-50}
RATE_SECONDS=${RATE_SECONDS:-10}
MAX_SECONDS=${MAX_SECONDS:-5}
ROUNDS=${ROUNDS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in nginx haproxy wrk h2load python3 oha; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx haproxy wrk nghttp2-client; cargo install oha)"; exit 2; }
done
[ -x "$BIN" ] || { echo "no sidecar binary at $BIN (cargo build --release -p snug-sidecar)"; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/snug-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/app.pid" ] && kill "$(cat "$WORK/app.pid")" 2>/dev/null || true
    [ -f "$WORK/proxy.pid" ] && kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

APP=18080; APP_H2=18081
SNUG=18100; SNUG_H2=18101; SNUG_ADMIN=18190
NGINX=18200; NGINX_H2=18201
HAPROXY=18300; HAPROXY_H2=18301

common_nginx() {
    cat <<CONF
daemon on;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
worker_processes 2;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
CONF
}

# The app: nginx answering a small fixed body, HTTP/1.1 and h2c (prior knowledge).
{ common_nginx app; cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$APP;
        listen 127.0.0.1:$APP_H2 http2;
        location / { default_type text/plain; return 200 "hello from the app, a small response body\n"; }
    }
}
CONF
} > "$WORK/app.conf"

# nginx as a reverse proxy: keep-alive connections to the app, as a tuned deployment would.
{ common_nginx proxy; cat <<CONF
http {
    access_log off;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$APP; keepalive 256; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX;
        listen 127.0.0.1:$NGINX_H2 http2;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
} > "$WORK/proxy.conf"

cat > "$WORK/haproxy.cfg" <<CONF
global
    maxconn 8000
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen h1
    bind 127.0.0.1:$HAPROXY
    server app 127.0.0.1:$APP
listen h2
    bind 127.0.0.1:$HAPROXY_H2
    server app 127.0.0.1:$APP_H2
CONF

nginx -c "$WORK/app.conf" -p "$WORK"
nginx -c "$WORK/proxy.conf" -p "$WORK"
haproxy -f "$WORK/haproxy.cfg" -q &
PIDS+=($!)
SNUG_PORTS="$SNUG:$APP,$SNUG_H2:$APP_H2" SNUG_LISTEN_ADDR=127.0.0.1 SNUG_ADMIN_PORT=$SNUG_ADMIN \
    RUST_LOG=warn "$BIN" &
SNUG_PID=$!
PIDS+=($SNUG_PID)

for port in $APP $APP_H2 $SNUG $SNUG_H2 $NGINX $NGINX_H2 $HAPROXY $HAPROXY_H2 $SNUG_ADMIN; do
    up=no
    for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && { up=yes; break; }; sleep 0.05; done
    [ $up = yes ] || { echo "nothing listens on $port"; exit 1; }
done
curl_check=$(python3 - <<PY
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:$SNUG/").read().decode().strip())
PY
)
echo "sidecar answers: $curl_check"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
nginx_proxy_rss() { # master + workers of the proxy nginx
    local master; master=$(cat "$WORK/proxy.pid"); local total; total=$(rss_kib "$master")
    for child in $(pgrep -P "$master"); do total=$((total + $(rss_kib "$child"))); done
    echo "$total"
}
SNUG_IDLE=$(rss_kib $SNUG_PID)
NGINX_IDLE=$(nginx_proxy_rss)

# RSS with 1,000 open keep-alive connections, each having made one request, measured on the
# fresh processes before any load (glibc keeps what a load test freed).
hold_connections() {
    python3 "$HERE/hold_connections.py" "$1" 1000 "$WORK/held-$1" >/dev/null 2>&1 &
    local holder=$!
    for _ in $(seq 600); do [ -f "$WORK/held-$1" ] && break; sleep 0.1; done
    echo $holder
}
HOLDER=$(hold_connections $SNUG)
SNUG_HELD=$(rss_kib $SNUG_PID)
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true
HOLDER=$(hold_connections $NGINX)
NGINX_HELD=$(nginx_proxy_rss)
kill "$HOLDER"; wait "$HOLDER" 2>/dev/null || true

declare -A TARGET=([direct]=$APP [snug-sidecar]=$SNUG [nginx-proxy]=$NGINX [haproxy-tcp]=$HAPROXY)
declare -A TARGET_H2=([direct]=$APP_H2 [snug-sidecar]=$SNUG_H2 [nginx-proxy]=$NGINX_H2 [haproxy-tcp]=$HAPROXY_H2)
ORDER=(direct snug-sidecar nginx-proxy haproxy-tcp)

# Each measurement runs ROUNDS times, the four paths alternating within a round, so all of them
# see the same machine; the report gives medians and the per-round ratios.
for name in "${ORDER[@]}"; do
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${TARGET[$name]}/" > /dev/null   # warm-up
done
for round in $(seq "$ROUNDS"); do
    for name in "${ORDER[@]}"; do
        port=${TARGET[$name]}
        echo "== round $round, fixed rate: $name"
        # oha sends on a schedule (a global rate limiter) rather than after each response, and with
        # --latency-correction times each request from when it was due, so a stall is not hidden.
        oha --no-tui --output-format json -z "${RATE_SECONDS}s" -c "$CONNS" -q "$RATE" --latency-correction \
            "http://127.0.0.1:$port/" > "$WORK/rate-$name-$round.json"
        python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['summary']['requestsPerSec']:.0f} req/s, success {r['summary']['successRate']:.3f}, p50 {r['latencyPercentiles']['p50']*1e3:.3f} ms, p99 {r['latencyPercentiles']['p99']*1e3:.3f} ms\")" "$WORK/rate-$name-$round.json"
    done
    for name in "${ORDER[@]}"; do
        echo "== round $round, max throughput: $name"
        wrk -t2 -c"$CONNS" -d"${MAX_SECONDS}s" "http://127.0.0.1:${TARGET[$name]}/" \
            | tee "$WORK/max-$name-$round.txt" | grep "Requests/sec"
    done
    for name in "${ORDER[@]}"; do
        echo "== round $round, h2load: $name"
        h2load -c "$CONNS" -m 10 -t 1 -D "$MAX_SECONDS" "http://127.0.0.1:${TARGET_H2[$name]}/" \
            | tee "$WORK/h2-$name-$round.txt" | grep -E "^finished in|^requests:|time for request:"
    done
done

SNUG_AFTER=$(rss_kib $SNUG_PID)
python3 "$HERE/report.py" "$WORK" "$ROUNDS" "$SNUG_IDLE" "$SNUG_HELD" "$NGINX_IDLE" "$NGINX_HELD" "$SNUG_AFTER"
