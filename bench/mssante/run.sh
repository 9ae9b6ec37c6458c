#!/bin/bash
# Prints the cost of composing and reading an MSSanté message with a 5 MB attachment beside
# their floors, same run, as ratios of medians:
#   compose / base64-encoding the 5 MB (stdlib, one call, no line breaks)   target <= 1.25
#   [compose / our own line encoder (writeBase64, encodeQuanta) alone: context, not a target.
#             Compose encodes full lines with its own 8 KB table, about 1.5x as fast as the
#             stdlib, so compose can cost less than the stdlib floor; this shows the rest]
#   read    / base64-decoding the attachment as it stands in the mail
#             (76-column CRLF lines, stdlib Decode)                          target <= 1.25
#   read    / base64-decoding the same bytes with no line breaks (stricter floor, shown too)
#   [read   / base64-decoding the MIME lines into a new slice: context, not a target; a parser
#             must return fresh memory, the floors above reuse theirs]
#   [read from a reader that hides its length (socket, pipe) / decode: context; "read (ours)"
#             reads a bytes.Reader, whose bytes are decoded in place (no copy into a buffer)
#             straight into a slice of the right size]
#   [read / our own line decoder (decodeQuanta, as ReadMessage runs it) on the MIME lines into
#             a preallocated buffer: context, not a target. ReadMessage decodes whole quanta
#             with its own tables, about twice as fast as encoding/base64, so read can cost less
#             than the stdlib floor; this ratio shows what the parser, the fresh result slice
#             and the page faults add on top of our decoding]
# Both process CPU time per operation (cpu-ns/op, the main figure: on a shared machine wall
# time mostly measures the wait for a core) and wall time are shown. The benchmarks alternate
# ROUNDS times so that load from other processes hits both sides alike.
# usage: bench/mssante/run.sh [ROUNDS]   (default 9)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-9}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
go test -c -o "$DIR/mssante.test" ./mssante
BENCHES="BenchmarkBase64Encode5MB BenchmarkCompose5MB BenchmarkBase64Decode5MB BenchmarkRead5MB BenchmarkBase64DecodeUnwrapped5MB BenchmarkBase64DecodeAlloc5MB BenchmarkRead5MBStream BenchmarkLineDecode5MB BenchmarkLineEncode5MB"
for _ in $(seq "$ROUNDS"); do
  for b in $BENCHES; do
    "$DIR/mssante.test" -test.run '^$' -test.bench "^$b\$" -test.benchtime 20x |
      awk -v n="$b" '$1 ~ n {print $3 > "'"$DIR"'/" n ".wall"; print $7 > "'"$DIR"'/" n ".cpu"}'
    cat "$DIR/$b.wall" >>"$DIR/$b.wall.all"; cat "$DIR/$b.cpu" >>"$DIR/$b.cpu.all"
  done
done
med() { sort -n "$DIR/$1.all" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v v="$1" 'BEGIN {printf "%8.2f ms", v/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "5 MB attachment; medians of $ROUNDS alternated runs of 20 iterations; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-42s %12s %12s\n' "" "CPU" "wall"
for b in BenchmarkCompose5MB BenchmarkBase64Encode5MB BenchmarkRead5MB BenchmarkBase64Decode5MB BenchmarkBase64DecodeUnwrapped5MB BenchmarkBase64DecodeAlloc5MB BenchmarkRead5MBStream BenchmarkLineDecode5MB BenchmarkLineEncode5MB; do
  case $b in
    BenchmarkCompose5MB) l="compose (ours)";; BenchmarkBase64Encode5MB) l="base64 encode (floor)";;
    BenchmarkRead5MB) l="read (ours)";; BenchmarkBase64Decode5MB) l="base64 decode, MIME lines (floor)";;
    BenchmarkBase64DecodeUnwrapped5MB) l="base64 decode, no line breaks (stricter)";;
    BenchmarkRead5MBStream) l="read, length unknown (context)";;
    BenchmarkLineDecode5MB) l="our line decoder, MIME lines (context)";;
    BenchmarkLineEncode5MB) l="our line encoder, MIME lines (context)";;
    *) l="base64 decode into a new slice (context)";;
  esac
  printf '%-42s %12s %12s\n' "$l" "$(ms "$(med $b.cpu)")" "$(ms "$(med $b.wall)")"
done
for k in cpu wall; do
  echo "$k: compose/encode $(ratio "$(med BenchmarkCompose5MB.$k)" "$(med BenchmarkBase64Encode5MB.$k)")" \
    " [compose/our-line-encoder $(ratio "$(med BenchmarkCompose5MB.$k)" "$(med BenchmarkLineEncode5MB.$k)")]" \
    " read/decode(MIME lines) $(ratio "$(med BenchmarkRead5MB.$k)" "$(med BenchmarkBase64Decode5MB.$k)")" \
    " read/decode(no breaks) $(ratio "$(med BenchmarkRead5MB.$k)" "$(med BenchmarkBase64DecodeUnwrapped5MB.$k)")" \
    " [read/decode-alloc $(ratio "$(med BenchmarkRead5MB.$k)" "$(med BenchmarkBase64DecodeAlloc5MB.$k)")]" \
    " [read-length-unknown/decode $(ratio "$(med BenchmarkRead5MBStream.$k)" "$(med BenchmarkBase64Decode5MB.$k)")]" \
    " [read/our-line-decoder $(ratio "$(med BenchmarkRead5MB.$k)" "$(med BenchmarkLineDecode5MB.$k)")]   (targets <= 1.25)"
done
