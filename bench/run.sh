#!/usr/bin/env bash
# Rampart load benchmark: Rampart vs nginx, HAProxy, Caddy (and, with
# CANDIDATES=1, the engine candidates in bench/candidates/), all as plain
# HTTP/1.1 reverse proxies on 127.0.0.1, round robin over two local backends,
# one worker/thread each, pinned to CPU 0; wrk and the backends on CPU 1.
#
# Usage:  bench/run.sh
# Env:    ROUNDS=3 DURATION=10 WARMUP=2 CONNS=64 CANDIDATES=0
#         RATE=N   open loop at N req/s (bench/openload) instead of wrk's closed loop
#         ONLY="nginx rampart"   (run only these targets; "direct" is always run)
#         REQUEST=plain|browser|post|upload  (what wrk sends: GET /, a
#                                browser's page view, a POST of a 1 KiB
#                                body, or one of 64 KiB;
#                                browser is the default when a WAF target
#                                runs: nginx-modsec, rampart-waf-*)
#         NO_INSTALL=1           (never call apt-get)
#         PROFILE="stdlib"       (CPU-profile these candidates; needs CANDIDATES=1)
#         CAND_WORK=2us          (eventloop, coro and goroutines busy-loop this
#                                long per request: how each waiting model's
#                                latency follows a proxy's per-request cost)
#         QUIET_PCT=20 QUIET_MAX=60 (before each run, wait up to QUIET_MAX s
#                                  until other processes use < QUIET_PCT% CPU)
#         NOISE_PCT=25 RETRIES=2   (re-run a measurement, up to RETRIES times,
#                                  when other processes took > NOISE_PCT% of
#                                  the proxy's or the load generator's core)
#
# All traffic goes to 127.0.0.1. Every process the script starts is killed on
# exit, by PID. Results: bench/out/results.md, bench/out/raw.csv.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$BENCH_DIR/out
LOG_TAG=bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CANDIDATES=${CANDIDATES:-0}
PROFILE=${PROFILE:-}
QUIET_PCT=${QUIET_PCT:-20}
QUIET_MAX=${QUIET_MAX:-60}
NOISE_PCT=${NOISE_PCT:-25}
RETRIES=${RETRIES:-2}

# Ports: 18xxx for traffic, 19xxx for admin. Never 8080/9090.
B1_PORT=18081
B2_PORT=18082
declare -A PORT=(
  [rampart]=18000 [nginx]=18001 [haproxy]=18002 [caddy]=18003 [nginx-modsec]=18004
  [stdlib]=18101 [fasthttp]=18102 [stdlib-rawclient]=18103 [eventloop]=18104
  [coro]=18105 [goroutines]=18106
  [direct]=$B1_PORT
)

need_tools wrk curl

# Targets in the order they are run in round 1 (later rounds rotate).
TARGETS=(direct)
add_proxy_targets
# nginx + ModSecurity + CRS (the WAF to compare Rampart's with), run only
# when ONLY names it.
if [[ " $ONLY " == *" nginx-modsec "* ]]; then
  if ensure_modsec; then
    TARGETS+=(nginx-modsec)
  else
    log "SKIP nginx-modsec: nginx, libnginx-mod-http-modsecurity or modsecurity-crs not installed and could not be installed (see $OUT/apt-*.log)"
  fi
fi
# Variants: bench/rampart-NAME.yaml is target rampart-NAME, run only when
# ONLY names it; its port is on its "# bench-port:" line.
for f in "$BENCH_DIR"/rampart-*.yaml; do
  [[ -e $f ]] || continue
  v=$(basename "$f" .yaml)
  [[ " $ONLY " == *" $v "* ]] || continue
  PORT[$v]=$(awk '/^# bench-port:/ {print $3; exit}' "$f")
  [[ -n ${PORT[$v]} ]] || die "$f has no '# bench-port:' line"
  TARGETS+=("$v")
done
if [[ $CANDIDATES == 1 ]]; then
  for c in stdlib fasthttp stdlib-rawclient eventloop coro goroutines; do
    want "$c" && TARGETS+=("$c")
  done
fi

