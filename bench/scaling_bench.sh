#!/usr/bin/env bash
#
# scaling_bench.sh -- how one subscription's catch-up scales with workers:
# the same pgbench backlog applied by PostgreSQL's built-in worker and by
# parallel_apply with 1, 2, 4, 8 and 16 workers (every worker used:
# parallel_apply.adaptive = off) and with adaptive worker use (at most 16),
# for each script of --scripts; bench/pa_bench.sh does each script's runs
# (fresh clusters per mode, engines alternating over --repeat, tables
# compared) and draws its rate_vs_workers.png.  The machine (CPUs, model,
# memory, PostgreSQL) is recorded with the results.
#
# Written to run unchanged on a machine with many cores and no network: it
# needs only what t/setup.sh installs (gnuplot is optional: without it
# there is no plot).  On this project's 2-CPU machine use --workers to keep
# it short, e.g. --workers "1 2 4 a4".
#
#   bash bench/scaling_bench.sh                              # defaults below
#   bash bench/scaling_bench.sh --scripts tpcb-like --repeat 3 --txns 400000
#   bash bench/scaling_bench.sh --workers "1 2 4 a4" --out /tmp/scaling
#
# Options: --scripts "LIST" (default "tpcb-like simple-update"), --workers
# "LIST" (default "1 2 4 8 16 a16": N = N workers all used, aN = adaptive
# with at most N), --repeat N (default 2), --txns N (default 200000),
# --out DIR (default $TMPDIR/scaling_bench-<date>); any other option is
# passed on to pa_bench.sh.  Exit status: pa_bench.sh's worst.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPTS="tpcb-like simple-update"
WORKERS="1 2 4 8 16 a16"
REPEAT=2
TXNS=200000
OUT="${TMPDIR:-/tmp}/scaling_bench-$(date +%Y%m%d-%H%M%S)"
PASS=()
while [ $# -gt 0 ]; do
	case "$1" in
		--scripts) SCRIPTS="$2"; shift 2 ;;
		--workers) WORKERS="$2"; shift 2 ;;
		--repeat) REPEAT="$2"; shift 2 ;;
		--txns) TXNS="$2"; shift 2 ;;
		--out) OUT="$2"; shift 2 ;;
		-h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
		*) PASS+=("$1"); shift ;;
	esac
done

mkdir -p "$OUT"
{
	echo "scaling benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%d GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(pg_config --version 2>/dev/null || echo 'PostgreSQL ?')"
	echo "modes: built-in, parallel_apply $WORKERS; $TXNS transactions, $REPEAT repetitions"
} | tee "$OUT/machine.txt"

rc=0
for s in $SCRIPTS; do
	echo
	echo "==> $s"
	bash "$HERE/pa_bench.sh" --script "$s" --workers "$WORKERS" --repeat "$REPEAT" \
		--txns "$TXNS" --out "$OUT/$s" ${PASS[@]+"${PASS[@]}"} || {
		r=$?
		[ "$r" -gt "$rc" ] && rc=$r
	}
done

echo
echo "results: $OUT/machine.txt and, per script, $OUT/<script>/results.txt (table and headline)"
echo "and $OUT/<script>/rate_vs_workers.png (rate against workers, built-in as a line)"
exit "$rc"
