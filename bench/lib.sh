# shellcheck shell=bash disable=SC2034  # (variables: set here for the scripts, set by functions for their callers)
#
# lib.sh -- what the catch-up benchmarks pa_bench.sh and ri_full_bench.sh
# share: options, environment checks, throw-away clusters run as the
# unprivileged user "postgres" (runuser) on 127.0.0.1, cleanup and traps, the
# waiter that times the catch-up on the publisher's slot, the end-of-backlog
# marker, machine information, CPU accounting, the results file and the final
# exit status.  Not a program: each script sources it,
#
#     BENCH_NAME=pa_bench      # messages, file and directory names
#     BENCH_PREFIX=pa_bench    # SQL objects: <prefix>_wait, <prefix>_marker
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# sets its own defaults after it, and calls these functions in its own order.
# Every function is used by both scripts.  The functions called from a
# script's run_mode set that run_mode's locals of the same names (bash's
# dynamic scope): status, seconds, rate, first_s, cpu_ours, cpu_other,
# applied_s, applied_rate, done_tx, load_tps, target.  A script sets
# PUB_PORT, SUB_PORT, CLIENTS, JOBS and NEED_EXT, and defines usage() and
# script_opt() itself.

# ---------------------------------------------------------------- defaults --
# (both scripts; a script may set its own after sourcing this file)
OUT=""
TIMEOUT=3600
POLL=0.1
KEEP=0
SHARED_BUFFERS=1GB
SUB_CONF=()		# --sub-conf lines, for the subscriber
CLUSTER_CONF=()		# a script's own postgresql.conf lines, both clusters
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
TMP_PARENT="${TMPDIR:-/tmp}"
PG_USER=postgres
DB=bench
SUBNAME="${BENCH_PREFIX}_sub"
PUBNAME="${BENCH_PREFIX}_pub"
WAITER_PID=""

die() { echo "$BENCH_NAME: ERROR: $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# ----------------------------------------------------------------- options --
# parse_args ARG...: the command line (kept in ARGS_ORIG): each argument is
# one of the script's own options (script_opt ARG..., which sets OPT_SHIFT
# like common_opt), else one of common_opt's; --name=value is --name value.
# Then --poll must be a number.
parse_args() {
	ARGS_ORIG=("$@")
	while [ $# -gt 0 ]; do
		script_opt "$@"
		if [ "$OPT_SHIFT" = 0 ]; then common_opt "$@"; fi
		if [ "$OPT_SHIFT" = 0 ]; then
			case "$1" in
				--*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
				*) usage >&2; die "unknown argument: $1" ;;
			esac
		fi
		shift "$OPT_SHIFT"
	done
	[[ "$POLL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--poll must be a number of seconds"
}

# common_opt ARG...: the options both scripts take.  Sets OPT_SHIFT to the
# number of arguments used, 0 if $1 is none of them.
common_opt() {
	OPT_SHIFT=2
	case "$1" in
		--out) OUT="$2" ;;
		--sub-conf) SUB_CONF+=("$2") ;;
		--shared-buffers) SHARED_BUFFERS="$2" ;;
		--pub-port) PUB_PORT="$2" ;;
		--sub-port) SUB_PORT="$2" ;;
		--timeout) TIMEOUT="$2" ;;
		--poll) POLL="$2" ;;
		--pg-bin) PG_BIN="$2" ;;
		--keep) KEEP=1; OPT_SHIFT=1 ;;
		-h|--help) usage; exit 0 ;;
		*) OPT_SHIFT=0 ;;
	esac
}

check_uints() {	# check_uints VAR...: each VAR must hold a non-negative integer
	local v
	for v in "$@"; do
		is_uint "${!v}" || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer (got '${!v}')"
	done
}