# is_waf TARGET: whether the target runs a WAF
is_waf() { [[ $1 == nginx-modsec || $1 == rampart-waf-* ]]; }

# The request wrk sends to every target. plain: GET /. browser: a benign
# page view with a query string and a browser's headers, all of which a WAF
# inspects (every argument, header and cookie); what WAF runs measure, so
# that the WAF targets and the plain proxies answer the same request.
if [[ -z ${REQUEST:-} ]]; then
  REQUEST=plain
  for t in "${TARGETS[@]}"; do
    is_waf "$t" && REQUEST=browser
  done
fi
case $REQUEST in
plain)
  REQ_PATH=/
  REQ_HEADERS=()
  ;;
browser)
  REQ_PATH='/products/view?id=1234&color=blue&size=42'
  REQ_HEADERS=(
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'
    'Accept-Language: en-GB,en;q=0.9,de;q=0.8'
    'Accept-Encoding: gzip, deflate, br'
    "Referer: http://$HOST/products?category=shoes&page=2"
    'Cookie: sessionid=3f9a1c0e7b2d4e6f8a0b1c2d3e4f5a6b; theme=dark; lang=en-GB'
  )
  ;;
post | upload)
  # post: an API call, a 1 KiB body of known length (an upload of the
  # size most JSON requests have). upload: a 64 KiB one, more than any of
  # the proxies buffers in memory by default; every proxy streams it
  # (nginx with proxy_request_buffering off, as Rampart, HAProxy and
  # Caddy do).
  [[ -z ${RATE:-} ]] || die "REQUEST=$REQUEST: wrk only (not with RATE)"
  BODY_SIZE=1024
  [[ $REQUEST == upload ]] && BODY_SIZE=65536
  REQ_PATH=/upload
  REQ_HEADERS=('Content-Type: application/octet-stream')
  head -c "$BODY_SIZE" /dev/zero | tr '\0' 'a' >"$OUT/post-body"
  printf 'wrk.method = "POST"\nwrk.body = string.rep("a", %d)\n' "$BODY_SIZE" >"$OUT/post.lua"
  ;;
*) die "REQUEST=$REQUEST: use plain, browser, post or upload" ;;
esac
# the headers as wrk and curl options (both take -H "Name: value"); a
# POST's method and body (wrk: a script; curl: the body's file)
CURL_ARGS=()
for h in "${REQ_HEADERS[@]}"; do
  WRK_ARGS+=(-H "$h")
  CURL_ARGS+=(-H "$h")
done
if [[ $REQUEST == post || $REQUEST == upload ]]; then
  WRK_ARGS+=(-s "$OUT/post.lua")
  CURL_ARGS+=(--data-binary "@$OUT/post-body")
fi

pin_cpus

# ---------------------------------------------------------------- builds
log "building backend and rampart"
go_build bench/backend backend
[[ -n ${RATE:-} ]] && go_build bench/openload openload
RAMPART_OK=1
if ! go_build cmd/rampart rampart >"$OUT/rampart-build.log" 2>&1; then
  RAMPART_OK=0
  log "rampart does not build (see $OUT/rampart-build.log)"
fi
if [[ $CANDIDATES == 1 ]]; then
  log "building engine candidates"
  (cd "$BENCH_DIR/candidates" &&
    go build -o "$OUT/cand-stdlib" ./stdlib &&
    go build -o "$OUT/cand-fasthttp" ./fasthttp &&
    go build -o "$OUT/cand-stdlib-rawclient" ./rawclient &&
    go build -o "$OUT/cand-eventloop" ./eventloop &&
    go build -o "$OUT/cand-coro" ./coro &&
    go build -o "$OUT/cand-goroutines" ./goroutines)
fi

# ---------------------------------------------------------------- configs
if [[ $REQUEST == upload ]]; then
  write_nginx_conf nginx "$HOST:${PORT[nginx]}" "proxy_request_buffering off"
else
  write_nginx_conf nginx "$HOST:${PORT[nginx]}"
