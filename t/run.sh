#!/usr/bin/env bash
# t/run.sh -- build, install and test parallel_apply.
#
#   bash t/run.sh                 # everything: setup, pg_regress, all TAP tests
#
# Runs t/setup.sh (as root: installs missing packages, make, make install),
# copies the repository to a scratch directory owned by the unprivileged
# user "postgres" (initdb refuses to run as root), and as that user runs
#   (a) the pg_regress tests listed in REGRESS of the Makefile (sql/*.sql vs
#       expected/*.out) in a temporary instance with sql/regress.conf, and
#   (b) every TAP test t/*.pl with prove, and
#   (c) PostgreSQL 15's own logical-replication TAP tests
#       (src/test/subscription/t/*.pl, fetched by t/setup.sh into a cache
#       outside the repository), unmodified, with every subscription they
#       create handed to the engine once synchronized (t/PgSuite.pm, loaded
#       with PERL5OPT=-MPgSuite); each file is reported as pg_NNN_name.
# Prints a summary; exits non-zero if anything failed, after printing the
# tail of the relevant logs.  Works non-interactively (CI=true, no stdin).
#
# Environment knobs:
#   PA_TESTS="001 004"      run only TAP tests whose file name contains one of these;
#                           for PostgreSQL's tests a word starting with pg_:
#                           pg_suite (all of them), pg_013 or pg_013_partition
#   PA_SKIP_SETUP=1         do not run t/setup.sh (extension already installed)
#   PA_SKIP_REGRESS=1       skip pg_regress;  PA_SKIP_TAP=1  skip TAP tests (both kinds)
#   PA_SKIP_PG_SUITE=1      skip PostgreSQL's subscription tests
#   PA_PG_SRC_CACHE         where t/setup.sh put them
#                           (default /var/cache/parallel_apply/postgresql-15-src)
#   PA_NO_ENGINE=1          run the TAP tests against the built-in apply worker
#                           only (validates the tests; implies no regress)
#   PA_KEEP=1               keep the scratch directory even on success
#   PG_TEST_TIMEOUT_DEFAULT per-wait timeout in seconds inside tests (default 120)
#   PA_FILE_TIMEOUT         wall-clock limit per TAP file in seconds (default 480)
#   PA_PG_FILE_TIMEOUT      the same for PostgreSQL's test files (default 300)
#   PA_PG_TEST_TIMEOUT      PG_TEST_TIMEOUT_DEFAULT for PostgreSQL's test files
#                           (default 90)
#   PA_PG_JOBS              PostgreSQL's test files run at a time (default 2)
#   PA_TOTAL_BUDGET         wall-clock budget for the whole run in seconds
#                           (default 1080); TAP files that would start after it
#                           is used up are reported as not run (failure)
#   PA_PROVE_VERBOSE=1      prove -v
#   PA_RANDOM_SEEDS="1,2"   seeds of t/101_random.pl; PA_SEED="s" or "s1,s2,s3"
#                           seeds of t/029_ri_full_random.pl (random otherwise)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR="${PG_MAJOR:-15}"
PGBIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_CONFIG:-$PGBIN/pg_config}"
START_TIME=$(date +%s)

say() { printf '%s\n' "run.sh: $*"; }
hr() { printf '%s\n' "----------------------------------------------------------------------"; }

exec </dev/null

# ---------------------------------------------------------------- setup
if [ "${PA_SKIP_SETUP:-0}" != 1 ]; then
	say "running t/setup.sh"
	if [ "${PA_NO_ENGINE:-0}" = 1 ]; then
		PA_SKIP_BUILD=1 bash "$REPO/t/setup.sh" || { say "setup failed"; exit 1; }
	elif ! bash "$REPO/t/setup.sh"; then
		say "FAILED: t/setup.sh (packages, build or install)"
		exit 1
	fi
fi

if [ ! -x "$PG_CONFIG" ]; then
	say "pg_config not found at $PG_CONFIG"
	exit 1
fi
PGXS_DIR="$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")"
PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress"
PERL_DIR="$PGXS_DIR/src/test/perl"
for f in "$PG_REGRESS" "$PERL_DIR/PostgreSQL/Test/Cluster.pm"; do
	[ -e "$f" ] || { say "missing $f (install postgresql-server-dev-${PG_MAJOR})"; exit 1; }
done

# ---------------------------------------------------------------- scratch copy
if [ "$(id -u)" -eq 0 ]; then
	RUNAS=postgres
	if ! id "$RUNAS" >/dev/null 2>&1; then
		say "creating user $RUNAS"
		useradd --system --create-home --home-dir /var/lib/postgresql --shell /bin/bash "$RUNAS"
	fi
else
	RUNAS=""
fi
if [ -n "$RUNAS" ]; then
	RUN_HOME="$(getent passwd "$RUNAS" | cut -d: -f6)"
	[ -d "$RUN_HOME" ] || RUN_HOME=/tmp
