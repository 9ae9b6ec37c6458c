#!/bin/sh
# bench/bal/run.sh: the BAL client against Postfix's smtp-source, same run, same server.
#
# 1,000 messages of 100 KB over one connection to a throw-away Postfix (implicit TLS with the
# BAL's client certificate; messages discarded after queueing), sent by bal.Client.SendRaw and
# by smtp-source -d (through stunnel: smtp-source has no TLS), then by SendRaw from 2
# goroutines sharing the connection and the journal fsyncs. Three rounds, alternated;
# prints the medians, the ratio and the CPU time per message of each side. Needs root (Postfix), postfix, smtp-source, stunnel4
# (scripts/install-peers.sh). Override with BAL_BENCH_N, BAL_BENCH_SIZE, BAL_BENCH_ROUNDS.
set -eu
cd "$(dirname "$0")/../.."
BAL_BENCH=1 go test -count=1 -run '^TestBenchAgainstSmtpSource$' -v -timeout 20m ./bal | grep '^bench'
