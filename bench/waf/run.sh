#!/usr/bin/env bash
# WAF efficacy benchmark: the corpus of internal/waf/testdata/corpus (every
# payload in every placement: query, path, header, cookie, JSON, form,
# multipart, XML) sent through
#   - nginx + ModSecurity v3 + the Debian CRS package (libnginx-mod-http-
#     modsecurity, modsecurity-crs; CRS 3.3 on bookworm), and
#   - Rampart (Coraza v3 + embedded CRS v4),
# both in blocking mode at the same paranoia level, in front of the same
# 200-everything backend. A request counts as blocked when the answer is
# not 200. Prints detection (attack categories) and false positives (benign
# categories) side by side.
#
# Usage:  bench/waf/run.sh
# Env:    LEVELS="1 2"   paranoia levels to run
#         NO_INSTALL=1   never call apt-get
#
# All traffic stays on 127.0.0.1 (ports 18201-18203, admin 19203). Every
# process the script starts is killed on exit, by PID.
set -euo pipefail

LEVELS=${LEVELS:-"1 2"}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mktemp -d /tmp/rampart-wafbench.XXXXXX)
LOG_TAG=wafbench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
if [[ ${KEEP_TMP:-0} == 1 ]]; then
  log "keeping $OUT"
else
  REMOVE_ON_EXIT+=("$OUT")
fi
# Both proxies forward to the replay tool's 200-everything backend (nginx's
# upstream lists it twice: lib.sh's config has two backends).
B1_PORT=18201
B2_PORT=18201
BACKEND=$HOST:$B1_PORT
NGINX_PORT=18202
RAMPART_PORT=18203

# die_with_logs MESSAGE: die, after the last lines of the proxies' logs
die_with_logs() {
  tail -n 5 "$OUT"/*/error.log "$OUT"/*/stderr.log "$OUT"/*/rampart.log 2>/dev/null >&2 || true
  die "$*"
}

ensure_modsec || die "nginx, libnginx-mod-http-modsecurity and modsecurity-crs are needed (NO_INSTALL=$NO_INSTALL; see $OUT/apt-*.log)"

wait_port() { # port
  for _ in $(seq 1 100); do
    port_open "$1" && return 0
    sleep 0.1
  done
  die_with_logs "nothing listens on $HOST:$1"
}

log "building rampart and the replay tool"
go_build cmd/rampart rampart
go_build bench/waf/replay replay

"$OUT/replay" -backend "$BACKEND" 2>"$OUT/backend.log" &
STARTED_PIDS+=($!)
wait_port "$B1_PORT"

start_nginx() { # paranoia level
  local d=$OUT/nginx-$1
  write_nginx_modsec_conf "nginx-$1" "$HOST:$NGINX_PORT" "$1"
  nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>>"$d/stderr.log" &
  NGINX_PID=$!
  STARTED_PIDS+=("$NGINX_PID")
  wait_port $NGINX_PORT
}

start_rampart() { # paranoia level
  local pl=$1 d=$OUT/rampart-$1
  mkdir -p "$d"
  # Auto-blocking is off (every request comes from 127.0.0.1) and encoded
  # slashes are let through, so that only the WAF decides, as in nginx.
  cat >"$d/rampart.yaml" <<CONF
data_dir: $d/data
admin: {listen: 127.0.0.1:19203}
listeners: [{name: waf, listen: "127.0.0.1:$RAMPART_PORT"}]
routes: [{name: all, match: {path_prefix: /}, pool: p}]
pools: [{name: p, backends: [{id: b, address: "$BACKEND"}]}]
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0}
  request_limits: {allow_encoded_slashes: true}
  dynamic_blocklist: {auto_block: {waf_attacks: {enabled: false}}}
  waf: {mode: BLOCK, paranoia_level: $pl, allowed_methods: [GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE]}
CONF
  "$OUT/rampart" serve -c "$d/rampart.yaml" -log-level warn 2>"$d/rampart.log" &
  RAMPART_PID=$!
  STARTED_PIDS+=("$RAMPART_PID")
  wait_port $RAMPART_PORT
}

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

for pl in $LEVELS; do
  log "paranoia level $pl: nginx + ModSecurity"
  start_nginx "$pl"
  (cd "$ROOT" && "$OUT/replay" -target "http://127.0.0.1:$NGINX_PORT") >"$OUT/modsec-$pl.json"
  stop "$NGINX_PID"
  log "paranoia level $pl: Rampart"
  start_rampart "$pl"
  (cd "$ROOT" && "$OUT/replay" -target "http://127.0.0.1:$RAMPART_PORT") >"$OUT/rampart-$pl.json"
  stop "$RAMPART_PID"
done

# shellcheck disable=SC2086 # LEVELS is a list of levels
python3 - "$OUT" $LEVELS <<'PY'
import json, sys
tmp, levels = sys.argv[1], sys.argv[2:]
print("WAF corpus: blocked share per category (attack: detection, higher is better;")
print("benign: false positives, lower is better). ModSecurity = nginx + ModSecurity v3 + Debian CRS.")
for pl in levels:
    m = json.load(open(f"{tmp}/modsec-{pl}.json"))
    r = json.load(open(f"{tmp}/rampart-{pl}.json"))
    print(f"\nParanoia level {pl}")
    print(f"{'category':<22} {'requests':>8} {'ModSecurity':>12} {'Rampart':>10}")
    tot = {}
    for k in sorted(set(m) | set(r)):
        mb, n = m.get(k, [0, 0]); rb, _ = r.get(k, [0, 0])
        kind = k.split("/")[0]
        t = tot.setdefault(kind, [0, 0, 0]); t[0] += mb; t[1] += rb; t[2] += n
        print(f"{k:<22} {n:>8} {100*mb/max(n,1):>11.1f}% {100*rb/max(n,1):>9.1f}%")
    for kind, (mb, rb, n) in sorted(tot.items()):
        print(f"{'all '+kind:<22} {n:>8} {100*mb/max(n,1):>11.1f}% {100*rb/max(n,1):>9.1f}%")
PY
