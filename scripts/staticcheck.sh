#!/usr/bin/env bash
# Runs staticcheck (https://staticcheck.dev) on the module and fails on any finding. The
# version is pinned, since each release adds checks: it is installed from the Go module
# proxy into GOBIN (or the first GOPATH's bin) when missing or of another version. Only Go
# is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.8.2

bin=$(go env GOBIN)
if [ -z "$bin" ]; then
	gopath=$(go env GOPATH)
	bin="${gopath%%:*}/bin"
fi
staticcheck="$bin/staticcheck"

if ! [ -x "$staticcheck" ] || ! "$staticcheck" -version 2>/dev/null | grep -qF "($version)"; then
	echo "installing staticcheck v$version into $bin"
	GOBIN="$bin" go install "honnef.co/go/tools/cmd/staticcheck@v$version"
fi

"$staticcheck" ./...