# ------------------------------------------------------------- environment --
# bench_env: PostgreSQL 15 binaries, as_pg (root: runuser -u postgres), the
# installed extension (NEED_EXT=1: required).  Sets PG_VERSION, RUN_USER,
# PKGLIBDIR, SHAREDIR, PRELOAD.
bench_env() {
	# libpq settings of the caller must not leak into the run.
	unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGSERVICE PGOPTIONS PGPASSWORD PGPASSFILE PGAPPNAME PGSSLMODE
	export PGUSER=postgres	# the bootstrap superuser initdb creates (-U postgres)
	local b
	for b in initdb pg_ctl psql pgbench postgres; do
		[ -x "$PG_BIN/$b" ] || die "$PG_BIN/$b not found (install postgresql-15, or --pg-bin)"
	done
	PG_VERSION="$("$PG_BIN/postgres" --version)"
	case "$PG_VERSION" in *" 15."*) ;; *) log "WARNING: $PG_VERSION is not PostgreSQL 15";; esac

	# shellcheck disable=SC2317  # as_pg: called through the scripts' functions
	if [ "$(id -u)" = 0 ]; then
		id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (install postgresql-15)"
		command -v runuser >/dev/null || die "runuser not found"
		as_pg() { runuser -u "$PG_USER" -- "$@"; }
		RUN_USER="$PG_USER"
	else
		as_pg() { "$@"; }
		RUN_USER="$(id -un)"
	fi

	# The extension: the subscriber always runs with it preloaded.  Only a
	# built-in-only run may go on without it (with a warning), so that the
	# script stays usable while the extension is not installed.
	PKGLIBDIR="$("$PG_BIN/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)"
	SHAREDIR="$("$PG_BIN/pg_config" --sharedir 2>/dev/null || echo /usr/share/postgresql/15)"
	PRELOAD=1
	if [ ! -f "$PKGLIBDIR/parallel_apply.so" ] || [ ! -f "$SHAREDIR/extension/parallel_apply.control" ]; then
		if [ "$NEED_EXT" = 1 ]; then
			die "parallel_apply is not installed ($PKGLIBDIR/parallel_apply.so, $SHAREDIR/extension/parallel_apply.control); run 'bash t/setup.sh' or 'make install'"
		fi
		log "WARNING: parallel_apply is not installed: the built-in-only run goes WITHOUT shared_preload_libraries"
		PRELOAD=0
	fi
}

# Which build of the engine is measured: checksum of the installed library.
so_md5() {
	if [ "$PRELOAD" = 1 ] && [ -f "$PKGLIBDIR/parallel_apply.so" ]; then
		md5sum "$PKGLIBDIR/parallel_apply.so" | cut -c1-12
	else
		echo "-"
	fi
}

check_ports() {	# both ports must be free on 127.0.0.1
	local p
	for p in "$PUB_PORT" "$SUB_PORT"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "port $p on 127.0.0.1 is in use (choose --pub-port/--sub-port)"
		fi
	done
}

# make_dirs: the results directory OUT (default $TMPDIR/<name>-<date>; an
# earlier results.csv there is renamed) and the temporary directory WORK,
# which becomes the current directory; SOCK is the clusters' socket directory.
make_dirs() {
	STAMP="$(date +%Y%m%d-%H%M%S)"
	[ -n "$OUT" ] || OUT="$TMP_PARENT/$BENCH_NAME-$STAMP"
	OUT="$(realpath -m "$OUT")"
	mkdir -p "$OUT/logs" "$OUT/stats"
	if [ -f "$OUT/results.csv" ]; then mv "$OUT/results.csv" "$OUT/results.csv.$STAMP"; fi

	WORK="$(mktemp -d "$TMP_PARENT/$BENCH_NAME.XXXXXX")"
	chmod 755 "$WORK"
	if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$WORK"; fi
	cd "$WORK"
	SOCK="$WORK/sock"
}

