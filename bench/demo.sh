#!/usr/bin/env bash
#
# demo.sh -- the one-command demonstration: install what is missing, build and
# install parallel_apply, then measure how fast a subscriber catches up on a
# pgbench backlog with PostgreSQL's built-in apply worker and with
# parallel_apply, side by side.
#
#   sudo bash bench/demo.sh                      # a few minutes on 2 cores
#   sudo bash bench/demo.sh --workers "1 2 4 a4" # any pa_bench.sh option overrides
#
# Run as root (packages, make install; the clusters themselves run as the
# user "postgres").  Throw-away clusters on 127.0.0.1 ports 54321/54322.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -f "$REPO/t/setup.sh" ]; then
	echo "demo.sh: $REPO/t/setup.sh not found" >&2
	exit 1
fi

echo "==> bash t/setup.sh  (packages, make, make install)"
bash "$REPO/t/setup.sh"

echo
echo "==> bench/pa_bench.sh: built-in apply vs parallel_apply with its defaults"
echo "    (4 workers, adaptive worker use), on a backlog of 200,000 pgbench transactions"
# A backlog large enough that parallel_apply's start-up (about 0.2 s) is a few
# percent of the built-in worker's time; the headline printed last compares
# the times until the backlog is applied on the subscriber ("applied s").
# Later arguments (the user's) override earlier ones.
exec bash "$REPO/bench/pa_bench.sh" \
	--scale 10 --clients 8 --txns 200000 --workers "a4" --script tpcb-like \
	--sync-commit off --out "${PA_BENCH_OUT:-${TMPDIR:-/tmp}/pa_bench-demo}" \
	"$@"