else
	RUN_HOME="${HOME:-/tmp}"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/parallel_apply_test.XXXXXX")"
COPY="$WORK/repo"
mkdir -p "$COPY"
tar -C "$REPO" \
	--exclude=./.git --exclude='tmp_check*' --exclude=./results \
	--exclude=./regression.diffs --exclude=./regression.out \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	-cf - . | tar -C "$COPY" -xf -
if [ -n "$RUNAS" ]; then
	chown -R "$RUNAS": "$WORK"
fi
chmod 755 "$WORK"

# Run a command as the unprivileged user with a clean, predictable environment.
as_user() {
	local envs=(
		"PATH=$PGBIN:/usr/local/bin:/usr/bin:/bin"
		"HOME=$RUN_HOME"
		"LANG=C.UTF-8" "LC_ALL=C.UTF-8"
		"PG_REGRESS=$PG_REGRESS"
		"PERL5LIB=$PERL_DIR:$COPY/t"
		"TESTDIR=$COPY"
		"PG_TEST_TIMEOUT_DEFAULT=${PG_TEST_TIMEOUT_DEFAULT:-120}"
		"PA_NO_ENGINE=${PA_NO_ENGINE:-}"
		"PA_LOAD_SECONDS=${PA_LOAD_SECONDS:-}"
		"PA_RANDOM_SEEDS=${PA_RANDOM_SEEDS:-}"
		"PA_SEED=${PA_SEED:-}"
		"TMPDIR=/tmp"
	)
	if [ -n "$RUNAS" ]; then
		runuser -u "$RUNAS" -- env -i "${envs[@]}" "$@"
	else
		env -i "${envs[@]}" "$@"
	fi
}

# Stop any server a killed test left behind (only servers under our scratch
# dir; only those of one test file if its name is given).
stop_leftovers() { # [directory holding tmp_check [test file name without .pl]]
	local pidfile dir
	for pidfile in "${1:-$COPY}"/tmp_check/t_"${2:-}"*_data/pgdata/postmaster.pid; do
		[ -e "$pidfile" ] || continue
		dir="$(dirname "$pidfile")"
		say "stopping leftover server in $dir"
		as_user "$PGBIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
	done
}

declare -a RESULTS=()
FAILED=0
record() { # name status seconds
	RESULTS+=("$(printf '%-34s %-6s %4ss' "$1" "$2" "$3")")
	[ "$2" = ok ] || FAILED=1
}

# The logs of a failed TAP file: tail of its regress_log, errors and tail of
# each server log.
show_tap_logs() { # log directory, test name (file name without .pl)
	local rl="$1/regress_log_$2" lf
	if [ -f "$rl" ]; then
		hr
		say "tail of $rl:"
		tail -n 80 "$rl"
	fi
	for lf in "$1/$2"_*.log; do
		[ -f "$lf" ] || continue
		hr
		say "errors and tail of $lf:"
		grep -E 'PANIC|FATAL|ERROR|TRAP|terminated by signal|server process' "$lf" | tail -n 40
		echo "..."
		tail -n 40 "$lf"
	done
}

# Wall-clock limit for the next TAP file: its own limit, cut to what is left
# of PA_TOTAL_BUDGET; prints nothing (and fails) when less than 60 s are left.
file_limit() { # own limit in seconds
	local left=$(( ${PA_TOTAL_BUDGET:-1080} - ($(date +%s) - START_TIME) ))
	local limit=$1
	[ "$left" -lt "$limit" ] && limit=$left
	[ "$limit" -lt 60 ] && return 1
	echo "$limit"
}

PROVE_FLAGS=(--timer)
[ "${PA_PROVE_VERBOSE:-0}" = 1 ] && PROVE_FLAGS+=(-v)

