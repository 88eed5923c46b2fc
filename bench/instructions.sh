#!/usr/bin/env bash
# instructions.sh: user-space instructions per proxied request, counted by
# valgrind's callgrind on BenchmarkProxyRaw (internal/server/bench_test.go):
# a raw client, Rampart's listener and a raw backend in one process, all on
# loopback. Instruction counts do not depend on the machine's other load,
# so they compare two versions of the code on a shared machine, where
# timings do not. Kernel time (the socket calls) is not counted.
#
#   bench/instructions.sh            # one line: instructions per request
#   N1=4000 N2=24000 REPEAT=2 BENCH=ProxyRaw bench/instructions.sh
#
# Per request = (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels the start-up
# and set-up work. Needs valgrind (apt-get install valgrind). The binary is
# built without cgo, and the runtime told not to use RDTSCP or asynchronous
# preemption signals, which callgrind 3.19 cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${N1:-4000} n2=${N2:-24000} repeat=${REPEAT:-1} bench=${BENCH:-ProxyRaw} pkg=${PKG:-./internal/server/}
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 go test -c -o "$out/bench.test" "$pkg"
count() {
	GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
		"$out/bench.test" -test.run '^$' -test.bench "^Benchmark${bench}\$" -test.benchtime "${1}x" 2>&1 |
		awk '/Collected/ { gsub(",", "", $4); print $4 }'
}
for ((i = 0; i < repeat; i++)); do
	a=$(count "$n1")
	b=$(count "$n2")
	echo "Benchmark${bench}: $(( (b - a) / (n2 - n1) )) instructions/request (Ir($n1)=$a, Ir($n2)=$b)"
done
