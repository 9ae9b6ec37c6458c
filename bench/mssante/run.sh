#!/bin/bash
# Prints the cost of composing and reading an MSSanté message with a 5 MB attachment beside
# the floors named in issue #4, same run, as ratios of medians:
#   compose / base64-encoding the 5 MB (stdlib, one call, no line breaks)   target <= 1.25
#   read    / base64-decoding the attachment as it stands in the mail
#             (76-column CRLF lines, stdlib Decode)                          target <= 1.25
#   read    / base64-decoding the same bytes with no line breaks (stricter floor, shown too)
# The benchmarks alternate ROUNDS times so that load from other processes hits both sides alike.
# usage: bench/mssante/run.sh [ROUNDS]   (default 9)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-9}
BIN=$(mktemp -d)/mssante.test
trap 'rm -rf "$(dirname "$BIN")"' EXIT
go test -c -o "$BIN" ./mssante
run() { "$BIN" -test.run '^$' -test.bench "^$1\$" -test.benchtime 20x | awk -v n="$1" '$1 ~ n {print $3}'; }
declare -A T
for _ in $(seq "$ROUNDS"); do
  for b in BenchmarkBase64Encode5MB BenchmarkCompose5MB BenchmarkBase64Decode5MB BenchmarkRead5MB BenchmarkBase64DecodeUnwrapped5MB; do
    T[$b]+="$(run "$b") "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A MED
for b in "${!T[@]}"; do MED[$b]=$(echo "${T[$b]}" | median); done
ms() { awk -v v="$1" 'BEGIN {printf "%.2f ms", v/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "medians of $ROUNDS alternated runs (20 iterations each), 5 MB attachment"
printf '%-44s %12s\n' "compose (ours)" "$(ms "${MED[BenchmarkCompose5MB]}")"
printf '%-44s %12s\n' "base64 encode 5 MB (floor)" "$(ms "${MED[BenchmarkBase64Encode5MB]}")"
printf '%-44s %12s\n' "read (ours)" "$(ms "${MED[BenchmarkRead5MB]}")"
printf '%-44s %12s\n' "base64 decode, MIME lines (floor)" "$(ms "${MED[BenchmarkBase64Decode5MB]}")"
printf '%-44s %12s\n' "base64 decode, no line breaks (stricter)" "$(ms "${MED[BenchmarkBase64DecodeUnwrapped5MB]}")"
echo "ratio compose/encode:            $(ratio "${MED[BenchmarkCompose5MB]}" "${MED[BenchmarkBase64Encode5MB]}")  (target <= 1.25)"
echo "ratio read/decode (MIME lines):  $(ratio "${MED[BenchmarkRead5MB]}" "${MED[BenchmarkBase64Decode5MB]}")  (target <= 1.25)"
echo "ratio read/decode (no breaks):   $(ratio "${MED[BenchmarkRead5MB]}" "${MED[BenchmarkBase64DecodeUnwrapped5MB]}")"
