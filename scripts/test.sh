#!/usr/bin/env bash
# Runs every Rampart test. This is the README's test command and the only
# thing CI runs (.ci/run). Debian packages the tests need are installed here
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# --- redis: distributed rate limits (internal/ratelimit, internal/server) ---
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
# --- end redis ---
# --- pebble: ACME CA for certificate tests (internal/tlsterm, internal/acmetest) ---
command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 || need_pkgs+=(pebble)
# --- end pebble ---
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_pkgs[@]}"; fi
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bench/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 15m ./...
# The HTTP/1 engine's suite again on its other engine (the goroutine per
# connection that https listeners and `engine: goroutines` use; the run
# above is on event loops, the default for http listeners).
RAMPART_TEST_ENGINE=goroutines go test -race -count=1 -timeout 5m ./internal/server/http1/
# Allocation counts, which the race detector's sync.Pool makes meaningless.
go test -count=1 -run 'AllocatesNothing' ./internal/server/
