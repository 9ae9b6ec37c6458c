#!/usr/bin/env bash
# Added cost of revocation checking per inbound mutual-TLS session, warm cache: full TLS 1.2
# handshakes over loopback where our server verifies the client certificate (transport
# ServerConfig) with no revocation check ("none": best effort, no CRL held), with a CRL of
# 5,000 entries held ("crl"), and with OCSP asked first and its answer cached ("ocsp",
# transport/revocation.OCSP). Rounds alternate the three so that load from other processes hits
# them alike; prints the medians and the ratios to "none" (goal <= 1.05) of wall and CPU time.
#
# Usage: bench/tls/revocation.sh [ROUNDS] [HANDSHAKES_PER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-11}
per=${2:-200}
bin=$(mktemp -d)/revocation.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./transport/revocation
cd transport/revocation
for ((i = 0; i < rounds; i++)); do
	"$bin" -test.run '^$' -test.bench '^BenchmarkInboundRevocation$' -test.benchtime "${per}x" |
		awk '/^BenchmarkInboundRevocation\// {split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); print n[2], $3, $5}'
done | awk '
	{ v[$1] = v[$1] " " $2; c[$1] = c[$1] " " $3 }
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		n0 = median(v["none"]); nc = median(c["none"])
		printf "inbound mutual-TLS 1.2 handshake, medians of %d rounds   wall ns/op    CPU ns/op   ratio wall  ratio CPU\n", split(v["none"], x, " ")
		split("none crl ocsp", ks, " ")
		for (i = 1; i <= 3; i++) {
			k = ks[i]; w = median(v[k]); cc = median(c[k])
			printf "  %-5s                                        %12.0f %12.0f %10.3f %10.3f\n", k, w, cc, w / n0, cc / nc
		}
		printf "  (goal: crl and ocsp <= 1.05 x none)\n"
	}'
