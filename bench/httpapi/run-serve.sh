#!/bin/sh
# bench/httpapi/run-serve.sh: messages/s sent through the HTTP API of a node (what "mssante
# serve" runs with [api]: httpapi.NodeAPI, POST message/rfc822 over mutual TLS, then the
# submission session in process) against bal.Client.SendRaw to the same node's submission
# listener, same run, rounds alternated; the ratio of the medians (goal >= 0.9x).
# Override with NODEAPI_BENCH_N (100), NODEAPI_BENCH_SIZE (20480), NODEAPI_BENCH_ROUNDS (5).
set -eu
cd "$(dirname "$0")/../.."
NODEAPI_BENCH=1 go test -count=1 -run '^TestBenchNodeAPIvsBAL$' -v -timeout 20m ./transport/node | grep '^bench'
