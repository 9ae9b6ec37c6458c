#!/usr/bin/env bash
# The one test command (make test): installs the real peers the tests drive, then checks
# formatting, vets, runs staticcheck (scripts/staticcheck.sh), and runs every test with the
# race detector. Peer tests do not skip here: MSSANTE_REQUIRE_PEERS=1 turns a missing peer
# into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

echo "== gofmt -l"
out=$(gofmt -l .)
if [ -n "$out" ]; then echo "gofmt would change:"; echo "$out"; exit 1; fi

echo "== go vet ./..."
go vet ./...

echo "== staticcheck ./..."
scripts/staticcheck.sh

echo "== go test -race ./..."
MSSANTE_REQUIRE_PEERS=1 go test -race -timeout 45m ./...
