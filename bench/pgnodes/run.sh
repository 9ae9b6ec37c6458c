#!/usr/bin/env bash
# Two connector nodes against one on the same PostgreSQL: messages accepted per second through
# SMTP submission (SASL EXTERNAL over STARTTLS, each 250 after the queue's commit), one node
# then two nodes sharing the load, same run, alternated rounds, ratio of the medians. Both
# nodes and the database (a throw-away PostgreSQL 15 cluster, fsync and synchronous_commit
# on) run on this machine: on few cores the second node shares the first one's CPU, so the
# ratio shows what a second node costs rather than what it adds (docs/scaling.md).
#
# usage: bench/pgnodes/run.sh [N=1000] [C=8] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
export MSSANTE_BENCH_N=${1:-1000} MSSANTE_BENCH_C=${2:-8} MSSANTE_BENCH_ROUNDS=${3:-3}
go test ./transport/node -run '^$' -bench '^BenchmarkPostgresOneNodeVsTwo$' -benchtime=1x -count=1 |
	grep -E '^(round|accepted|one node)'
