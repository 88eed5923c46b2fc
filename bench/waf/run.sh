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
NO_INSTALL=${NO_INSTALL:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BACKEND=127.0.0.1:18201
NGINX_PORT=18202
RAMPART_PORT=18203
TMP=$(mktemp -d /tmp/rampart-wafbench.XXXXXX)

log() { printf '[wafbench] %s\n' "$*" >&2; }
die() { log "FATAL: $*"; tail -n 5 "$TMP"/*/error.log "$TMP"/*/stderr.log "$TMP"/*/rampart.log 2>/dev/null >&2 || true; exit 1; }

STARTED_PIDS=()
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${STARTED_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [[ ${KEEP_TMP:-0} == 1 ]] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NGINX_MOD=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
CRS_RULES=/usr/share/modsecurity-crs/rules
if [[ ! -f $NGINX_MOD || ! -d $CRS_RULES ]] || ! command -v nginx >/dev/null; then
  [[ $NO_INSTALL == 1 ]] && die "nginx, libnginx-mod-http-modsecurity and modsecurity-crs are needed"
  log "installing nginx libnginx-mod-http-modsecurity modsecurity-crs"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx libnginx-mod-http-modsecurity modsecurity-crs >&2
fi

wait_port() { # port
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on 127.0.0.1:$1"
}

log "building rampart and the replay tool"
(cd "$ROOT" && go build -o "$TMP/rampart" ./cmd/rampart && go build -o "$TMP/replay" ./bench/waf/replay)

"$TMP/replay" -backend "$BACKEND" 2>"$TMP/backend.log" &
STARTED_PIDS+=($!)
wait_port 18201

start_nginx() { # paranoia level
  local pl=$1 d=$TMP/nginx-$1
  mkdir -p "$d"
  # ModSecurity's own base settings, as in modsecurity.conf-recommended
  # (body access, JSON and XML processors, unparsable bodies refused),
  # then CRS as the Debian package loads it (owasp-crs.load, whose
  # IncludeOptional libmodsecurity3 does not know).
  cat >"$d/modsec.conf" <<CONF
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
SecTmpDir $d
SecDataDir $d
SecAuditEngine Off
SecDebugLogLevel 0
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.paranoia_level=$pl"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'"
Include /etc/modsecurity/crs/crs-setup.conf
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include $CRS_RULES/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
CONF
  cat >"$d/nginx.conf" <<CONF
load_module $NGINX_MOD;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fcgi;
  uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    modsecurity on;
    modsecurity_rules_file $d/modsec.conf;
    location / { proxy_pass http://$BACKEND; }
  }
}
CONF
  nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>>"$d/stderr.log" &
  NGINX_PID=$!
  STARTED_PIDS+=($NGINX_PID)
  wait_port $NGINX_PORT
}

start_rampart() { # paranoia level
  local pl=$1 d=$TMP/rampart-$1
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
  "$TMP/rampart" serve -c "$d/rampart.yaml" -log-level warn 2>"$d/rampart.log" &
  RAMPART_PID=$!
  STARTED_PIDS+=($RAMPART_PID)
  wait_port $RAMPART_PORT
}

stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

for pl in $LEVELS; do
  log "paranoia level $pl: nginx + ModSecurity"
  start_nginx "$pl"
  (cd "$ROOT" && "$TMP/replay" -target "http://127.0.0.1:$NGINX_PORT") >"$TMP/modsec-$pl.json"
  stop "$NGINX_PID"
  log "paranoia level $pl: Rampart"
  start_rampart "$pl"
  (cd "$ROOT" && "$TMP/replay" -target "http://127.0.0.1:$RAMPART_PORT") >"$TMP/rampart-$pl.json"
  stop "$RAMPART_PID"
done

python3 - "$TMP" $LEVELS <<'PY'
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
