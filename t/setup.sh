#!/usr/bin/env bash
# t/setup.sh -- prepare a Debian 12 machine to build, test and benchmark
# parallel_apply, then build and install the extension.
#
# Idempotent.  Run as root (package installation and "make install" need it).
# Works from any working directory; used by t/run.sh and by the benchmark.
#
#   bash t/setup.sh            # install missing packages, make, make install
#   PA_SKIP_PACKAGES=1 ...     # do not touch packages
#   PA_SKIP_BUILD=1 ...        # only packages
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup.sh: $*" >&2; }

PACKAGES=(
	"postgresql-${PG_MAJOR}"            # server, psql, pgbench
	"postgresql-server-dev-${PG_MAJOR}" # headers, PGXS, pg_regress, TAP modules
	liburcu-dev                         # wait-free queues used by the engine
	libipc-run-perl                     # needed by PostgreSQL::Test::Cluster
	build-essential                     # gcc, make
	gnuplot-nox                         # benchmark plots
)

is_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if [ "${PA_SKIP_PACKAGES:-0}" != 1 ]; then
	if ! command -v dpkg-query >/dev/null 2>&1; then
		log "dpkg-query not found; not a Debian system, skipping package checks"
	else
		missing=()
		for p in "${PACKAGES[@]}"; do
			is_installed "$p" || missing+=("$p")
		done
		if [ "${#missing[@]}" -gt 0 ]; then
			if [ "$(id -u)" -ne 0 ]; then
				log "missing packages: ${missing[*]}; run this script as root"
				exit 1
			fi
			log "installing: ${missing[*]}"
			apt-get update -qq </dev/null
			apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
		else
			log "all packages present"
		fi
	fi
fi

if [ "${PA_SKIP_BUILD:-0}" != 1 ]; then
	if [ ! -f "$REPO/Makefile" ]; then
		log "no Makefile in $REPO"
		exit 1
	fi
	jobs="$(nproc 2>/dev/null || echo 2)"
	log "building in $REPO"
	make -C "$REPO" -j"$jobs" PG_CONFIG="$PG_CONFIG" </dev/null
	log "installing"
	make -C "$REPO" install PG_CONFIG="$PG_CONFIG" </dev/null
	libdir="$("$PG_CONFIG" --pkglibdir)"
	sharedir="$("$PG_CONFIG" --sharedir)"
	if [ ! -f "$libdir/parallel_apply.so" ] || [ ! -f "$sharedir/extension/parallel_apply.control" ]; then
		log "parallel_apply.so or parallel_apply.control not found after make install"
		exit 1
	fi
	log "installed $libdir/parallel_apply.so"
fi
