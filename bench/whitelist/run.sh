#!/usr/bin/env bash
# Verifying the real liste blanche (3.7 MB, 6,494 entries): ours (`mssante whitelist verify`:
# streaming parse, exc-c14n digest, RSA-SHA256 signature, pinned signer, index built) against
# `xmlsec1 --verify --insecure` (digest and signature, no certificate check), as whole processes
# on the same file. Rounds alternate the two so that load from other processes hits both alike;
# prints the medians of wall time, CPU time (user+sys) and peak RSS, and the ratios ours/xmlsec1
# (goal <= 1.0 for time and memory).
#
# Usage: bench/whitelist/run.sh [ROUNDS] [FILE]   (FILE: the real list, default
# $MSSANTE_DATA_DIR or ../shared/data beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-15}
file=${2:-${MSSANTE_DATA_DIR:-../shared/data}/listeblanchemssante-2025-02-28.xml}
[ -f "$file" ] || { echo "bench/whitelist: $file not found" >&2; exit 1; }
command -v xmlsec1 >/dev/null || { echo "bench/whitelist: xmlsec1 missing: scripts/install-peers.sh" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/whitelist: GNU time missing: apt-get install time" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/mssante" ./cmd/mssante

measure() { # which, command... -> "which wall_ms cpu_ms rss_kib"
	local which=$1; shift
	local t0 t1
	t0=$(date +%s%N)
	/usr/bin/time -f '%U %S %M' -o "$tmp/time" "$@" >"$tmp/out" 2>&1 || { echo "bench/whitelist: $which failed:" >&2; cat "$tmp/out" >&2; exit 1; }
	t1=$(date +%s%N)
	read -r u s m <"$tmp/time"
	echo "$which $(((t1 - t0) / 1000000)) $(awk -v u="$u" -v s="$s" 'BEGIN{printf "%d", (u+s)*1000}') $m"
}

"$tmp/mssante" whitelist verify --at 2025-03-01 "$file"
xmlsec1 --verify --insecure "$file" 2>&1 | sed -n 1p
for ((i = 0; i < rounds; i++)); do
	measure ours "$tmp/mssante" whitelist verify --at 2025-03-01 "$file"
	measure xmlsec1 xmlsec1 --verify --insecure "$file"
done | awk '
	{ w[$1] = w[$1] " " $2; c[$1] = c[$1] " " $3; m[$1] = m[$1] " " $4 }
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		ow = median(w["ours"]); xw = median(w["xmlsec1"])
		oc = median(c["ours"]); xc = median(c["xmlsec1"])
		om = median(m["ours"]); xm = median(m["xmlsec1"])
		printf "verify the real liste blanche, medians of %d rounds   wall ms   CPU ms   peak RSS MiB\n", split(w["ours"], x, " ")
		printf "  ours    (mssante whitelist verify)            %7.0f  %7.0f   %8.1f\n", ow, oc, om / 1024
		printf "  xmlsec1 (xmlsec1 --verify --insecure)         %7.0f  %7.0f   %8.1f\n", xw, xc, xm / 1024
		printf "  ratio ours/xmlsec1                            %7.2f  %7.2f   %8.2f   (goal <= 1.0)\n", ow / xw, (xc ? oc / xc : 0), om / xm
	}'
echo "Lookup (go test -bench):"
go test -run '^$' -bench '^BenchmarkLookup' -benchtime 1s ./whitelist | grep '^Benchmark'
