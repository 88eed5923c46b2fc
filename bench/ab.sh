#!/usr/bin/env bash
# ab.sh: same-run comparison of two Rampart binaries in bench/run.sh's
# setup (one core for the proxy, GOMAXPROCS=1; wrk -t1 -c64 and two
# bench/backend processes on the other core; all on 127.0.0.1), for
# before/after measurements of a change on a machine whose speed drifts
# between runs. Rounds alternate the order of the two.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY          # ROUNDS=6 DURATION=6
#   RATE=15000 bench/ab.sh OLD NEW             # open loop (bench/openload) at
#                                              # 15,000 req/s instead of wrk
#   SCRIPT=post.lua bench/ab.sh OLD NEW        # wrk runs the script (a POST)
#
# For each run it prints req/s, p99, CPU-s and user CPU-s per 100k
# requests (utime+stime and utime from /proc/PID/stat) and p50, then the
# means.
set -euo pipefail
[ $# = 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-6} DURATION=${DURATION:-6}
HZ=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
(cd "$ROOT" && go build -o "$work/backend" ./bench/backend)
load=(wrk -t1 -c64 -d"${DURATION}s" --latency)
[ -n "${SCRIPT:-}" ] && load+=(-s "$SCRIPT") # a wrk script: POSTs, say
if [ -n "${RATE:-}" ]; then
	(cd "$ROOT" && go build -o "$work/openload" ./bench/openload)
	load=("$work/openload" -rate "$RATE" -c 64 -d "${DURATION}s")
fi
taskset -c 1 "$work/backend" -listen 127.0.0.1:18281 -name b1 2>/dev/null & pids+=($!)
taskset -c 1 "$work/backend" -listen 127.0.0.1:18282 -name b2 2>/dev/null & pids+=($!)
declare -A BIN=([old]=$1 [new]=$2) PORT=([old]=18290 [new]=18291) PID
for v in old new; do
	cat >"$work/$v.yaml" <<YAML
data_dir: $work/data-$v
admin: {listen: 127.0.0.1:$((PORT[$v] + 100))}
listeners: [{name: bench, listen: 127.0.0.1:${PORT[$v]}, protocol: http}]
routes: [{name: all, match: {path_prefix: /}, pool: bench}]
pools:
  - {name: bench, algorithm: round_robin, backends: [{id: b1, address: 127.0.0.1:18281}, {id: b2, address: 127.0.0.1:18282}]}
security:
  slowloris_protection: {max_new_connections_per_ip_per_second: 0}
YAML
	GOMAXPROCS=1 taskset -c 0 "${BIN[$v]}" serve -c "$work/$v.yaml" >/dev/null 2>&1 & PID[$v]=$!; pids+=($!)
done
sleep 2
for v in old new; do taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:${PORT[$v]}/" >/dev/null; done
stat() { awk -v f="$2" '{print (f == "u") ? $14 : $14 + $15}' "/proc/$1/stat"; }
for r in $(seq 1 "$ROUNDS"); do
	order="old new"; [ $((r % 2)) = 0 ] && order="new old"
	for v in $order; do
		t0=$(stat "${PID[$v]}" t); u0=$(stat "${PID[$v]}" u)
		out=$(taskset -c 1 "${load[@]}" "http://127.0.0.1:${PORT[$v]}/")
		t1=$(stat "${PID[$v]}" t); u1=$(stat "${PID[$v]}" u)
		n=$(awk '/requests in/ {print $1}' <<<"$out")
		awk -v r="$r" -v v="$v" -v n="$n" -v t=$((t1 - t0)) -v u=$((u1 - u0)) -v hz="$HZ" \
			-v rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v p99="$(awk '$1 == "99%" {print $2}' <<<"$out")" \
			-v p50="$(awk '$1 == "50%" {print $2}' <<<"$out")" \
			'BEGIN {printf "round %d %s req/s %s p99 %s cpu-s/100k %.3f user-s/100k %.3f p50 %s\n", r, v, rps, p99, t/hz/n*1e5, u/hz/n*1e5, p50}'
	done
done | tee "$work/runs.txt"
awk 'function ms(x) { return x ~ /us$/ ? x / 1000 : x ~ /ms$/ ? x + 0 : x * 1000 }
	{rps[$3] += $5; p99[$3] += ms($7); c[$3] += $9; u[$3] += $11; p50[$3] += ms($13); k[$3]++}
	END {for (v in c) printf "mean %s: %.0f req/s, %.3f CPU-s/100k, %.3f user CPU-s/100k, p50 %.3f ms, p99 %.3f ms\n", v, rps[v]/k[v], c[v]/k[v], u[v]/k[v], p50[v]/k[v], p99[v]/k[v]}' "$work/runs.txt" | sort
