#!/usr/bin/env bash
# Mutual-TLS handshake cost: our verification (transport.ServerConfig + transport.Dialer: trust
# store chain check, EKU, dates, CRL lookup on both sides) against plain crypto/tls verification
# (RequireAndVerifyClientCert + RootCAs), same certificates (test PKI, RSA-2048), TLS 1.2, same
# cipher suites, full handshakes over loopback. Rounds alternate the two so that load from other
# processes hits both alike; prints the medians and the ratios ours/plain (goal <= 1.10) of wall
# time and of CPU time (both ends run in the benchmark process; CPU time is the steadier figure
# on a loaded machine).
#
# Usage: bench/tls/run.sh [ROUNDS] [HANDSHAKES_PER_ROUND]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-15}
per=${2:-200}
bin=$(mktemp -d)/transport.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./transport
cd transport
for ((i = 0; i < rounds; i++)); do
	for which in ours plain; do
		"$bin" -test.run '^$' -test.bench "^BenchmarkMutualTLSHandshake\$/^$which\$" -test.benchtime "${per}x" |
			awk -v w="$which" '/^BenchmarkMutualTLSHandshake/ {print w, $3, $5}'
	done
done | awk '
	{ v[$1] = v[$1] " " $2; c[$1] = c[$1] " " $3 }
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		o = median(v["ours"]); p = median(v["plain"])
		oc = median(c["ours"]); pc = median(c["plain"])
		printf "mutual-TLS 1.2 handshake, medians of %d rounds    wall ns/op    CPU ns/op\n", split(v["ours"], x, " ")
		printf "  ours  (transport verification)          %12.0f %12.0f\n", o, oc
		printf "  plain (crypto/tls verification)         %12.0f %12.0f\n", p, pc
		printf "  ratio ours/plain                        %12.3f %12.3f   (goal <= 1.10)\n", o / p, oc / pc
	}'
