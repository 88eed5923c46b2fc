# shellcheck shell=bash
# What bench/run.sh and bench/tls.sh share: common settings, logging, the
# clean-up of started processes, package installation, CPU pinning, the two
# backends, the reference proxies (nginx, HAProxy, Caddy: configs and
# start-up), CPU sampling from /proc, wrk output parsing, and the medians
# and ratios of the report. Sourced, never run.
#
# The sourcing script sets BENCH_DIR (this directory), OUT (its output
# directory) and LOG_TAG (its log prefix) before sourcing, and PORT (target ->
# port), B1_PORT, B2_PORT, RAW (its CSV file) and launch_target (see
# start_proxy) before calling the functions that use them.
#
# Sourcing creates OUT and installs the traps that stop every process in
# STARTED_PIDS and remove every path in REMOVE_ON_EXIT when the script exits.

# shellcheck disable=SC2034 # the settings and results here are read by the scripts
# shellcheck disable=SC2153,SC2154 # and these are set by them (see above)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
ONLY=${ONLY:-}
NO_INSTALL=${NO_INSTALL:-0}

ROOT=$(dirname "$BENCH_DIR")
HOST=127.0.0.1
PROXY_CPU=0
LOAD_CPU=1

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
STARTED_PIDS=()
REMOVE_ON_EXIT=()

# stop_started: SIGTERM to every started process, up to 2 s for them to
# exit (so they flush profiles and logs), then SIGKILL to the rest.
stop_started() {
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
  STARTED_PIDS=()
}