# ---------------------------------------------------------- cleanup, traps --
cleanup() {	# on exit: stop the waiter and the clusters, remove WORK (unless --keep)
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$WAITER_PID" ]; then kill "$WAITER_PID" 2>/dev/null || true; fi
	for d in "$WORK/pub" "$WORK/sub"; do
		if [ -f "$d/postmaster.pid" ]; then
			as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ "$KEEP" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

err_trap() {	# err_trap LINE COMMAND (the ERR trap; a line of this file is named so)
	local where="line $1"
	[ "${BASH_SOURCE[1]:-}" != "${BASH_SOURCE[0]}" ] || where="line $1 of bench/lib.sh"
	log "failed ($where): $2"
}

set_traps() {
	trap cleanup EXIT
	trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR
	trap 'echo; log "interrupted"; exit 130' INT
	trap 'log "terminated"; exit 143' TERM
}

# ---------------------------------------------------------------- clusters --
# psql against a cluster: pq PORT DB SQL   (tuples only, unaligned, stops on error)
pq() {
	local port="$1" db="$2" sql="$3"
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$port" -d "$db" -c "$sql"
}
pub() { pq "$PUB_PORT" "${2:-$DB}" "$1"; }
sub() { pq "$SUB_PORT" "${2:-$DB}" "$1"; }

sub_show() {	# sub_show SQL: aligned psql output of SQL on the subscriber, errors included
	as_pg "$PG_BIN/psql" -X -h "$SOCK" -p "$SUB_PORT" -d "$DB" -c "$1" 2>&1 || true
}

init_cluster() {	# init_cluster NAME PORT ROLE
	local name="$1" port="$2" role="$3" d="$WORK/$1"
	as_pg "$PG_BIN/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$WORK/$name.initdb.log" 2>&1 ||
		{ cat "$WORK/$name.initdb.log" >&2; die "initdb $name failed"; }
	{
		echo "# --- $BENCH_NAME.sh ---"
		echo "port = $port"
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$SOCK'"
		echo "shared_buffers = $SHARED_BUFFERS"
		echo "fsync = on                       # kept on: the numbers include real WAL flushes"
		echo "max_wal_size = 16GB"
		echo "min_wal_size = 1GB"
		echo "checkpoint_timeout = 30min"
		echo "max_connections = 100"
		echo "log_line_prefix = '%m [%p] %b: '"
		echo "log_checkpoints = on"
		echo "max_wal_senders = 10"
		echo "max_replication_slots = 10"
		local c
		for c in ${CLUSTER_CONF[@]+"${CLUSTER_CONF[@]}"}; do echo "$c"; done
		if [ "$role" = pub ]; then
			echo "wal_level = logical"
		else
			echo "max_worker_processes = 20"
			echo "max_logical_replication_workers = 8"
			if [ "$PRELOAD" = 1 ]; then
				echo "shared_preload_libraries = 'parallel_apply'"
			fi
		fi
	} >>"$d/postgresql.conf"
}

start_cluster() {	# start_cluster NAME   (the subscriber with LD_PRELOAD=$JEMALLOC_LIB if set)
	local d="$WORK/$1"
	if [ "$1" = sub ] && [ -n "${JEMALLOC_LIB:-}" ]; then
		as_pg env LD_PRELOAD="$JEMALLOC_LIB" "$PG_BIN/pg_ctl" -D "$d" -l "$WORK/$1.log" -w -t 120 start >/dev/null ||
			{ tail -n 30 "$WORK/$1.log" >&2; return 1; }
	else
		as_pg "$PG_BIN/pg_ctl" -D "$d" -l "$WORK/$1.log" -w -t 120 start >/dev/null ||
			{ tail -n 30 "$WORK/$1.log" >&2; return 1; }
	fi
}

stop_cluster() {	# stop_cluster NAME
	local d="$WORK/$1"
	[ -f "$d/postmaster.pid" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1 ||
		as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
}

# fresh_clusters [LINE...]: new data directories "pub" and "sub"; LINEs and
# then the --sub-conf lines go to the subscriber's postgresql.conf.
fresh_clusters() {
	rm -rf "$WORK/pub" "$WORK/sub" "$WORK/pub.log" "$WORK/sub.log"
	mkdir -p "$SOCK"
	if [ "$(id -u)" = 0 ]; then chown "$PG_USER" "$SOCK"; fi
	init_cluster pub "$PUB_PORT" pub
	init_cluster sub "$SUB_PORT" sub
	local c
	for c in "$@" ${SUB_CONF[@]+"${SUB_CONF[@]}"}; do echo "$c" >>"$WORK/sub/postgresql.conf"; done
}

start_clusters() {	# start_clusters: publisher, then subscriber; 1 if one does not start
	start_cluster pub || return 1
	start_cluster sub || return 1
}

create_databases() {	# create_databases: DB on both sides, the waiter on the publisher
	pub "CREATE DATABASE $DB" postgres
	sub "CREATE DATABASE $DB" postgres
	pub "$WAITER_SQL" postgres
}

# ------------------------------------------------------------- the waiter --
# define_waiter NOTE REMAINING: WAITER_SQL, the waiter, created in the
# publisher's "postgres" database as <prefix>_wait: polls the slot every POLL
# seconds and returns the wall-clock time (epoch) at which confirmed_flush_lsn
# first reached the target, or NULL on timeout, and when it first moved.  It
# runs in one session so that polling does not fork a psql every 100 ms (that
# would steal CPU from the apply on a small machine).  Every 5 s it notes
# "catch-up: S s, REMAINING NOTE" (REMAINING: SQL of p_target - c).
define_waiter() {
	WAITER_SQL="
CREATE FUNCTION ${BENCH_PREFIX}_wait(p_slot name, p_target pg_lsn, p_timeout float8, p_poll float8)
RETURNS TABLE (reached float8, confirmed pg_lsn, replay pg_lsn, first_progress float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t_start timestamptz := clock_timestamp();
    t_note  timestamptz := clock_timestamp();
    t_first float8;
    c0 pg_lsn;
    c pg_lsn;
    r pg_lsn;
BEGIN
    SELECT s.confirmed_flush_lsn INTO c0 FROM pg_replication_slots s WHERE s.slot_name = p_slot;
    LOOP
        SELECT s.confirmed_flush_lsn INTO c FROM pg_replication_slots s WHERE s.slot_name = p_slot;
        IF t_first IS NULL AND c IS NOT NULL AND (c0 IS NULL OR c > c0) THEN
            t_first := extract(epoch FROM clock_timestamp());
        END IF;
        IF c IS NOT NULL AND c >= p_target THEN
            SELECT w.replay_lsn INTO r FROM pg_stat_replication w WHERE w.application_name = p_slot;
            RETURN QUERY SELECT extract(epoch FROM clock_timestamp())::float8, c, r, t_first;
            RETURN;
        END IF;
        IF clock_timestamp() - t_start > make_interval(secs => p_timeout) THEN
            SELECT w.replay_lsn INTO r FROM pg_stat_replication w WHERE w.application_name = p_slot;
            RETURN QUERY SELECT NULL::float8, c, r, t_first;
            RETURN;
        END IF;
        IF clock_timestamp() - t_note >= interval '5 s' THEN
            RAISE NOTICE 'catch-up: % s, % $1',
                round(extract(epoch FROM clock_timestamp() - t_start)::numeric, 1),
                $2;
            t_note := clock_timestamp();
        END IF;
        PERFORM pg_sleep(p_poll);
    END LOOP;
END
\$\$;"
}

# The end of the backlog, seen on the subscriber: the load is followed by one
# row in <prefix>_marker (published with the measured tables); on the
# subscriber an ENABLE ALWAYS trigger notes when it is applied ("applied s").
# Nothing polls the subscriber, and the measured tables carry no trigger: an
# open snapshot or a per-row trigger there would slow the apply being
# measured (a waiter that held a snapshot made the built-in apply 25 times
# slower).
define_marker() {	# define_marker: MARKER_PUB_SQL, MARKER_SUB_SQL
	local m="${BENCH_PREFIX}_marker"
	MARKER_PUB_SQL="CREATE TABLE $m (id int PRIMARY KEY, note text)"
	MARKER_SUB_SQL="
CREATE TABLE $m (id int PRIMARY KEY, note text);
CREATE TABLE ${m}_seen (id int, at float8);
CREATE FUNCTION ${m}_seen() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    -- apply workers run with an empty search_path
    INSERT INTO public.${m}_seen VALUES (NEW.id, extract(epoch FROM pg_catalog.clock_timestamp()));
    RETURN NULL;
END
\$\$;
CREATE TRIGGER seen AFTER INSERT ON $m FOR EACH ROW EXECUTE FUNCTION public.${m}_seen();
ALTER TABLE $m ENABLE ALWAYS TRIGGER seen;"
}

# --------------------------------------------------------- machine, results --
# machine_info EXTRA SETTINGS...: DIR/machine.txt, also shown on stderr.
# EXTRA: a line after "postgres:" ("" for none); SETTINGS: the script's lines
# after "clusters:".  Sets MEM_KB and CPU_MODEL.
machine_info() {
	local extra="$1"; shift
	MEM_KB="$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
	CPU_MODEL="$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)"
	{
		echo "date:       $(date '+%Y-%m-%d %H:%M:%S %Z')"
		echo "host:       $(uname -srm)"
		echo "cpu:        $(nproc) x ${CPU_MODEL:-unknown}"
		echo "memory:     $((MEM_KB / 1024 / 1024)) GiB ($MEM_KB kB)"
		echo "postgres:   $PG_VERSION ($("$PG_BIN/pg_config" --version 2>/dev/null || echo '?'))"
		if [ -n "$extra" ]; then echo "$extra"; fi
		if [ "$PRELOAD" = 1 ]; then
			echo "extension:  $PKGLIBDIR/parallel_apply.so md5 $(so_md5)... installed $(date -r "$PKGLIBDIR/parallel_apply.so" '+%Y-%m-%d %H:%M:%S')"
		else
			echo "extension:  not installed, not preloaded"
		fi
		echo "command:    $0${ARGS_ORIG[*]+ $(printf '%q ' "${ARGS_ORIG[@]}")}"
		echo "clusters:   run as OS user $RUN_USER, on 127.0.0.1 ports $PUB_PORT (publisher) and $SUB_PORT (subscriber)"
		printf '%s\n' "$@"
		local c
		for c in ${SUB_CONF[@]+"${SUB_CONF[@]}"}; do echo "sub-conf:   $c"; done
	} >"$OUT/machine.txt"
	cat "$OUT/machine.txt" >&2
}

# init_results CSV_HEADER: CSV (DIR/results.csv) with its header line, and
# RESULTS_FILE, the "|"-separated lines record() adds, one per mode run.
init_results() {
	CSV="$OUT/results.csv"
	echo "$1" >"$CSV"
	RESULTS_FILE="$WORK/results.lst"
	: >"$RESULTS_FILE"
	FAILED=0
}
record() { echo "$1" >>"$RESULTS_FILE"; }

# ------------------------------------------------------------ CPU accounting --
# CPU accounting during the catch-up, to tell a quiet machine from a busy one.
CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"
machine_busy_ticks() {	# all CPUs: user+nice+system+irq+softirq+steal
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

cluster_pids() {	# both postmasters and their children, one pid a line
	local pm p
	for pm in "$WORK/pub/postmaster.pid" "$WORK/sub/postmaster.pid"; do
		[ -f "$pm" ] || continue
		p="$(head -n 1 "$pm")"
		echo "$p"
		pgrep -P "$p" || true
	done
}

proc_ticks() {	# utime+stime of one process, 0 if it is gone
	local t
	t="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || t=0
	echo "${t:-0}"
}

cluster_ticks() {	# utime+stime of both postmasters and their children
	local p total=0
	for p in $(cluster_pids); do
		total=$((total + $(proc_ticks "$p")))
	done
	echo "$total"
}

# ---------------------------------------------------------------- catch-up --
# start_waiter TARGET: the waiter (a psql in the background, WAITER_PID)
# until the slot reaches the LSN TARGET; its result goes to WORK/wait.out, its
# notes to stderr.  1 if it does not start.
start_waiter() {
	local target="$1" w="${BENCH_PREFIX}_wait" t=0
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PUB_PORT" -d postgres \
		-c "SET application_name = '$w'" \
		-c "SELECT * FROM $w('$SUBNAME', '$target', $TIMEOUT, $POLL)" \
		>"$WORK/wait.out" 2> >(sed -u 's/^psql:[^N]*NOTICE: */            /; s/^NOTICE: */            /' >&2) &
	WAITER_PID=$!
	until [ "$(pub "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$w' AND state = 'active'" postgres)" = 1 ]; do
		t=$((t + 1)); [ "$t" -gt 100 ] && { log "waiter did not start"; return 1; }
		sleep 0.05
	done
}

# Cancel the waiter's query on the publisher (its psql then exits).
stop_waiter() {
	pub "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '${BENCH_PREFIX}_wait'" postgres >/dev/null 2>&1 ||
		kill "$WAITER_PID" 2>/dev/null || true
}

# start_apply MODE NOTE: ALTER SUBSCRIPTION ... ENABLE (builtin) or
# parallel_apply.attach() (pa; NOTE ends its log line).  On failure shows
# the error, stops the waiter and returns 1.
start_apply() {
	local err=""
	if [ "$1" = builtin ]; then
		log "start applying: ALTER SUBSCRIPTION $SUBNAME ENABLE"
		sub "ALTER SUBSCRIPTION $SUBNAME ENABLE" >/dev/null 2>"$WORK/start.err" || err=1
	else
		log "start applying: SELECT parallel_apply.attach('$SUBNAME')  $2"
		sub "SELECT parallel_apply.attach('$SUBNAME')" >/dev/null 2>"$WORK/start.err" || err=1
	fi
	[ -n "$err" ] || return 0
	log "starting the apply FAILED:"; cat "$WORK/start.err" >&2
	stop_waiter; wait "$WAITER_PID" 2>/dev/null || true; WAITER_PID=""
	return 1
}

# watch_catch_up: until the waiter ends; meanwhile watch the subscriber log
# for crashes (a crashed subscriber would otherwise only show as a timeout):
# sets crash to the first such lines.
watch_catch_up() {
	local n=0
	crash=""
	while kill -0 "$WAITER_PID" 2>/dev/null; do
		if [ $((n % 5)) = 0 ]; then
			crash="$(grep -m 3 -E 'terminated by signal|PANIC:|TRAP:' "$WORK/sub.log" || true)"
			if [ -n "$crash" ]; then break; fi
		fi
		n=$((n + 1))
		sleep 0.2
	done
}

# catch_up MODE NOTE RUN [PROBE]: the measurement, once the waiter runs
# (start_waiter $target).  Starts the clock and the apply (start_apply MODE
# NOTE), waits for the waiter and ends it.  status stays ok if the slot
# reached $target; then seconds and rate (done_tx / seconds), first_s (until
# the slot first moved), and cpu_ours and cpu_other (CPU used by both
# clusters and by everything else, in % of all CPUs) are set.  Else status
# is START_FAILED, CRASHED or TIMEOUT, said so.  In any case applied_s and
# applied_rate come from the marker row RUN, if it was applied.  PROBE, a
# function, is called as "PROBE begin" just before the clock starts and as
# "PROBE end" just after the catch-up.  (Call it plainly, not in a condition:
# errexit stays on.)
catch_up() {
	local mode="$1" note="$2" run="$3" probe="${4:-}"
	local t0 cpu0 ours0 cpu1 ours1 tcpu1 crash="" reached="" applied_at first
	cpu0="$(machine_busy_ticks)"; ours0="$(cluster_ticks)"
	if [ -n "$probe" ]; then "$probe" begin; fi
	t0="$(date +%s.%N)"
	if ! start_apply "$mode" "$note"; then
		status=START_FAILED
		return 0
	fi
	watch_catch_up
	# CPU accounting: as close to the end of the catch-up as we can see it
	cpu1="$(machine_busy_ticks)"; ours1="$(cluster_ticks)"; tcpu1="$(date +%s.%N)"
	if [ -n "$probe" ]; then "$probe" end; fi
	if [ -n "$crash" ]; then stop_waiter; fi
	wait "$WAITER_PID" 2>/dev/null || true
	WAITER_PID=""

	reached="$(head -n 1 "$WORK/wait.out" | cut -d'|' -f1)"
	if [ -n "$reached" ]; then
		applied_at="$(sub "SELECT at FROM ${BENCH_PREFIX}_marker_seen WHERE id = $run")"
		if [ -n "$applied_at" ]; then
			applied_s="$(awk -v a="$applied_at" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')"
			applied_rate="$(awk -v n="$done_tx" -v s="$applied_s" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')"
		fi
	fi
	if [ -n "$crash" ]; then
		status=CRASHED
		log "CRASH: the subscriber crashed during catch-up; the run is void:"
		echo "$crash" | sed 's/^/            /' >&2
	elif [ -z "$reached" ]; then
		status=TIMEOUT
		log "TIMEOUT: not caught up after ${TIMEOUT}s (slot confirmed_flush|replay: $(cut -d'|' -f2,3 "$WORK/wait.out"), target $target)"
	else
		seconds="$(awk -v a="$reached" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')"
		rate="$(awk -v n="$done_tx" -v s="$seconds" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')"
		read -r cpu_ours cpu_other < <(awk -v c="$((cpu1 - cpu0))" -v o="$((ours1 - ours0))" \
			-v s="$(awk -v a="$tcpu1" -v b="$t0" 'BEGIN { print a - b }')" \
			-v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { t = s * hz * n; if (t <= 0) t = 1;
			oth = (c - o) / t * 100; if (oth < 0) oth = 0; printf "%.0f %.0f\n", o / t * 100, oth }')
		first="$(head -n 1 "$WORK/wait.out" | cut -d'|' -f4)"
		if [ -n "$first" ]; then first_s="$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"; fi
	fi
}

log_cpu() {	# log_cpu LINE: the CPU shares, then LINE ("" for none), a warning on a busy machine
	log "CPU during the catch-up: both clusters ${cpu_ours}%, other processes ${cpu_other}% of $NCPU CPUs"
	if [ -n "${1:-}" ]; then log "$1"; fi
	if [ "${cpu_other:-0}" -ge 10 ]; then
		log "WARNING: other processes used ${cpu_other}% of the machine during this measurement: the figure is disturbed"
	fi
}

# ------------------------------------------------------------- one mode run --
# run_load PER_CLIENT PGBENCH_ARG...: the backlog, pgbench -n -c CLIENTS
# -j JOBS -t PER_CLIENT on the publisher (log WORK/load.log); sets done_tx and
# load_tps.  1 (the log shown) if pgbench fails.
run_load() {
	local per_client="$1"; shift
	if ! as_pg "$PG_BIN/pgbench" -n -c "$CLIENTS" -j "$JOBS" -t "$per_client" "$@" \
			-h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/load.log" 2>&1; then
		cat "$WORK/load.log" >&2
		return 1
	fi
	done_tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/load.log")"
	load_tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/load.log" | tail -n 1)"
}

end_backlog() {	# end_backlog RUN: the marker row RUN; sets target, the publisher's WAL position after it
	pub "INSERT INTO ${BENCH_PREFIX}_marker VALUES ($1, 'end of the backlog')"
	target="$(pub "SELECT pg_current_wal_lsn()")"
}

engine_stats() {	# engine_stats LABEL: "# LABEL" and parallel_apply's statistics views
	echo "# $1"
	sub_show "SELECT * FROM parallel_apply.stat_subscription"
	sub_show "SELECT * FROM parallel_apply.stat_workers"
}

verifies() {	# verifies: 0 if the tables are to be compared (the run did not fail before the catch-up)
	[ "$status" = ok ] || [ "$status" = TIMEOUT ] || [ "$status" = CRASHED ]
}

mismatch_banner() {	# mismatch_banner LABEL LINE...: the MISMATCH banner on stderr (empty LINEs left out)
	local label="$1" l; shift
	{
		echo "############################################################"
		echo "### MISMATCH: subscriber differs from publisher ($label)"
		for l in "$@"; do
			if [ -n "$l" ]; then echo "$l"; fi
		done
		echo "############################################################"
	} >&2
}

# log_sub_problems IGNORE: the subscriber log's ERROR/FATAL/PANIC/WARNING
# lines (but those matching the basic regular expression IGNORE, if not ""):
# count, first ones.
log_sub_problems() {
	local nerr
	if [ -n "${1:-}" ]; then
		grep -E '(ERROR|FATAL|PANIC|WARNING):|TRAP:|terminated by signal' "$WORK/sub.log" |
			grep -v -e "$1" >"$WORK/sub.problems" || true
	else
		grep -E '(ERROR|FATAL|PANIC|WARNING):|TRAP:|terminated by signal' "$WORK/sub.log" >"$WORK/sub.problems" || true
	fi
	nerr="$(wc -l <"$WORK/sub.problems")"
	if [ "${nerr:-0}" -gt 0 ]; then
		log "subscriber log has $nerr ERROR/FATAL/PANIC/WARNING lines; first ones:"
		head -n 8 "$WORK/sub.problems" | sed 's/^/            /' >&2 || true
	fi
}

check_lib_change() {	# check_lib_change BUILD: warn if the installed library is no longer BUILD (so_md5)
	if [ "$(so_md5)" != "$1" ]; then
		log "WARNING: $PKGLIBDIR/parallel_apply.so was replaced during this mode (make install elsewhere?); its checksum at the start was $1 (running servers keep the library they loaded)"
	fi
}

stop_and_save() {	# stop_and_save LABEL: stop both clusters, keep their logs in DIR/logs
	stop_cluster sub; stop_cluster pub
	cp "$WORK/sub.log" "$OUT/logs/$1.sub.log" 2>/dev/null || true
	cp "$WORK/pub.log" "$OUT/logs/$1.pub.log" 2>/dev/null || true
}

# run_isolated LABEL OK_GLOB CMD...: runs CMD (one run_mode) in a subshell
# with errexit on, so that any failing step ends that mode (bash ignores
# errexit inside a function called from "if": so call this one plainly, not
# in a condition).  Exits on a signal.  Sets FAILED=1 unless CMD ended 0 with
# a results line that matches OK_GLOB; when CMD failed, says so, saves the
# logs and sets UNRECORDED=1 if it left no results line (the caller then
# records one), else UNRECORDED=0.
run_isolated() {
	local label="$1" ok="$2" nrec rc
	shift 2
	nrec="$(wc -l <"$RESULTS_FILE")"
	UNRECORDED=0
	trap - ERR; set +e
	( trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR; set -e; "$@" )
	rc=$?
	set -e; trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR
	if [ "$rc" -ge 128 ]; then exit "$rc"; fi
	if [ "$rc" = 0 ]; then
		# shellcheck disable=SC2254  # OK_GLOB is a pattern
		case "$(tail -n 1 "$RESULTS_FILE")" in $ok) ;; *) FAILED=1 ;; esac
		return 0
	fi
	FAILED=1
	log "!!! $label did not complete cleanly"
	if [ "$(wc -l <"$RESULTS_FILE")" = "$nrec" ]; then UNRECORDED=1; fi
	stop_and_save "$label"
	echo "--- last lines of the subscriber log ($OUT/logs/$label.sub.log):" >&2
	tail -n 15 "$WORK/sub.log" 2>/dev/null | sed 's/^/            /' >&2 || true
}

# ------------------------------------------------------------------ report --
# bench_exit MISMATCH_REGEX WHAT: exit 2 if a mode failed (with a MISMATCH
# banner if a results line matches MISMATCH_REGEX: "the subscriber's WHAT from
# the publisher's"), else 0.
bench_exit() {
	log "results: $CSV"
	if [ "$FAILED" = 1 ]; then
		if grep -q "$1" "$RESULTS_FILE"; then
			echo "########## MISMATCH: the subscriber's $2 from the publisher's (see above) ##########" >&2
		fi
		log "some modes FAILED (see the status column and $OUT/logs/)"
		exit 2
	fi
	exit 0
}