fi
write_nginx_modsec_conf nginx-modsec "$HOST:${PORT[nginx-modsec]}" 1
write_haproxy_cfg "$HOST:${PORT[haproxy]}"
write_caddyfile "http://$HOST:${PORT[caddy]}"
cp "$BENCH_DIR"/rampart.yaml "$BENCH_DIR"/rampart-*.yaml "$OUT/"

# ---------------------------------------------------------------- targets
# rss_kb PID...: sum of VmRSS
rss_kb() {
  local total=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# PROFILE="stdlib fasthttp": CPU-profile these candidates over the whole run
# (they only sample while busy, i.e. while wrk is hitting them); the profile is
# flushed when the script stops them, and summarised with `go tool pprof -top`.
profile_args() {
  [[ " $PROFILE " == *" $1 "* ]] && echo "-cpuprofile $OUT/$1.cpu.pprof"
  [[ -n ${CAND_WORK:-} && " eventloop coro goroutines " == *" $1 "* ]] && echo "-work $CAND_WORK"
  return 0
}

declare -A IDLE_RSS

# start_target NAME: starts it pinned, waits for readiness; returns 1 to skip
start_target() {
  if [[ $1 == direct ]]; then
    TPID[direct]=$B1_PID
    return 0
  fi
  start_proxy "$1" http
}

# launch_target NAME PORT LOGFILE: start_proxy's hook for Rampart and the
# candidates
launch_target() {
  local name=$1 port=$2 logf=$3
  case $name in
  rampart | rampart-*)
    if [[ $RAMPART_OK != 1 ]]; then
      log "SKIP $name: binary did not build"
      return 1
    fi
    GOMAXPROCS=1 "${PIN_PROXY[@]}" "$OUT/rampart" serve -c "$OUT/$name.yaml" >"$logf" 2>&1 &
    ;;
  stdlib | fasthttp | stdlib-rawclient | eventloop | coro | goroutines)
    # shellcheck disable=SC2046 # profile_args is zero or two words
    GOMAXPROCS=1 "${PIN_PROXY[@]}" "$OUT/cand-$name" -listen "$HOST:$port" \
      -backends "$HOST:$B1_PORT,$HOST:$B2_PORT" $(profile_args "$name") >"$logf" 2>&1 &
    ;;
  *) die "unknown target $name" ;;
  esac
}

# ---------------------------------------------------------------- start
start_backends

RUN=()
for t in "${TARGETS[@]}"; do
  if start_target "$t"; then
    RUN+=("$t")
  fi
done
sleep 0.5
for t in "${RUN[@]}"; do
  # shellcheck disable=SC2046
  IDLE_RSS[$t]=$(rss_kb $(pid_tree "${TPID[$t]}"))
  log "started $t (pid ${TPID[$t]}, idle RSS $((IDLE_RSS[$t] / 1024)) MB)"
done