cleanup() {
  stop_started
  if ((${#REMOVE_ON_EXIT[@]} > 0)); then
    rm -rf "${REMOVE_ON_EXIT[@]}"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"

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

# need_tools COMMAND...: the given commands (each from the Debian package of
# the same name), then taskset and go, installed if missing; dies when one
# cannot be had.
need_tools() {
  local c
  for c in "$@"; do
    ensure "$c" "$c" || die "$c is required (apt-get install $c)"
  done
  ensure taskset util-linux || die "taskset is required (util-linux)"
  have go || die "go is required"
}

# want NAME: whether ONLY (empty: everything) names target NAME
want() { [[ -z $ONLY ]] || [[ " $ONLY " == *" $1 "* ]]; }

# add_proxy_targets: appends to TARGETS the wanted reference proxies that are
# installed or can be, then rampart if wanted.
add_proxy_targets() {
  local p
  for p in nginx haproxy caddy; do
    want "$p" || continue
    if ensure "$p" "$p"; then
      TARGETS+=("$p")
    else
      log "SKIP $p: not installed and could not be installed (see $OUT/apt-$p.log)"
    fi
  done
  want rampart && TARGETS+=(rampart)
  return 0
}

# pin_cpus: sets PIN_PROXY and PIN_LOAD (command prefixes pinning to the
# proxy's and the load's core; empty on one CPU) and CLK_TCK.
pin_cpus() {
  local ncpu
  ncpu=$(nproc)
  if ((ncpu < 2)); then
    log "only $ncpu CPU: pinning disabled (results will be much noisier)"
    PIN_PROXY=()
    PIN_LOAD=()
  else
    PIN_PROXY=(taskset -c "$PROXY_CPU")
    PIN_LOAD=(taskset -c "$LOAD_CPU")
  fi
  CLK_TCK=$(getconf CLK_TCK)
}

# go_build PACKAGE_DIR NAME: builds a package of the main module as $OUT/NAME
go_build() { (cd "$ROOT" && go build -o "$OUT/$2" "./$1"); }

# ---------------------------------------------------------------- configs
# The reference proxies alike: one worker/thread, listening on HOST only,
# round robin over b1 and b2 with kept-alive upstream connections, no access
# log. Each writer takes the listen address (with TLS options, if any) and
# extra lines for the server or site block.

# write_nginx_conf NAME LISTEN [DIRECTIVE...]: $OUT/NAME/nginx.conf, the
# config of target NAME (start_proxy runs it from $OUT/NAME). With
# NGINX_LOAD_MODULE set to a module's path, the config loads it.
write_nginx_conf() {
  local dir=$OUT/$1 listen=$2 extra=""
  (($# > 2)) && printf -v extra '    %s;\n' "${@:3}"
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# generated by bench/${0##*/}
${NGINX_LOAD_MODULE:+load_module $NGINX_LOAD_MODULE;
}worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  # the default (1000) would make nginx close every wrk connection after
  # 1000 requests; the other proxies have no such limit
  keepalive_requests 1000000;
  upstream bench {
    server $HOST:$B1_PORT;
    server $HOST:$B2_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen $listen;
${extra}    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

# write_haproxy_cfg BIND: $OUT/haproxy.cfg
write_haproxy_cfg() {
  cat >"$OUT/haproxy.cfg" <<EOF
# generated by bench/${0##*/} (no 'log' lines: logging off)
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
  bind $1
  default_backend be
backend be
  balance roundrobin
  server b1 $HOST:$B1_PORT
  server b2 $HOST:$B2_PORT
EOF
}

# write_caddyfile SITE [LINE...]: $OUT/Caddyfile
write_caddyfile() {
  local site=$1 extra=""
  (($# > 1)) && printf -v extra '  %s\n' "${@:2}"
  mkdir -p "$OUT/caddy/data" "$OUT/caddy/config"
  cat >"$OUT/Caddyfile" <<EOF
# generated by bench/${0##*/} (no 'log' directive: access log off)
{
  admin off
  auto_https off
  servers {
    protocols h1
  }
}
$site {
  bind $HOST
${extra}  reverse_proxy $HOST:$B1_PORT $HOST:$B2_PORT {
    lb_policy round_robin
    transport http {
      keepalive 90s
      keepalive_idle_conns 512
      keepalive_idle_conns_per_host 256
    }
  }
}
EOF
}

# ---------------------------------------------------------------- ModSecurity
# nginx + ModSecurity v3 + the OWASP CRS as Debian packages them
# (libnginx-mod-http-modsecurity, modsecurity-crs: CRS 3.3 on bookworm).
MODSEC_MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
CRS_ETC=/etc/modsecurity/crs
CRS_RULES=/usr/share/modsecurity-crs/rules

# ensure_modsec: nginx, the ModSecurity module and the CRS, installed if
# missing; returns non-zero if one cannot be had.
ensure_modsec() {
  ensure nginx nginx || return 1
  [[ -f $MODSEC_MODULE ]] || apt_install libnginx-mod-http-modsecurity || return 1
  [[ -d $CRS_RULES ]] || apt_install modsecurity-crs || return 1
  [[ -f $MODSEC_MODULE && -d $CRS_RULES && -f $CRS_ETC/crs-setup.conf ]]
}

# write_modsec_conf FILE PL: ModSecurity's rules file, with its temporary
# and data files next to FILE. ModSecurity's own base settings as in
# modsecurity.conf-recommended (engine on, request body access, JSON and
# XML processors, unparsable bodies refused, audit log off), then the CRS
# at paranoia level PL as the Debian package loads it (owasp-crs.load,
# whose IncludeOptional libmodsecurity3 does not know).
write_modsec_conf() {
  local file=$1 pl=$2 dir
  dir=$(dirname "$1")
  mkdir -p "$dir"
  cat >"$file" <<EOF
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart strict error'"
SecResponseBodyAccess Off
SecTmpDir $dir
SecDataDir $dir
SecAuditEngine Off
SecDebugLogLevel 0
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.paranoia_level=$pl"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include $CRS_ETC/crs-setup.conf
Include $CRS_ETC/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include $CRS_RULES/*.conf
Include $CRS_ETC/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
EOF
}

# write_nginx_modsec_conf NAME LISTEN PL: $OUT/NAME/nginx.conf, the nginx of
# write_nginx_conf with ModSecurity and the CRS at paranoia level PL on
# every request (rules in $OUT/NAME/modsec.conf).
write_nginx_modsec_conf() {
  local rules=$OUT/$1/modsec.conf
  write_modsec_conf "$rules" "$3"
  NGINX_LOAD_MODULE=$MODSEC_MODULE write_nginx_conf "$1" "$2" "modsecurity on" "modsecurity_rules_file $rules"
}

# ---------------------------------------------------------------- processes
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_ready NAME PID PORT [SCHEME]: up to 5 s for a 200 on GET / (SCHEME
# http, the default, or https with any certificate)
wait_ready() {
  local name=$1 pid=$2 port=$3 scheme=${4:-http} i
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

# start_backends: bench/backend as b1 and b2 on the load core; sets B1_PID and
# B2_PID; dies if either cannot start.
start_backends() {
  local port
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
  wait_ready backend-b1 "$B1_PID" "$B1_PORT" || die "backend b1 did not start"
  wait_ready backend-b2 "$B2_PID" "$B2_PORT" || die "backend b2 did not start"
}

declare -A TPID # target -> top PID

# start_proxy NAME SCHEME: starts target NAME on port ${PORT[NAME]}, pinned
# to the proxy's core, and waits until it answers; returns 1, having said
# why, to skip it. nginx, nginx-modsec, haproxy and caddy run from the
# files the write_* functions wrote; any other target is started, in the background, by the
# script's launch_target NAME PORT LOGFILE, which returns 1 to skip it.
start_proxy() {
  local name=$1 scheme=$2 port=${PORT[$1]} pid
  if port_open "$port"; then
    log "SKIP $name: port $port already in use by a process this script did not start"
    return 1
  fi
  local logf="$OUT/$name.log"
  case $name in
  nginx | nginx-modsec)
    "${PIN_PROXY[@]}" nginx -p "$OUT/$name" -c "$OUT/$name/nginx.conf" -e "$OUT/$name/error.log" >"$logf" 2>&1 &
    ;;
  haproxy)
    "${PIN_PROXY[@]}" haproxy -db -f "$OUT/haproxy.cfg" >"$logf" 2>&1 &
    ;;
  caddy)
    GOMAXPROCS=1 XDG_DATA_HOME="$OUT/caddy/data" XDG_CONFIG_HOME="$OUT/caddy/config" \
      "${PIN_PROXY[@]}" caddy run --config "$OUT/Caddyfile" --adapter caddyfile >"$logf" 2>&1 &
    ;;
  *)
    launch_target "$name" "$port" "$logf" || return 1
    ;;
  esac
  pid=$!
  STARTED_PIDS+=("$pid")
  if ! wait_ready "$name" "$pid" "$port" "$scheme"; then
    log "SKIP $name: did not start (last lines of $logf follow)"
    tail -n 5 "$logf" >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    return 1
  fi
  TPID[$name]=$pid
  return 0
}

# pid_tree PID: PID and all its descendants
pid_tree() {
  local p
  echo "$1"
  for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    pid_tree "$p"
  done
}

# cpu_ticks PID...: utime+stime of all given processes (all threads included)
cpu_ticks() {
  local total=0 p stat rest f
  for p in "$@"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) } # fields after "(comm) "; utime/stime are fields 14/15
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# round_order ROUND: the targets in RUN, one a line, rotated by ROUND-1 so
# that no target always runs first or last
round_order() {
  local n=${#RUN[@]} i
  for ((i = 0; i < n; i++)); do
    echo "${RUN[$(((i + $1 - 1) % n))]}"
  done
}

# alive TARGET: whether the target still runs (says so when not)
alive() {
  kill -0 "${TPID[$1]}" 2>/dev/null && return 0
  log "$1 has died; skipping"
  return 1
}

# ---------------------------------------------------------------- measure
# wrk_load URL SECONDS: wrk's output for a keep-alive run from the load
# core, with the extra wrk options in WRK_ARGS (e.g. -H headers)
WRK_ARGS=()
wrk_load() {
  if [[ -n ${RATE:-} ]]; then # open loop at a fixed rate (bench/openload), wrk-like output
    GOMAXPROCS=1 "${PIN_LOAD[@]}" "$OUT/openload" -rate "$RATE" -c "$CONNS" -d "${2}s" "${WRK_ARGS[@]}" "$1" 2>&1 || true
    return
  fi
  "${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"${2}s" --timeout 5s --latency "${WRK_ARGS[@]}" "$1" 2>&1 || true
}

to_ms() { # wrk latency like 820.00us / 1.64ms / 2.01s -> ms
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000
    else if (v ~ /ms$/) n = n
    else if (v ~ /m$/) n = n * 60000
    else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

# parse_wrk OUTPUT: sets rps, reqs, p50, p99 (ms) and errs (socket errors +
# non-2xx responses) from wrk's output; the caller declares them local.
parse_wrk() {
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$1")
  reqs=$(awk '/requests in/ {print $1}' <<<"$1")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$1")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$1")")
  errs=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $5} END {print s + 0}' <<<"$1")
}

# non_2xx OUTPUT: the responses wrk counted as errors by their status
# ("Non-2xx or 3xx responses"; 0 when the line is absent)
non_2xx() { awk '/^ *Non-2xx/ {n += $5} END {print n + 0}' <<<"$1"; }

# cpu_figures TICKS0 TICKS1 SECONDS REQUESTS: sets cpu (the target's CPU
# seconds), per100k (CPU seconds per 100,000 requests) and pcpu (% of one
# core); the caller declares them local.
cpu_figures() {
  cpu=$(awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", (b - a) / hz}')
  per100k=$(awk -v c="$cpu" -v n="${4:-0}" 'BEGIN {if (n > 0) printf "%.4f", c / n * 100000; else print "nan"}')
  pcpu=$(awk -v c="$(($2 - $1))" -v hz="$CLK_TCK" -v s="$3" 'BEGIN {printf "%.0f", c / hz / s * 100}')
}

# ---------------------------------------------------------------- report
# rows COLUMN KEY...: COLUMN of the rows of RAW (header skipped) whose
# columns 2, 3, ... equal KEY...
rows() {
  local c=$1
  shift
  awk -F, -v c="$c" -v keys="$*" 'BEGIN {n = split(keys, k, " ")}
    NR > 1 {for (i = 1; i <= n; i++) if ($(i + 1) != k[i]) next; print $c}' "$RAW"
}

# median COLUMN KEY...: median of rows COLUMN KEY... ("nan" if none)
median() {
  rows "$@" | sort -g |
    awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# total COLUMN KEY...: sum of rows COLUMN KEY...
total() { rows "$@" | awk '{s += $1} END {print s + 0}'; }

# ratio A B: A / B to two decimals, "-" when B is missing or zero or either is "nan"
ratio() { awk -v a="$1" -v b="${2:-}" 'BEGIN {if (b == "" || b == "nan" || b + 0 == 0 || a == "nan") print "-"; else printf "%.2f", a / b}'; }

# show_results: prints RES and says where RES and RAW are
show_results() {
  echo
  cat "$RES"
  echo
  log "wrote $RES and $RAW"
}
