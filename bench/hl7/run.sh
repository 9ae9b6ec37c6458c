#!/bin/sh
# bench/hl7/run.sh: the HL7v2 bridge against bal alone, same run, same trust space.
#
# An MDM^T02 carrying an N1 CDA with a 1 MB PDF goes in over MLLP; its ACK comes out once the
# mail is durably queued by the submission server of a local trust space (internal/sandbox).
# The same document sent by bal.Client.Send directly is the floor. Rounds alternate; prints
# msg/s (median of the rounds), p99 latency and the ratio bridge/bal (goal >= 0.8).
# Override with HL7_BENCH_N (messages a round, default 10), HL7_BENCH_ROUNDS (3),
# HL7_BENCH_SIZE (PDF bytes, 1048576).
set -eu
cd "$(dirname "$0")/../.."
HL7_BENCH=1 go test -count=1 -run '^TestHL7BenchAgainstBAL$' -v -timeout 20m ./bal/hl7bridge | grep '^bench'