# Both backends must see traffic through each proxy (sanity: round robin).
for t in "${RUN[@]}"; do
  [[ $t == direct ]] && continue
  seen=$(for _ in 1 2 3 4; do curl -s -m 2 -D - -o /dev/null "http://$HOST:${PORT[$t]}/" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend"{print $2}'; done | sort -u | tr '\n' ' ')
  log "$t: backends seen in 4 requests: ${seen:-none}"
done

# status_of TARGET PATH: the status code of the measured request, sent to
# PATH instead of REQ_PATH (the body lands in $OUT/check-TARGET.body)
status_of() {
  curl -s -m 5 -o "$OUT/check-$1.body" -w '%{http_code}' "${CURL_ARGS[@]}" "http://$HOST:${PORT[$1]}$2" || true
}

# waf_verdicts TARGET: "PASS DETECT BLOCK", the Rampart target's
# rampart_waf_requests_total counters (admin listener: the "admin:" line of
# its config)
waf_verdicts() {
  local admin
  admin=$(sed -n 's/^admin: *{listen: *\([^ },]*\).*/\1/p' "$OUT/$1.yaml")
  curl -s -m 5 "http://$admin/metrics" | awk '
    $1 == "rampart_waf_requests_total{action=\"PASS\"}" {p = $2}
    $1 == "rampart_waf_requests_total{action=\"DETECT\"}" {d = $2}
    $1 == "rampart_waf_requests_total{action=\"BLOCK\"}" {b = $2}
    END {if (p != "") printf "%d %d %d\n", p, d, b}'
}

# expect_verdicts TARGET BEFORE PASS DETECT BLOCK: waits (up to 1 s: the
# counters move once the answer is written) until the target's verdict
# counters are BEFORE plus the given increments; dies otherwise.
expect_verdicts() {
  local t=$1 want now i b
  read -r -a b <<<"$2"
  want="$((b[0] + $3)) $((b[1] + $4)) $((b[2] + $5))"
  for ((i = 0; i < 10; i++)); do
    now=$(waf_verdicts "$t")
    [[ $now == "$want" ]] && return 0
    sleep 0.1
  done
  die "$t: WAF verdict counters (PASS DETECT BLOCK) went from '$2' to '${now:-unreadable}', not to '$want': the measured request must pass and the SQL injection must be caught"
}

# The measured request must get a 200 from every target: a WAF that refuses
# it (a false positive) would be measuring its error page. And every WAF must
# be inspecting it: the same request with an SQL injection in a parameter is
# refused with 403, or, in DETECT mode, passed and counted as DETECT; and
# Rampart's WAFs count the benign request as PASS (not DETECT).
if [[ $REQ_PATH == *\?* ]]; then ATTACK_PATH="$REQ_PATH&"; else ATTACK_PATH="$REQ_PATH?"; fi
ATTACK_PATH+="q=1%27%20OR%20%271%27%3D%271" # q=1' OR '1'='1
declare -A VERDICTS # Rampart WAF target -> its counters after these checks
for t in "${RUN[@]}"; do
  v0=""
  [[ $t == rampart-waf-* ]] && v0=$(waf_verdicts "$t")
  code=$(status_of "$t" "$REQ_PATH")
  [[ $code == 200 ]] || die "$t answers the measured request ($REQ_PATH, REQUEST=$REQUEST) with $code, not 200: the numbers would be meaningless (body: $OUT/check-$t.body)"
  is_waf "$t" || continue
  want=403
  [[ $t == rampart-waf-detect ]] && want=200
  code=$(status_of "$t" "$ATTACK_PATH")
  [[ $code == "$want" ]] || die "$t answers an SQL injection (GET $ATTACK_PATH) with $code, not $want: is its WAF on?"
  case $t in
  rampart-waf-detect) expect_verdicts "$t" "$v0" 1 1 0 ;;
  rampart-waf-block) expect_verdicts "$t" "$v0" 1 0 1 ;;
  esac
  [[ $t == rampart-waf-* ]] && VERDICTS[$t]=$(waf_verdicts "$t")
  log "$t: measured request 200, SQL injection $want: WAF on"
done

# ---------------------------------------------------------------- measure
RAW=$OUT/raw.csv
echo "round,target,rps,requests,p50_ms,p99_ms,cpu_s,cpu_s_per_100k,errors,upstream_conns_opened,proxy_cpu_pct,proxy_core_interference_pct,load_core_interference_pct" | tee "$OUT/raw-discarded.csv" >"$RAW"

# backend_accepts: connections accepted so far by both backends (SIGUSR1
# makes each print "accepts=N" to its log)
backend_accepts() {
  kill -USR1 "$B1_PID" "$B2_PID"
  sleep 0.1
  local a b
  a=$(grep -o 'accepts=[0-9]*' "$OUT/backend-b1.log" | tail -n 1 | cut -d= -f2)
  b=$(grep -o 'accepts=[0-9]*' "$OUT/backend-b2.log" | tail -n 1 | cut -d= -f2)
  echo $((${a:-0} + ${b:-0}))
}

