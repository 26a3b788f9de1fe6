#!/usr/bin/env bash
# t/setup.sh -- prepare a Debian 12 machine to build, test and benchmark
# parallel_apply, then build and install the extension.
#
# Idempotent.  Run as root (package installation and "make install" need it).
# Works from any working directory; used by t/run.sh and by the benchmark.
#
#   bash t/setup.sh            # install missing packages, make, make install
#   PA_SKIP_PACKAGES=1 ...     # do not touch packages (nor fetch sources)
#   PA_SKIP_BUILD=1 ...        # only packages
#   PA_SKIP_PG_SUITE=1 ...     # do not fetch PostgreSQL's subscription tests
#
# It also fetches PostgreSQL's own logical-replication TAP tests
# (src/test/subscription of the postgresql-15 source package) into a cache
# outside the repository, $PA_PG_SRC_CACHE (default
# /var/cache/parallel_apply/postgresql-15-src), once: t/run.sh runs them with
# the engine (t/PgSuite.pm).  Debian's deb-src entries are added for that, in
# a file of their own, /etc/apt/sources.list.d/parallel_apply-src.sources
# (or .list).  A failed download does not fail the setup: t/run.sh then
# reports the suite as not run.
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
	dpkg-dev bzip2                      # apt-get source, the orig tarball
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

# ---------------------------------------------------------------- PG's tests
# deb-src entries for the same archives as the deb ones, in a file of ours
# (idempotent: written once, and not at all if deb-src is configured already).
enable_deb_src() {
	local dir=/etc/apt/sources.list.d
	local ours_sources="$dir/parallel_apply-src.sources" ours_list="$dir/parallel_apply-src.list"
	[ -e "$ours_sources" ] || [ -e "$ours_list" ] && return 0
	if grep -Eqs '^[[:space:]]*Types:.*deb-src' "$dir"/*.sources ||
		grep -Eqs '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list "$dir"/*.list; then
		return 0
	fi
	if [ -f "$dir/debian.sources" ]; then
		# deb822: the same stanzas with Types: deb-src
		awk '/^[[:space:]]*Types:/ { print "Types: deb-src"; next } { print }' \
			"$dir/debian.sources" >"$ours_sources.tmp"
		mv "$ours_sources.tmp" "$ours_sources"
		log "added deb-src entries: $ours_sources"
	elif [ -f /etc/apt/sources.list ]; then
		sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list >"$ours_list.tmp"
		mv "$ours_list.tmp" "$ours_list"
		log "added deb-src entries: $ours_list"
	else
		log "no Debian apt sources found to derive deb-src entries from"
		return 1
	fi
	# the new Sources indexes
	apt-get update -qq </dev/null
}

# src/test/subscription of postgresql-$PG_MAJOR's orig tarball into the cache.
# The installed server's version first, then every version apt knows the
# source of, newest first (the security archive may lack the source).
fetch_pg_tests() {
	local cache="$1" pkg="postgresql-${PG_MAJOR}"
	if [ -f "$cache/.complete" ]; then
		log "PostgreSQL subscription tests present: $cache ($(cat "$cache/.complete"))"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		log "cannot fetch PostgreSQL's tests into $cache: run this script as root"
		return 1
	fi
	enable_deb_src || return 1
	local installed versions v tmp orig="" attempt
	installed="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
	tmp="$(mktemp -d /tmp/parallel_apply_pgsrc.XXXXXX)"
	# apt downloads as _apt when it can write there
	id _apt >/dev/null 2>&1 && chown _apt "$tmp"
	# a second attempt after apt-get update, in case the indexes are stale
	for attempt in 1 2; do
		if [ "$attempt" = 2 ] || [ -z "$(apt-cache showsrc "$pkg" 2>/dev/null)" ]; then
			apt-get update -qq </dev/null
		fi
		versions="$( (echo "$installed"
			apt-cache showsrc "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sort -r -V) |
			awk 'NF && !seen[$0]++')"
		for v in $versions; do
			log "fetching the source of $pkg $v"
			if (cd "$tmp" && apt-get source -qq --download-only "$pkg=$v" </dev/null >/dev/null); then
				orig="$(ls "$tmp"/"${pkg}"_*.orig.tar.* 2>/dev/null | head -n 1)"
				[ -n "$orig" ] && break 2
			fi
			rm -f "$tmp"/*
			log "the source of $pkg $v is not available; trying the next version"
		done
	done
	if [ -z "$orig" ]; then
		log "could not download the source of $pkg (tried: $(echo $versions))"
		rm -rf "$tmp"
		return 1
	fi
	mkdir -p "$tmp/x"
	if ! tar -C "$tmp/x" -xf "$orig" --no-same-owner --no-same-permissions \
		--strip-components=1 --wildcards "*/src/test/subscription" ||
		[ ! -f "$tmp/x/src/test/subscription/t/001_rep_changes.pl" ]; then
		log "no src/test/subscription in $orig"
		rm -rf "$tmp"
		return 1
	fi
	echo "$pkg $v ($(basename "$orig"))" >"$tmp/x/.complete"
	chmod -R a+rX,go-w "$tmp/x"
	# only a directory we create gets our mode (the cache may live in /tmp)
	if [ ! -d "$(dirname "$cache")" ]; then
		mkdir -p "$(dirname "$cache")"
		chmod 755 "$(dirname "$cache")"
	fi
	rm -rf "$cache"
	mv "$tmp/x" "$cache"
	rm -rf "$tmp"
	log "PostgreSQL subscription tests in $cache ($(cat "$cache/.complete"))"
}

if [ "${PA_SKIP_PACKAGES:-0}" != 1 ] && [ "${PA_SKIP_PG_SUITE:-0}" != 1 ] &&
	command -v apt-get >/dev/null 2>&1; then
	fetch_pg_tests "${PA_PG_SRC_CACHE:-/var/cache/parallel_apply/postgresql-${PG_MAJOR}-src}" ||
		log "WARNING: PostgreSQL's subscription tests are not available; t/run.sh will report them as not run"
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
