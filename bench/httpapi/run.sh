#!/bin/sh
# bench/httpapi/run.sh: messages/s sent through the HTTP API (transport/httpapi, POST
# message/rfc822 over mutual TLS) against bal.Client.SendRaw directly, same run, same sandbox
# submission server, rounds alternated (in turn bal first and API first); the ratio of the
# medians and the median of the rounds' ratios (goal >= 0.9x). Then the webhook delivery
# latency from the event to a receiver on loopback, p50 and p99, and the rate of Publish
# (each event fsynced in the journal) from one goroutine and from eight.
# HTTPAPI_BENCH_NOHOOKS=1 leaves the webhooks out, HTTPAPI_BENCH_NOKEY=1 the Idempotency-Key.
# Override with HTTPAPI_BENCH_N (50), HTTPAPI_BENCH_SIZE (20480), HTTPAPI_BENCH_ROUNDS (10),
# WEBHOOK_BENCH_N (500).
set -eu
cd "$(dirname "$0")/../.."
HTTPAPI_BENCH=1 go test -count=1 -run '^TestBenchHTTPAPIvsBAL$' -v -timeout 20m ./transport/httpapi | grep '^bench'
HTTPAPI_BENCH=1 go test -count=1 -run '^TestBenchWebhookLatency$' -v -timeout 5m ./transport/webhook | grep '^bench'