# ---------------------------------------------------------------- pg_regress
if [ "${PA_SKIP_REGRESS:-0}" != 1 ] && [ "${PA_NO_ENGINE:-0}" != 1 ]; then
	REGRESS_LIST=""
	if [ -f "$COPY/Makefile" ]; then
		REGRESS_LIST="$(make -s --no-print-directory -C "$COPY" -f Makefile \
			-f <(printf 'pa-print-regress:\n\t@echo $(REGRESS)\n') \
			PG_CONFIG="$PG_CONFIG" pa-print-regress 2>/dev/null | tail -n 1)"
	fi
	if [ -z "$REGRESS_LIST" ]; then
		for f in "$COPY"/sql/*.sql; do
			b="$(basename "$f" .sql)"
			case "$b" in parallel_apply--*) continue ;; esac
			REGRESS_LIST="$REGRESS_LIST $b"
		done
	fi
	hr
	say "pg_regress: $REGRESS_LIST"
	t0=$(date +%s)
	if (cd "$COPY" && as_user "$PG_REGRESS" \
		--temp-instance="$COPY/tmp_check_regress" \
		--temp-config="$COPY/sql/regress.conf" \
		--bindir="$PGBIN" --inputdir="$COPY" --outputdir="$COPY" \
		--no-locale --encoding=UTF8 \
		--dbname=contrib_regression $REGRESS_LIST); then
		record "pg_regress" ok $(($(date +%s) - t0))
	else
		record "pg_regress" FAILED $(($(date +%s) - t0))
		hr
		say "regression.diffs:"
		[ -f "$COPY/regression.diffs" ] && head -c 20000 "$COPY/regression.diffs"
		for lf in "$COPY"/tmp_check_regress/log/postmaster.log; do
			[ -f "$lf" ] || continue
			hr
			say "tail of $lf:"
			tail -n 60 "$lf"
		done
	fi
fi

# ---------------------------------------------------------------- TAP
if [ "${PA_SKIP_TAP:-0}" != 1 ]; then
	mapfile -t TAP_FILES < <(cd "$COPY" && ls t/*.pl 2>/dev/null | sort)
	if [ -n "${PA_TESTS:-}" ]; then
		sel=()
		for f in "${TAP_FILES[@]}"; do
			for pat in $PA_TESTS; do
				case "$f" in *"$pat"*) sel+=("$f"); break ;; esac
			done
		done
		TAP_FILES=("${sel[@]}")
	fi
	for tf in "${TAP_FILES[@]}"; do
		name="$(basename "$tf" .pl)"
		if ! limit=$(file_limit "${PA_FILE_TIMEOUT:-480}"); then
			say "TAP $tf: not run, time budget (PA_TOTAL_BUDGET) used up"
			record "$name" NOTRUN 0
			continue
		fi
		hr
		say "TAP $tf"
		t0=$(date +%s)
		(cd "$COPY" && as_user timeout -k 30 "$limit" \
			prove "${PROVE_FLAGS[@]}" -I "$PERL_DIR" -I "$COPY/t" "$tf")
		rc=$?
		stop_leftovers
		if [ $rc -eq 0 ]; then
			record "$name" ok $(($(date +%s) - t0))
		else
			[ $rc -eq 124 ] && say "$tf: killed after ${limit}s"
			record "$name" FAILED $(($(date +%s) - t0))
			show_tap_logs "$COPY/tmp_check/log" "$name"
		fi
	done
fi

# ---------------------------------------------------------------- PostgreSQL's subscription tests
# Each file of src/test/subscription/t runs on its own with prove, with
# PERL5OPT=-MPgSuite (t/PgSuite.pm: the engine applies the subscriptions;
# checks listed in t/pg_suite_skips.txt run as TODO tests), PA_PG_JOBS files
# at a time (as PostgreSQL's own "make check -j" would; their nodes share one
# port lock directory).  The files are copied to the scratch directory, where
# their tmp_check goes; each file's output is printed, and its result
# recorded, in file order once it has finished.
pg_selected() { # name: is this PostgreSQL test file selected by PA_TESTS?
	local pat
	[ -z "${PA_TESTS:-}" ] && return 0
	for pat in $PA_TESTS; do
		case "$pat" in
			pg_suite) return 0 ;;
			pg_*) case "$1" in *"$pat"*) return 0 ;; esac ;;
		esac
	done
	return 1
}
pg_any_selected() {
	local pat
	[ -z "${PA_TESTS:-}" ] && return 0
	for pat in $PA_TESTS; do
		case "$pat" in pg_*) return 0 ;; esac
	done
	return 1
}

# Start one file in the background; its output goes to $PG_OUT/<base>.out,
# "exit-code seconds" to $PG_OUT/<base>.rc when it is done.
pg_start() { # test file (t/NNN_name.pl), wall-clock limit
	local tf="$1" limit="$2" base
	base="$(basename "$tf" .pl)"
	(
		t0=$(date +%s)
		cd "$PG_SUITE" && as_user env PERL5OPT=-MPgSuite TESTDIR="$PG_SUITE" \
			with_icu="$PG_WITH_ICU" PG_TEST_TIMEOUT_DEFAULT="${PA_PG_TEST_TIMEOUT:-90}" \
			timeout -k 30 "$limit" prove "${PROVE_FLAGS[@]}" "$tf" >"$PG_OUT/$base.out" 2>&1
		rc=$?
		[ $rc -eq 124 ] && echo "run.sh: $tf: killed after ${limit}s" >>"$PG_OUT/$base.out"
		stop_leftovers "$PG_SUITE" "$base" >>"$PG_OUT/$base.out"
		echo "$rc $(($(date +%s) - t0))" >"$PG_OUT/$base.rc"
	) &
}

# Print a finished file's output and record its result.
pg_report() { # test file
	local tf="$1" base rc secs
	base="$(basename "$tf" .pl)"
	read -r rc secs <"$PG_OUT/$base.rc"
	hr
	say "TAP (PostgreSQL) $tf"
	cat "$PG_OUT/$base.out"
	if [ "$rc" = NOTRUN ]; then
		record "pg_$base" NOTRUN 0
	elif [ "$rc" -eq 0 ]; then
		record "pg_$base" ok "$secs"
	else
		record "pg_$base" FAILED "$secs"
		show_tap_logs "$PG_SUITE/tmp_check/log" "$base"
	fi
}

if [ "${PA_SKIP_TAP:-0}" != 1 ] && [ "${PA_SKIP_PG_SUITE:-0}" != 1 ] && pg_any_selected; then
	PG_SRC_CACHE="${PA_PG_SRC_CACHE:-/var/cache/parallel_apply/postgresql-${PG_MAJOR}-src}"
	PG_SUITE="$COPY/pg_suite"
	PG_OUT="$WORK/pg_suite_out"
	hr
	if [ ! -f "$PG_SRC_CACHE/src/test/subscription/t/001_rep_changes.pl" ]; then
		say "PostgreSQL's subscription tests not found in $PG_SRC_CACHE (t/setup.sh fetches them)"
		record "pg_suite" NOTRUN 0
	else
		say "PostgreSQL's subscription tests: $(cat "$PG_SRC_CACHE/.complete" 2>/dev/null), ${PA_PG_JOBS:-2} at a time"
		mkdir -p "$PG_SUITE" "$PG_OUT"
		cp -R "$PG_SRC_CACHE/src/test/subscription/t" "$PG_SUITE/"
		[ -n "$RUNAS" ] && chown -R "$RUNAS": "$PG_SUITE"
		# 012_collation needs to be told that the server has ICU
		PG_WITH_ICU=no
		"$PG_CONFIG" --configure | grep -q -- '--with-icu' && PG_WITH_ICU=yes
		PG_FILES=()
		while read -r tf; do
			pg_selected "pg_$(basename "$tf" .pl)" && PG_FILES+=("$tf")
		done < <(cd "$PG_SUITE" && ls t/*.pl | sort)
		pg_t0=$(date +%s)
		next_start=0
		next_report=0
		while [ "$next_report" -lt "${#PG_FILES[@]}" ]; do
			# start files while fewer than PA_PG_JOBS run
			while [ "$next_start" -lt "${#PG_FILES[@]}" ] &&
				[ "$(jobs -rp | wc -l)" -lt "${PA_PG_JOBS:-2}" ]; do
				tf="${PG_FILES[$next_start]}"
				if limit=$(file_limit "${PA_PG_FILE_TIMEOUT:-300}"); then
					pg_start "$tf" "$limit"
				else
					echo "run.sh: $tf: not run, time budget (PA_TOTAL_BUDGET) used up" \
						>"$PG_OUT/$(basename "$tf" .pl).out"
					echo "NOTRUN 0" >"$PG_OUT/$(basename "$tf" .pl).rc"
				fi
				next_start=$((next_start + 1))
			done
			# report, in file order, the files that have finished
			while [ "$next_report" -lt "$next_start" ] &&
				[ -f "$PG_OUT/$(basename "${PG_FILES[$next_report]}" .pl).rc" ]; do
				pg_report "${PG_FILES[$next_report]}"
				next_report=$((next_report + 1))
			done
			# wait until one of the running files finishes
			[ "$next_report" -lt "${#PG_FILES[@]}" ] && [ -n "$(jobs -rp)" ] && wait -n
		done
		wait
		say "PostgreSQL's subscription tests: ${#PG_FILES[@]} files in $(($(date +%s) - pg_t0))s"
	fi
fi

# ---------------------------------------------------------------- summary
hr
say "summary ($(($(date +%s) - START_TIME))s total):"
for r in "${RESULTS[@]}"; do
	echo "  $r"
done
if [ ${#RESULTS[@]} -eq 0 ]; then
	say "nothing was run"
	FAILED=1
fi
# the plain closing line: test files (pg_regress counts as one) passed/failed
n_ok=0
n_bad=0
for r in "${RESULTS[@]}"; do
	case "$r" in
		*" ok "*) n_ok=$((n_ok + 1)) ;;
		*) n_bad=$((n_bad + 1)) ;;
	esac
done
echo "$n_ok passed, $n_bad failed"
if [ "$FAILED" -ne 0 ]; then
	say "FAILED; logs kept in $COPY (tmp_check/log, pg_suite/tmp_check/log, regression.diffs)"
	exit 1
fi
if [ "${PA_KEEP:-0}" = 1 ]; then
	say "all tests passed; scratch directory kept: $WORK"
else
	rm -rf "$WORK"
	say "all tests passed"
fi
exit 0