# cpu_stat N: "user+nice+system+steal total" ticks of cpuN ("" = all CPUs)
cpu_stat() {
  awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

# wait_quiet: our targets are idle between runs, so CPU used now is someone
# else's. Wait (up to QUIET_MAX s) until that is below QUIET_PCT% of the machine.
wait_quiet() {
  local waited=0 a b pct
  while :; do
    a=$(cpu_stat "")
    sleep 1
    b=$(cpu_stat "")
    pct=$(awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%d", (d > 0 ? (y[1] - x[1]) * 100 / d : 0)}')
    if ((pct < QUIET_PCT)); then
      ((waited > 0)) && log "machine quiet again after ${waited}s"
      return 0
    fi
    if ((waited >= QUIET_MAX)); then
      log "machine still busy (${pct}% CPU used by other processes) after ${QUIET_MAX}s; measuring anyway"
      return 0
    fi
    ((waited == 0)) && log "machine busy (${pct}% CPU used by other processes); waiting up to ${QUIET_MAX}s"
    waited=$((waited + 1))
  done
}

# self_child_ticks: utime+stime of this shell's waited-for children (wrk)
self_child_ticks() {
  local stat rest
  stat=$(cat "/proc/$$/stat")
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo $((f[13] + f[14]))
}

# interference "STAT0" "STAT1" OWN_TICKS: % of a core's time used by
# processes other than ours (user+nice+system+steal minus OWN_TICKS)
interference() {
  awk -v a="$1" -v b="$2" -v own="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " "); d = y[2] - x[2]
    o = (y[1] - x[1]) - own; if (o < 0) o = 0
    printf "%.1f", (d > 0 ? o * 100 / d : 0) }'
}

# run_wrk TARGET SECONDS ROUND (ROUND=0: warm-up, not recorded)
run_wrk() {
  local t=$1 secs=$2 round=$3 port=${PORT[$1]}
  local pids t0 t1 wout a0 a1 s0 s1 l0 l1 b0 b1 w0 w1 other other1 own
  pids=$(pid_tree "${TPID[$t]}")
  a0=$(backend_accepts)
  s0=$(cpu_stat "$PROXY_CPU")
  l0=$(cpu_stat "$LOAD_CPU")
  b0=$(cpu_ticks "$B1_PID" "$B2_PID")
  w0=$(self_child_ticks)
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $pids)
  wout=$(wrk_load "http://$HOST:$port$REQ_PATH" "$secs")
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pids)
  w1=$(self_child_ticks)
  b1=$(cpu_ticks "$B1_PID" "$B2_PID")
  l1=$(cpu_stat "$LOAD_CPU")
  s1=$(cpu_stat "$PROXY_CPU")
  a1=$(backend_accepts)
  local bad
  bad=$(non_2xx "$wout")
  if ((bad > 0)); then
    echo "$wout" >"$OUT/wrk-$t-r$round.txt"
    die "$t answered $bad requests with a status >= 400 (wrk: $OUT/wrk-$t-r$round.txt): its numbers would be meaningless"
  fi
  [[ $round == 0 ]] && return 0
  echo "$wout" >"$OUT/wrk-$t-r$round.txt"
  local rps reqs p50 p99 errs cpu per100k pcpu
  # CPU time other processes took on the proxy's core during the run
  # (user+system+steal of the core minus the proxy's own; for "direct" the
  # core is otherwise idle, so this is pure interference too)
  # and on the load core (minus wrk and the backends). The proxy's own
  # share of its core (pcpu) tells whether the proxy was the bottleneck.
  if [[ $t == direct ]]; then own=0; else own=$((t1 - t0)); fi
  other=$(interference "$s0" "$s1" "$own")
  other1=$(interference "$l0" "$l1" $((b1 - b0 + w1 - w0)))
  parse_wrk "$wout"
  cpu_figures "$t0" "$t1" "$secs" "${reqs:-0}"
  local line="$round,$t,${rps:-0},${reqs:-0},$p50,$p99,$cpu,$per100k,$errs,$((a1 - a0)),$pcpu,$other,$other1"
  local msg
  msg="round $round  $(printf '%-17s' "$t") $(printf '%9s' "${rps:-0}") req/s  p50 ${p50}ms  p99 ${p99}ms  cpu ${cpu}s  (${per100k} cpu-s/100k)  errors $errs  new upstream conns $((a1 - a0))  proxy at ${pcpu}% of its core  others on cpu${PROXY_CPU} ${other}% cpu${LOAD_CPU} ${other1}%"
  # Too much foreign load on a core this run depends on: discard and let
  # the caller retry, unless this is the last attempt.
  local noisy
  noisy=$(awk -v a="$other" -v b="$other1" -v lim="$NOISE_PCT" -v d="$([[ $t == direct ]] && echo 1 || echo 0)" 'BEGIN {print ((d == 0 && a > lim) || b > lim) ? 1 : 0}')
  if [[ $noisy == 1 && ${4:-1} == 0 ]]; then
    echo "$line" >>"$OUT/raw-discarded.csv"
    log "$msg  -> DISCARDED (other load > ${NOISE_PCT}%), retrying"
    return 1
  fi
  echo "$line" >>"$RAW"
  log "$msg"
}

