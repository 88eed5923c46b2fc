#!/usr/bin/env bash
# TLS termination benchmark: Rampart vs nginx, HAProxy, Caddy terminating
# TLS 1.3 with one ECDSA P-256 certificate (made here with openssl, in a
# temporary directory) in front of the two bench backends, all on
# 127.0.0.1, one worker/thread each pinned to CPU 0; wrk and the backends
# on CPU 1. Two measurements per proxy:
#
#   handshake  a new connection (full TLS 1.3 handshake) per request:
#              bench/tlsload (Go's TLS client without a session cache).
#              Not wrk -H "Connection: close": wrk resumes TLS sessions on
#              reconnection (548 of 553 connections resumed, measured), so
#              it measures abbreviated handshakes.
#   keepalive  TLS keep-alive throughput: wrk, connections kept open
#
# Usage:  bench/tls.sh
# Env:    ROUNDS=3 DURATION=10 WARMUP=2 CONNS=64 HS_CONNS=32
#         ONLY="nginx rampart"   (run only these proxies; nginx is the reference)
#         NO_INSTALL=1           (never call apt-get)
#
# All traffic goes to 127.0.0.1. Every process the script starts is killed on
# exit, by PID. Results: bench/out/tls/results.md, bench/out/tls/raw.csv.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-32}
ONLY=${ONLY:-}
NO_INSTALL=${NO_INSTALL:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
OUT=$BENCH_DIR/out/tls
HOST=127.0.0.1

# Ports: 182xx for traffic, 19200 for Rampart's admin API (apart from
# bench/run.sh's 180xx, so both can coexist). Never 8080/9090.
B1_PORT=18281
B2_PORT=18282
declare -A PORT=([rampart]=18200 [nginx]=18201 [haproxy]=18202 [caddy]=18203)
PROXY_CPU=0
LOAD_CPU=1

log() { printf '[tls-bench] %s\n' "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
STARTED_PIDS=()
CERT_DIR=
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${STARTED_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    [[ $alive == 0 ]] && break
    sleep 0.2
  done
  for pid in "${STARTED_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  [[ -n $CERT_DIR ]] && rm -rf "$CERT_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- packages
have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() { # pkg; returns non-zero if it could not be installed
  local pkg=$1
  [[ $NO_INSTALL == 1 ]] && return 1
  have apt-get || return 1
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    have sudo || return 1
    sudo=(sudo -n)
  fi
  log "installing Debian package $pkg"
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$pkg" >"$OUT/apt-$pkg.log" 2>&1; then
    if [[ $APT_UPDATED == 0 ]]; then
      APT_UPDATED=1
      "${sudo[@]}" apt-get update -q >"$OUT/apt-update.log" 2>&1 || true
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$pkg" >"$OUT/apt-$pkg.log" 2>&1 || return 1
    else
      return 1
    fi
  fi
}

ensure() { # command package
  have "$1" && return 0
  apt_install "$2" && have "$1"
}

mkdir -p "$OUT"

ensure wrk wrk || die "wrk is required (apt-get install wrk)"
# (the full-handshake client is bench/tlsload, built below)
ensure curl curl || die "curl is required (apt-get install curl)"
ensure openssl openssl || die "openssl is required (apt-get install openssl)"
ensure taskset util-linux || die "taskset is required (util-linux)"
have go || die "go is required"

want() { [[ -z $ONLY ]] || [[ " $ONLY " == *" $1 "* ]]; }
TARGETS=()
for p in nginx haproxy caddy; do
  want "$p" || continue
  if ensure "$p" "$p"; then
    TARGETS+=("$p")
  else
    log "SKIP $p: not installed and could not be installed (see $OUT/apt-$p.log)"
  fi
done
want rampart && TARGETS+=(rampart)

if (($(nproc) < 2)); then
  log "only $(nproc) CPU: pinning disabled (results will be much noisier)"
  PIN_PROXY=()
  PIN_LOAD=()
else
  PIN_PROXY=(taskset -c "$PROXY_CPU")
  PIN_LOAD=(taskset -c "$LOAD_CPU")
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- certificate
CERT_DIR=$(mktemp -d /tmp/rampart-tls-bench.XXXXXX)
CERT=$CERT_DIR/cert.pem
KEY=$CERT_DIR/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$KEY" -out "$CERT" >"$OUT/openssl.log" 2>&1 || die "openssl could not make the certificate (see $OUT/openssl.log)"
cat "$CERT" "$KEY" >"$CERT_DIR/haproxy.pem" # HAProxy wants both in one file
chmod 600 "$KEY" "$CERT_DIR/haproxy.pem"
log "ECDSA P-256 certificate in $CERT_DIR (removed on exit)"

# ---------------------------------------------------------------- builds
log "building backend, tlsload and rampart"
(cd "$ROOT" && go build -o "$OUT/backend" ./bench/backend && go build -o "$OUT/tlsload" ./bench/tlsload)
(cd "$ROOT" && go build -o "$OUT/rampart" ./cmd/rampart) >"$OUT/rampart-build.log" 2>&1 ||
  die "rampart does not build (see $OUT/rampart-build.log)"

# ---------------------------------------------------------------- configs
# Every proxy: TLS 1.3 only, the same certificate, HTTP/1.1 (wrk offers no
# ALPN), default session tickets (unused: wrk never resumes), round robin
# over b1 and b2 with kept-alive upstream connections, no access log.
mkdir -p "$OUT/nginx/tmp" "$OUT/caddy/data" "$OUT/caddy/config"
cat >"$OUT/nginx/nginx.conf" <<EOF
# generated by bench/tls.sh
worker_processes 1;
daemon off;
master_process on;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx/tmp/body;
  proxy_temp_path $OUT/nginx/tmp/proxy;
  fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
  uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
  scgi_temp_path $OUT/nginx/tmp/scgi;
  keepalive_requests 1000000;
  upstream bench {
    server $HOST:$B1_PORT;
    server $HOST:$B2_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen $HOST:${PORT[nginx]} ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

cat >"$OUT/haproxy.cfg" <<EOF
# generated by bench/tls.sh (no 'log' lines: logging off)
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind $HOST:${PORT[haproxy]} ssl crt $CERT_DIR/haproxy.pem ssl-min-ver TLSv1.3
  default_backend be
backend be
  balance roundrobin
  server b1 $HOST:$B1_PORT
  server b2 $HOST:$B2_PORT
EOF

cat >"$OUT/Caddyfile" <<EOF
# generated by bench/tls.sh (no 'log' directive: access log off)
{
  admin off
  auto_https off
  servers {
    protocols h1
  }
}
https://$HOST:${PORT[caddy]} {
  bind $HOST
  tls $CERT $KEY {
    protocols tls1.3
  }
  reverse_proxy $HOST:$B1_PORT $HOST:$B2_PORT {
    lb_policy round_robin
    transport http {
      keepalive 90s
      keepalive_idle_conns 512
      keepalive_idle_conns_per_host 256
    }
  }
}
EOF

cat >"$OUT/rampart-tls.yaml" <<EOF
# generated by bench/tls.sh. No logging key: access log off.
data_dir: /tmp/rampart-bench-tls-data
admin: {listen: 127.0.0.1:19200}
listeners:
  - name: bench
    listen: $HOST:${PORT[rampart]}
    protocol: https
    tls:
      min_version: TLSv1.3
      certificates: [{name: bench, cert_file: $CERT, key_file: $KEY}]
routes:
  - {name: all, match: {path_prefix: /}, pool: bench}
pools:
  - name: bench
    algorithm: round_robin
    backends: [{id: b1, address: $HOST:$B1_PORT}, {id: b2, address: $HOST:$B2_PORT}]
# wrk opens every connection from one address: the per-IP connection guards
# (on by default) would refuse most of a new-connection-per-request run, and
# the other proxies have no such guard configured.
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0, max_connections_per_ip: 0}
EOF

# ---------------------------------------------------------------- processes
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_ready NAME PID PORT SCHEME: up to 5 s for a 200 on GET /
wait_ready() {
  local name=$1 pid=$2 port=$3 scheme=$4 i
  for ((i = 0; i < 50; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during start-up"
      return 1
    fi
    if [[ $(curl -sk -o /dev/null -m 1 -w '%{http_code}' "$scheme://$HOST:$port/" 2>/dev/null || true) == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  log "$name not ready within 5 s"
  return 1
}

pid_tree() {
  local p
  echo "$1"
  for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    pid_tree "$p"
  done
}

cpu_ticks() {
  local total=0 p stat rest
  for p in "$@"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

declare -A TPID

start_target() {
  local name=$1 port=${PORT[$1]} pid
  if port_open "$port"; then
    log "SKIP $name: port $port already in use by a process this script did not start"
    return 1
  fi
  local logf="$OUT/$name.log"
  case $name in
  nginx)
    "${PIN_PROXY[@]}" nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" >"$logf" 2>&1 &
    ;;
  haproxy)
    "${PIN_PROXY[@]}" haproxy -db -f "$OUT/haproxy.cfg" >"$logf" 2>&1 &
    ;;
  caddy)
    GOMAXPROCS=1 XDG_DATA_HOME="$OUT/caddy/data" XDG_CONFIG_HOME="$OUT/caddy/config" \
      "${PIN_PROXY[@]}" caddy run --config "$OUT/Caddyfile" --adapter caddyfile >"$logf" 2>&1 &
    ;;
  rampart)
    GOMAXPROCS=1 "${PIN_PROXY[@]}" "$OUT/rampart" serve -c "$OUT/rampart-tls.yaml" >"$logf" 2>&1 &
    ;;
  *) die "unknown target $name" ;;
  esac
  pid=$!
  STARTED_PIDS+=("$pid")
  if ! wait_ready "$name" "$pid" "$port" https; then
    log "SKIP $name: did not start (last lines of $logf follow)"
    tail -n 5 "$logf" >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    return 1
  fi
  TPID[$name]=$pid
}

log "starting backends on $HOST:$B1_PORT and $HOST:$B2_PORT (CPU $LOAD_CPU)"
for port in $B1_PORT $B2_PORT; do
  port_open "$port" && die "port $port already in use"
done
"${PIN_LOAD[@]}" "$OUT/backend" -listen "$HOST:$B1_PORT" -name b1 >"$OUT/backend-b1.log" 2>&1 &
B1_PID=$!
STARTED_PIDS+=("$B1_PID")
"${PIN_LOAD[@]}" "$OUT/backend" -listen "$HOST:$B2_PORT" -name b2 >"$OUT/backend-b2.log" 2>&1 &
B2_PID=$!
STARTED_PIDS+=("$B2_PID")
wait_ready backend-b1 "$B1_PID" "$B1_PORT" http || die "backend b1 did not start"
wait_ready backend-b2 "$B2_PID" "$B2_PORT" http || die "backend b2 did not start"

RUN=()
for t in "${TARGETS[@]}"; do
  start_target "$t" && RUN+=("$t")
done
((${#RUN[@]} > 0)) || die "no proxy started"

# What each proxy negotiates with an OpenSSL client like wrk's.
: >"$OUT/negotiated.txt"
for t in "${RUN[@]}"; do
  neg=$(openssl s_client -connect "$HOST:${PORT[$t]}" -servername localhost -brief </dev/null 2>&1 |
    awk -F': ' '/^Protocol version/ {p = $2} /^Ciphersuite/ {c = $2} END {print p, c}')
  log "$t negotiates: $neg"
  echo "$t,$neg" >>"$OUT/negotiated.txt"
done

# ---------------------------------------------------------------- measure
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000
    else if (v ~ /ms$/) n = n
    else if (v ~ /m$/) n = n * 60000
    else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

RAW=$OUT/raw.csv
echo "round,mode,target,rps,requests,p50_ms,p99_ms,cpu_s,cpu_s_per_100k,errors,proxy_cpu_pct" >"$RAW"

# run_load MODE TARGET SECONDS ROUND (ROUND=0: warm-up, not recorded)
run_load() {
  local mode=$1 t=$2 secs=$3 round=$4 port=${PORT[$2]} pids t0 t1 wout
  local rps reqs p50 p99 errs cpu per100k pcpu
  pids=$(pid_tree "${TPID[$t]}")
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $pids)
  if [[ $mode == handshake ]]; then
    wout=$(GOMAXPROCS=1 "${PIN_LOAD[@]}" "$OUT/tlsload" -addr "$HOST:$port" -c "$HS_CONNS" -d "${secs}s" 2>&1) || true
  else
    wout=$("${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s --latency "https://$HOST:$port/" 2>&1) || true
  fi
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pids)
  [[ $round == 0 ]] && return 0
  echo "$wout" >"$OUT/load-$mode-$t-r$round.txt"
  if [[ $mode == handshake ]]; then
    kv() { tr ' ' '\n' <<<"$wout" | awk -F= -v k="$1" '$1 == k {print $2}'; }
    rps=$(kv rps)
    reqs=$(kv requests)
    p50=$(kv p50_ms)
    p99=$(kv p99_ms)
    errs=$(kv errors)
    local res
    res=$(kv resumed)
    [[ ${res:-0} == 0 ]] || log "WARNING: $t resumed $res sessions in a full-handshake run"
  else
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$wout")
    reqs=$(awk '/requests in/ {print $1}' <<<"$wout")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$wout")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$wout")")
    errs=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $5} END {print s + 0}' <<<"$wout")
  fi
  cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", (b - a) / hz}')
  per100k=$(awk -v c="$cpu" -v n="${reqs:-0}" 'BEGIN {if (n > 0) printf "%.4f", c / n * 100000; else print "nan"}')
  pcpu=$(awk -v c="$((t1 - t0))" -v hz="$CLK_TCK" -v s="$secs" 'BEGIN {printf "%.0f", c / hz / s * 100}')
  echo "$round,$mode,$t,${rps:-0},${reqs:-0},${p50:-0},${p99:-0},$cpu,$per100k,${errs:-0},$pcpu" >>"$RAW"
  log "round $round $(printf '%-9s %-8s' "$mode" "$t") $(printf '%9s' "${rps:-0}") req/s  p50 ${p50}ms  p99 ${p99}ms  cpu ${cpu}s (${per100k} cpu-s/100k)  errors $errs  proxy at ${pcpu}% of its core"
}

MODES=(handshake keepalive)
log "warm-up: ${WARMUP}s per target and mode"
for m in "${MODES[@]}"; do
  for t in "${RUN[@]}"; do
    run_load "$m" "$t" "$WARMUP" 0
  done
done

N=${#RUN[@]}
log "measuring: $ROUNDS rounds x $N proxies x ${MODES[*]} x ${DURATION}s"
for ((r = 1; r <= ROUNDS; r++)); do
  for m in "${MODES[@]}"; do
    for ((i = 0; i < N; i++)); do
      t=${RUN[$(((i + r - 1) % N))]}
      if ! kill -0 "${TPID[$t]}" 2>/dev/null; then
        log "$t has died; skipping"
        continue
      fi
      run_load "$m" "$t" "$DURATION" "$r"
    done
  done
done

# ---------------------------------------------------------------- report
median() { # column mode target
  awk -F, -v c="$1" -v m="$2" -v t="$3" 'NR > 1 && $2 == m && $3 == t {print $c}' "$RAW" | sort -g |
    awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="${2:-}" 'BEGIN {if (b == "" || b == "nan" || b + 0 == 0 || a == "nan") print "-"; else printf "%.2f", a / b}'; }

RES=$OUT/results.md
{
  for m in "${MODES[@]}"; do
    case $m in
    handshake) echo "Full TLS 1.3 handshakes (a new connection per request, never resumed: \`tlsload -c $HS_CONNS\`, GOMAXPROCS=1):" ;;
    keepalive) echo "TLS keep-alive throughput (\`wrk -t1 -c$CONNS\`):" ;;
    esac
    echo
    echo "| proxy | req/s | p50 ms | p99 ms | CPU-s/100k req | errors | req/s vs nginx | CPU/req vs nginx | proxy core busy % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    declare -A R=() C=()
    for t in "${RUN[@]}"; do
      R[$t]=$(median 4 "$m" "$t")
      C[$t]=$(median 9 "$m" "$t")
    done
    for t in "${RUN[@]}"; do
      errs=$(awk -F, -v m="$m" -v t="$t" 'NR > 1 && $2 == m && $3 == t {s += $10} END {print s + 0}' "$RAW")
      printf '| %s | %.0f | %.2f | %.2f | %.3f | %s | %s | %s | %s |\n' "$t" "${R[$t]}" "$(median 6 "$m" "$t")" \
        "$(median 7 "$m" "$t")" "${C[$t]}" "$errs" "$(ratio "${R[$t]}" "${R[nginx]:-}")" "$(ratio "${C[$t]}" "${C[nginx]:-}")" \
        "$(median 11 "$m" "$t")"
    done
    unset R C
    echo
  done
  echo "Medians of $ROUNDS interleaved rounds of ${DURATION}s; proxies pinned to CPU $PROXY_CPU with one worker/thread" \
    "each, wrk and both backends on CPU $LOAD_CPU; one ECDSA P-256 certificate, TLS 1.3 only." \
    "Negotiated (OpenSSL client): $(tr '\n' ';' <"$OUT/negotiated.txt")"
} >"$RES"

echo
cat "$RES"
echo
log "wrote $RES and $RAW"
