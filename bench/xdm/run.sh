#!/bin/sh
# Packing and reading an IHE_XDM.ZIP holding a CDA N1 with a 10 MB PDF, against the sum of
# their unavoidable parts (goal: ratio ≤ 1.25):
#   pack: base64 of the PDF + SHA-1 and deflate of the CDA
#   read: inflate + SHA-1 of the CDA + base64 decoding of the PDF
# Both sides run alternately in the same benchmark loop (same machine load). Printed: medians
# over COUNT runs (default 7) of each side's wall and CPU time per operation and of the ratios.
# CPU time (process user+system, garbage collection included) is the steadier figure when
# other work shares the machine.
set -eu
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-7}
go test -run '^$' -bench '^BenchmarkN1(Pack|Read)$' -benchtime 3x -count "$COUNT" ./mssante/xdm/ |
awk -v count="$COUNT" '
/^BenchmarkN1/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkN1/, "", name)
	for (i = 4; i < NF; i++) v[name, $(i+1)] = v[name, $(i+1)] " " $i
}
function median(x,   a, n, i, j, t) {
	n = split(x, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	split("Pack Read", ops, " ")
	for (k = 1; k <= 2; k++) {
		o = ops[k]
		printf "%-5s wall: sdk %6.1f ms  baseline %6.1f ms  ratio %.2f | cpu: sdk %6.1f ms  baseline %6.1f ms  ratio %.2f  (medians of %d; limit 1.25)\n",
			tolower(o), median(v[o, "sdk-ms/op"]), median(v[o, "baseline-ms/op"]), median(v[o, "ratio"]),
			median(v[o, "sdk-cpu-ms/op"]), median(v[o, "baseline-cpu-ms/op"]), median(v[o, "cpu-ratio"]), count
	}
}'