log "warm-up: ${WARMUP}s per target"
for t in "${RUN[@]}"; do
  run_wrk "$t" "$WARMUP" 0
done

N=${#RUN[@]}
log "measuring: $ROUNDS rounds x $N targets x ${DURATION}s, $CONNS connections"
for ((r = 1; r <= ROUNDS; r++)); do
  # rotate the order each round so no target always runs first/last
  for t in $(round_order "$r"); do
    alive "$t" || continue
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
      wait_quiet
      run_wrk "$t" "$DURATION" "$r" $((attempt == RETRIES ? 1 : 0)) && break
    done
  done
done

# Rampart's WAFs must have passed every measured request: a DETECT verdict
# does not show in the status codes.
for t in "${!VERDICTS[@]}"; do
  alive "$t" || continue
  read -r -a a <<<"${VERDICTS[$t]}"
  read -r -a b <<<"$(waf_verdicts "$t") "
  ((${#b[@]} == 3)) || die "$t: cannot read its WAF counters"
  log "$t: WAF verdicts over warm-up and rounds: PASS $((b[0] - a[0])), DETECT $((b[1] - a[1])), BLOCK $((b[2] - a[2]))"
  ((b[1] == a[1] && b[2] == a[2])) || die "$t: its WAF scored the measured request as an attack: the numbers would be meaningless"
done

declare -A LOADED_RSS
for t in "${RUN[@]}"; do
  # shellcheck disable=SC2046
  LOADED_RSS[$t]=$(rss_kb $(pid_tree "${TPID[$t]}"))
done

# ---------------------------------------------------------------- report
declare -A M_RPS M_P50 M_P99 M_CPU M_ERR M_PCPU M_INT0 M_INT1
for t in "${RUN[@]}"; do
  M_RPS[$t]=$(median 3 "$t")
  M_P50[$t]=$(median 5 "$t")
  M_P99[$t]=$(median 6 "$t")
  M_CPU[$t]=$(median 8 "$t")
  M_PCPU[$t]=$(median 11 "$t")
  M_INT0[$t]=$(median 12 "$t")
  M_INT1[$t]=$(median 13 "$t")
  M_ERR[$t]=$(total 9 "$t")
done

# waf_table: when WAF targets ran, what the WAF costs each proxy (vs the
# same proxy without it) and how the WAFs compare (vs nginx + ModSecurity)
waf_table() {
  local t off any=0
  for t in "${RUN[@]}"; do
    is_waf "$t" && any=1
  done
  ((any)) || return 0
  echo
  echo "| WAF target | req/s | CPU-s/100k req | p99 ms | thr. vs WAF off | CPU/req vs WAF off | thr. vs nginx-modsec | CPU/req vs nginx-modsec |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${RUN[@]}"; do
    is_waf "$t" || continue
    off=rampart
    [[ $t == nginx-modsec ]] && off=nginx
    printf '| %s | %.0f | %.3f | %.2f | %s | %s | %s | %s |\n' "$t" "${M_RPS[$t]}" "${M_CPU[$t]}" "${M_P99[$t]}" \
      "$(ratio "${M_RPS[$t]}" "${M_RPS[$off]:-}")" "$(ratio "${M_CPU[$t]}" "${M_CPU[$off]:-}")" \
      "$(ratio "${M_RPS[$t]}" "${M_RPS[nginx-modsec]:-}")" "$(ratio "${M_CPU[$t]}" "${M_CPU[nginx-modsec]:-}")"
  done
  echo
  echo "WAF off: nginx for nginx-modsec, rampart for rampart-waf-*. nginx-modsec runs ModSecurity v3 with Debian's CRS 3.3," \
    "Rampart Coraza with CRS v4; both at paranoia level 1, anomaly threshold 5."
}

RES=$OUT/results.md
{
  echo "| proxy | req/s | p50 ms | p99 ms | CPU-s/100k req | idle RSS MB | loaded RSS MB | errors | thr. vs nginx | CPU/req vs nginx | p99 vs nginx | thr. vs direct | proxy core busy % | other load % (proxy core / load core) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${RUN[@]}"; do
    name=$t
    [[ $t == direct ]] && name="direct (backend b1)"
    printf '| %s | %.0f | %.2f | %.2f | %.3f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s / %s |\n' \
      "$name" "${M_RPS[$t]}" "${M_P50[$t]}" "${M_P99[$t]}" "${M_CPU[$t]}" \
      "$(awk -v k="${IDLE_RSS[$t]}" 'BEGIN {print k / 1024}')" \
      "$(awk -v k="${LOADED_RSS[$t]}" 'BEGIN {print k / 1024}')" \
      "${M_ERR[$t]}" \
      "$(ratio "${M_RPS[$t]}" "${M_RPS[nginx]:-}")" \
      "$(ratio "${M_CPU[$t]}" "${M_CPU[nginx]:-}")" \
      "$(ratio "${M_P99[$t]}" "${M_P99[nginx]:-}")" \
      "$(ratio "${M_RPS[$t]}" "${M_RPS[direct]:-}")" \
      "${M_PCPU[$t]}" "${M_INT0[$t]}" "${M_INT1[$t]}"
  done
  echo
  loadgen="wrk -t1 -c$CONNS -d${DURATION}s --latency"
  [[ -n ${RATE:-} ]] && loadgen="openload -rate $RATE -c $CONNS -d ${DURATION}s (open loop: latency from when each request was due)"
  echo "Medians of $ROUNDS interleaved rounds of \`$loadgen\`;" \
    "proxies pinned to CPU $PROXY_CPU with one worker/thread each, wrk and both backends on CPU $LOAD_CPU." \
    "The direct row's CPU and RSS columns are the backend's own. Raw per-run numbers: bench/out/raw.csv."
  echo
  if [[ $REQUEST == post ]]; then
    echo "Request (REQUEST=post): \`POST $REQ_PATH\` with a 1 KiB body (Content-Length) and wrk's default headers."
  elif [[ $REQUEST == upload ]]; then
    echo "Request (REQUEST=upload): \`POST $REQ_PATH\` with a 64 KiB body (Content-Length), streamed by every proxy (nginx: proxy_request_buffering off)."
  elif [[ $REQUEST == browser ]]; then
    echo "Request (REQUEST=browser): \`GET $REQ_PATH\` with the headers $(printf '%s, ' "${REQ_HEADERS[@]%%:*}" | sed 's/, $//'); every target answered 200."
  else
    echo "Request (REQUEST=plain): \`GET /\` with wrk's default headers (Host only)."
  fi
  waf_table
} >"$RES"

show_results

if [[ -n $PROFILE ]]; then
  stop_started # so the candidates flush their profiles
  for c in $PROFILE; do
    prof=$OUT/$c.cpu.pprof
    [[ -s $prof ]] || continue
    (cd "$BENCH_DIR/candidates" && go tool pprof -top -nodecount=40 "$OUT/cand-$c" "$prof") >"$OUT/$c.pprof-top.txt" 2>&1 || true
    (cd "$BENCH_DIR/candidates" && go tool pprof -top -cum -nodecount=40 "$OUT/cand-$c" "$prof") >"$OUT/$c.pprof-top-cum.txt" 2>&1 || true
    log "profile of $c: $OUT/$c.pprof-top.txt (flat) and $OUT/$c.pprof-top-cum.txt (cumulative)"
  done
fi
