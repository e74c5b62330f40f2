#!/usr/bin/env bash
# soak.sh runs the no-loss suite in soak mode (FWDMUX_SOAK=1: ten times the events,
# longer faults) round after round until SOAK_MINUTES (default 10) have passed, then
# prints per-case totals over all rounds. It fails as soon as a round fails.
set -euo pipefail
GO=${GO:-go}
minutes=${SOAK_MINUTES:-10}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
end=$(( $(date +%s) + minutes * 60 ))
round=0
while :; do
	round=$((round + 1))
	echo "== soak round $round"
	FWDMUX_SOAK=1 "$GO" test -count=1 -timeout 60m -v -run . ./internal/e2e \
		| grep -E 'RESULT|^(--- |ok|FAIL|PASS)' | tee -a "$log"
	[ "$(date +%s)" -lt "$end" ] || break
done
echo "== totals over $round rounds"
awk '/RESULT case=/ {
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	c = v["case"]
	if (!(c in sent)) order[++n] = c
	sent[c] += v["sent"]; recv[c] += v["received"]; lost[c] += v["lost"]; dup[c] += v["dup"]
	if (v["peak_rss_kb"] > peak[c]) peak[c] = v["peak_rss_kb"]
	runs[c]++
}
END {
	printf "%-36s %5s %12s %12s %6s %8s %13s\n", "case", "runs", "sent", "received", "lost", "dup", "peak_rss_MB"
	for (i = 1; i <= n; i++) { c = order[i]
		printf "%-36s %5d %12d %12d %6d %8d %13.1f\n", c, runs[c], sent[c], recv[c], lost[c], dup[c], peak[c] / 1024
		tl += lost[c]
	}
	printf "lost in all: %d\n", tl
	exit tl > 0
}' "$log"
