#!/usr/bin/env bash
#
# pa_bench.sh -- catch-up benchmark: PostgreSQL's built-in logical-replication
# apply worker versus parallel_apply with N workers, in one run.
#
# For every mode of the run (built-in, then parallel_apply with each worker
# count of --workers) the script builds a fresh publisher and a fresh
# subscriber on loopback, replicates the pgbench tables, disables the
# subscription, runs a pgbench load on the publisher so that a backlog builds
# up, then starts applying (built-in: ALTER SUBSCRIPTION ... ENABLE;
# parallel_apply: SELECT parallel_apply.attach(...)) and measures the time until
# the publisher's slot reports everything as applied (confirmed_flush_lsn >=
# the publisher's pg_current_wal_lsn() taken after the load).  Both sides are
# then compared table by table (ordered md5).
#
# Run as root (clusters run as the unprivileged user "postgres" via runuser),
# or directly as a non-root user who may run initdb.  See docs/benchmarks.md.
#
# Exit status: 0 all modes ran and every table matched; 2 a mismatch, a
# timeout or a failure in some mode; 1 usage or setup error.

set -Eeuo pipefail

# ---------------------------------------------------------------- defaults --
SCALE=10
CLIENTS=8
TXNS=200000
SYNC_COMMIT=off
SCRIPT=tpcb-like
HOT_ROWS=10
WORKERS="1 2 4"
BUILTIN=1
OUT=""
JEMALLOC=0
PUB_PORT=54321
SUB_PORT=54322
TIMEOUT=3600
SYNC_TIMEOUT=900
POLL=0.1
REPEAT=1
KEEP=0
SHARED_BUFFERS=1GB
QUEUE_MEMORY=""
SUB_CONF=()
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
TMP_PARENT="${TMPDIR:-/tmp}"
PG_USER=postgres

SUBNAME=pa_bench_sub
PUBNAME=pa_bench_pub
DB=bench
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"

usage() {
	cat <<EOF
Usage: $0 [options]

Catch-up rate of a logical-replication subscriber: built-in apply vs
parallel_apply with 1..N workers.  Builds throw-away clusters on 127.0.0.1.

  --scale N            pgbench scale factor (default $SCALE)
  --clients N          pgbench clients on the publisher (default $CLIENTS)
  --txns N             transactions in the backlog, split over the clients
                       (default $TXNS; rounded down to a multiple of --clients)
  --script S           tpcb-like | simple-update | hot (default $SCRIPT)
                       hot: each transaction updates one of --hot-rows
                       pgbench_accounts rows and inserts a history row
  --hot-rows N         number of hot rows for --script hot (default $HOT_ROWS)
  --sync-commit on|off the subscription's synchronous_commit (default $SYNC_COMMIT)
  --workers "LIST"     parallel_apply worker counts to run (default "$WORKERS");
                       "" runs the built-in mode only
  --no-builtin         skip the built-in mode (no speed-up column then)
  --repeat N           run every mode N times (default $REPEAT)
  --out DIR            results directory (default \$TMPDIR/pa_bench-<date>)
  --jemalloc           run the subscriber with LD_PRELOAD=libjemalloc.so.2
                       (package libjemalloc2); rows are labelled "jemalloc"
  --queue-memory SIZE  set parallel_apply.queue_memory (default: the GUC's)
  --sub-conf 'N = V'   extra postgresql.conf line for the subscriber, every mode
                       (repeatable), e.g. --sub-conf 'deadlock_timeout = 100ms'
  --shared-buffers S   shared_buffers of both clusters (default $SHARED_BUFFERS)
  --pub-port P         publisher port (default $PUB_PORT)
  --sub-port P         subscriber port (default $SUB_PORT)
  --timeout SEC        give up a catch-up after SEC seconds (default $TIMEOUT)
  --poll SEC           slot polling interval (default $POLL)
  --sync-timeout SEC   give up the initial table sync after SEC (default $SYNC_TIMEOUT)
  --pg-bin DIR         PostgreSQL 15 binaries (default $PG_BIN)
  --keep               keep the temporary directory (data dirs, logs)
  -h, --help           this text

Results: DIR/results.csv, DIR/results.txt, DIR/rate_vs_workers.png (if
gnuplot is installed), DIR/logs/*.log, DIR/stats/*.txt, DIR/machine.txt.
EOF
}

die() { echo "pa_bench: ERROR: $*" >&2; exit 1; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

ARGS_ORIG=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
		--scale) SCALE="$2"; shift 2 ;;
		--clients) CLIENTS="$2"; shift 2 ;;
		--txns) TXNS="$2"; shift 2 ;;
		--script) SCRIPT="$2"; shift 2 ;;
		--hot-rows) HOT_ROWS="$2"; shift 2 ;;
		--sync-commit) SYNC_COMMIT="$2"; shift 2 ;;
		--workers) WORKERS="$2"; shift 2 ;;
		--no-builtin) BUILTIN=0; shift ;;
		--repeat) REPEAT="$2"; shift 2 ;;
		--out) OUT="$2"; shift 2 ;;
		--jemalloc) JEMALLOC=1; shift ;;
		--queue-memory) QUEUE_MEMORY="$2"; shift 2 ;;
		--sub-conf) SUB_CONF+=("$2"); shift 2 ;;
		--shared-buffers) SHARED_BUFFERS="$2"; shift 2 ;;
		--pub-port) PUB_PORT="$2"; shift 2 ;;
		--sub-port) SUB_PORT="$2"; shift 2 ;;
		--timeout) TIMEOUT="$2"; shift 2 ;;
		--poll) POLL="$2"; shift 2 ;;
		--sync-timeout) SYNC_TIMEOUT="$2"; shift 2 ;;
		--pg-bin) PG_BIN="$2"; shift 2 ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		--*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
		*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[[ "$POLL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--poll must be a number of seconds"
for v in SCALE CLIENTS TXNS HOT_ROWS REPEAT PUB_PORT SUB_PORT TIMEOUT SYNC_TIMEOUT; do
	is_uint "${!v}" || die "--$(echo "$v" | tr 'A-Z_' 'a-z-') must be a non-negative integer (got '${!v}')"
done
[ "$SCALE" -ge 1 ] && [ "$CLIENTS" -ge 1 ] && [ "$REPEAT" -ge 1 ] && [ "$HOT_ROWS" -ge 1 ] ||
	die "--scale, --clients, --repeat and --hot-rows must be >= 1"
case "$SYNC_COMMIT" in on|off) ;; *) die "--sync-commit must be on or off" ;; esac
case "$SCRIPT" in tpcb-like|simple-update|hot) ;; *) die "--script must be tpcb-like, simple-update or hot" ;; esac
for w in $WORKERS; do
	is_uint "$w" && [ "$w" -ge 1 ] || die "--workers: '$w' is not a positive integer"
done
[ "$PUB_PORT" != "$SUB_PORT" ] || die "--pub-port and --sub-port must differ"
[ "$HOT_ROWS" -le $((SCALE * 100000)) ] || die "--hot-rows exceeds the number of accounts"
TX_PER_CLIENT=$((TXNS / CLIENTS))
[ "$TX_PER_CLIENT" -ge 1 ] || die "--txns must be >= --clients"
TXNS=$((TX_PER_CLIENT * CLIENTS))
JOBS=2; [ "$CLIENTS" -lt 2 ] && JOBS=1

# Modes: "builtin:0" and "pa:W".
MODES=()
[ "$BUILTIN" = 1 ] && MODES+=("builtin:0")
for w in $WORKERS; do MODES+=("pa:$w"); done
[ "${#MODES[@]}" -gt 0 ] || die "nothing to run (--no-builtin and empty --workers)"
NEED_EXT=0
for m in "${MODES[@]}"; do [ "${m%%:*}" = pa ] && NEED_EXT=1; done

# -------------------------------------------------------------- environment --
# libpq settings of the caller must not leak into the run.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGSERVICE PGOPTIONS PGPASSWORD PGPASSFILE PGAPPNAME PGSSLMODE
export PGUSER=postgres	# the bootstrap superuser initdb creates (-U postgres)
for b in initdb pg_ctl psql pgbench postgres; do
	[ -x "$PG_BIN/$b" ] || die "$PG_BIN/$b not found (install postgresql-15, or --pg-bin)"
done
PG_VERSION="$("$PG_BIN/postgres" --version)"
case "$PG_VERSION" in *" 15."*) ;; *) log "WARNING: $PG_VERSION is not PostgreSQL 15";; esac

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

# Which build of the engine is measured: checksum of the installed library.
so_md5() {
	if [ "$PRELOAD" = 1 ] && [ -f "$PKGLIBDIR/parallel_apply.so" ]; then
		md5sum "$PKGLIBDIR/parallel_apply.so" | cut -c1-12
	else
		echo "-"
	fi
}

ALLOCATOR=glibc
JEMALLOC_LIB=""
if [ "$JEMALLOC" = 1 ]; then
	JEMALLOC_LIB="$(ldconfig -p 2>/dev/null | awk '/libjemalloc\.so\.2 /{print $NF; exit}')"
	if [ -n "$JEMALLOC_LIB" ] && [ -f "$JEMALLOC_LIB" ]; then
		ALLOCATOR=jemalloc
	else
		log "WARNING: --jemalloc: libjemalloc.so.2 not found (apt-get install libjemalloc2); running with glibc malloc, rows are labelled glibc"
		JEMALLOC_LIB=""
	fi
fi

for p in "$PUB_PORT" "$SUB_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p on 127.0.0.1 is in use (choose --pub-port/--sub-port)"
	fi
done

STAMP="$(date +%Y%m%d-%H%M%S)"
[ -n "$OUT" ] || OUT="$TMP_PARENT/pa_bench-$STAMP"
OUT="$(realpath -m "$OUT")"
mkdir -p "$OUT/logs" "$OUT/stats"
[ -f "$OUT/results.csv" ] && mv "$OUT/results.csv" "$OUT/results.csv.$STAMP"

WORK="$(mktemp -d "$TMP_PARENT/pa_bench.XXXXXX")"
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"
cd "$WORK"

WAITER_PID=""
cleanup() {
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
trap cleanup EXIT
err_trap() { log "failed (line $1): $2"; }
trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR
trap 'echo; log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ------------------------------------------------------------------ helpers --
SOCK="$WORK/sock"

# psql against a cluster: pq PORT DB SQL   (tuples only, unaligned, stops on error)
pq() {
	local port="$1" db="$2" sql="$3"
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$port" -d "$db" -c "$sql"
}
pub() { pq "$PUB_PORT" "${2:-$DB}" "$1"; }
sub() { pq "$SUB_PORT" "${2:-$DB}" "$1"; }

init_cluster() {	# init_cluster NAME PORT ROLE
	local name="$1" port="$2" role="$3" d="$WORK/$1"
	as_pg "$PG_BIN/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$WORK/$name.initdb.log" 2>&1 ||
		{ cat "$WORK/$name.initdb.log" >&2; die "initdb $name failed"; }
	{
		echo "# --- pa_bench.sh ---"
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

start_cluster() {	# start_cluster NAME
	local d="$WORK/$1"
	if [ "$1" = sub ] && [ -n "$JEMALLOC_LIB" ]; then
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

# Ordered content hash of each pgbench table: one line "table|rows|md5".
# Rows are hashed in key order inside groups, groups in order, so the
# string_agg never grows past ~100k rows (works at any scale).
HASH_SQL="
SELECT 'pgbench_accounts|' || coalesce(sum(n), 0) || '|' || coalesce(md5(string_agg(h, '' ORDER BY g)), '-')
  FROM (SELECT aid / 100000 AS g, count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY aid)) AS h
          FROM pgbench_accounts t GROUP BY 1) s
UNION ALL
SELECT 'pgbench_branches|' || count(*) || '|' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY bid)), '-')
  FROM pgbench_branches t
UNION ALL
SELECT 'pgbench_tellers|' || count(*) || '|' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY tid)), '-')
  FROM pgbench_tellers t
UNION ALL
SELECT 'pgbench_history|' || coalesce(sum(n), 0) || '|' || coalesce(md5(string_agg(h, '' ORDER BY g)), '-')
  FROM (SELECT tid AS g, count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h
          FROM pgbench_history t GROUP BY 1) s;"

# Waiter, created in the publisher's "postgres" database: polls the slot every
# POLL seconds and returns the wall-clock time (epoch) at which
# confirmed_flush_lsn first reached the target, or NULL on timeout.  It runs
# in one session so that polling does not fork a psql every 100 ms (that
# would steal CPU from the apply on a small machine).
WAITER_SQL="
CREATE FUNCTION pa_bench_wait(p_slot name, p_target pg_lsn, p_timeout float8, p_poll float8)
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
            RAISE NOTICE 'catch-up: % s, % MB to apply',
                round(extract(epoch FROM clock_timestamp() - t_start)::numeric, 1),
                round(coalesce(p_target - c, 0) / 1048576.0, 1);
            t_note := clock_timestamp();
        END IF;
        PERFORM pg_sleep(p_poll);
    END LOOP;
END
\$\$;"

# The end of the backlog, seen on the subscriber: the load is followed by one
# row in pa_bench_marker (published with the pgbench tables); on the
# subscriber an ENABLE ALWAYS trigger notes when it is applied.  Nothing polls
# the subscriber, and the pgbench tables carry no trigger: an open snapshot or
# a per-row trigger there would slow the apply being measured (a waiter that
# held a snapshot made the built-in apply 25 times slower).
MARKER_PUB_SQL="CREATE TABLE pa_bench_marker (id int PRIMARY KEY, note text)"
MARKER_SUB_SQL="
CREATE TABLE pa_bench_marker (id int PRIMARY KEY, note text);
CREATE TABLE pa_bench_marker_seen (id int, at float8);
CREATE FUNCTION pa_bench_marker_seen() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    -- apply workers run with an empty search_path
    INSERT INTO public.pa_bench_marker_seen VALUES (NEW.id, extract(epoch FROM pg_catalog.clock_timestamp()));
    RETURN NULL;
END
\$\$;
CREATE TRIGGER seen AFTER INSERT ON pa_bench_marker FOR EACH ROW EXECUTE FUNCTION public.pa_bench_marker_seen();
ALTER TABLE pa_bench_marker ENABLE ALWAYS TRIGGER seen;"

HOT_FILE="$WORK/hot.sql"
cat >"$HOT_FILE" <<EOF
\set aid random(1, $HOT_ROWS)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
EOF
chmod 644 "$HOT_FILE"
case "$SCRIPT" in
	hot) PGBENCH_SCRIPT=(-f "$HOT_FILE") ;;
	*) PGBENCH_SCRIPT=(-b "$SCRIPT") ;;
esac

# ------------------------------------------------------------- machine info --
MEM_KB="$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
CPU_MODEL="$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)"
{
	echo "date:       $(date '+%Y-%m-%d %H:%M:%S %Z')"
	echo "host:       $(uname -srm)"
	echo "cpu:        $(nproc) x ${CPU_MODEL:-unknown}"
	echo "memory:     $((MEM_KB / 1024 / 1024)) GiB ($MEM_KB kB)"
	echo "postgres:   $PG_VERSION ($("$PG_BIN/pg_config" --version 2>/dev/null || echo '?'))"
	echo "allocator:  $ALLOCATOR${JEMALLOC_LIB:+ ($JEMALLOC_LIB)}"
	if [ "$PRELOAD" = 1 ]; then
		echo "extension:  $PKGLIBDIR/parallel_apply.so md5 $(so_md5)... installed $(date -r "$PKGLIBDIR/parallel_apply.so" '+%Y-%m-%d %H:%M:%S')"
	else
		echo "extension:  not installed, not preloaded"
	fi
	echo "command:    $0${ARGS_ORIG[*]+ $(printf '%q ' "${ARGS_ORIG[@]}")}"
	echo "clusters:   run as OS user $RUN_USER, on 127.0.0.1 ports $PUB_PORT (publisher) and $SUB_PORT (subscriber)"
	echo "settings:   scale=$SCALE clients=$CLIENTS jobs=$JOBS txns=$TXNS ($TX_PER_CLIENT per client) script=$SCRIPT sync_commit=$SYNC_COMMIT"
	echo "            shared_buffers=$SHARED_BUFFERS fsync=on max_wal_size=16GB preload=$PRELOAD${QUEUE_MEMORY:+ queue_memory=$QUEUE_MEMORY}"
	echo "            modes=${MODES[*]} repeat=$REPEAT"
	for c in ${SUB_CONF[@]+"${SUB_CONF[@]}"}; do echo "sub-conf:   $c"; done
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

CSV="$OUT/results.csv"
echo "mode,workers,txns,seconds,rate,speedup_vs_builtin,sync_commit,script,scale,clients,allocator,run,status,load_tps,so_md5,first_progress_s,cpu_clusters_pct,cpu_other_pct,applied_seconds,applied_rate,applied_speedup_vs_builtin,walsender_cpu_s,apply_cpu_s,tcp_segments" >"$CSV"
RESULTS_FILE="$WORK/results.lst"	# lines "mode|workers|txns|seconds|rate|run|status|load_tps|so_md5|first_progress_s|cpu_clusters_pct|cpu_other_pct|applied_s|applied_rate|walsender_cpu_s|apply_cpu_s|tcp_segments"
: >"$RESULTS_FILE"
FAILED=0
record() { echo "$1" >>"$RESULTS_FILE"; }

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

# CPU seconds of the processes that carry the stream, each counted from its
# start (ENABLE or attach() starts a new walsender and new apply processes):
# "walsender apply", apply = the built-in apply worker, or leader + workers.
role_cpu() {
	local p cmd ws=0 ap=0
	for p in $(cluster_pids); do
		cmd="$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" || continue
		case "$cmd" in
			*walsender*) ws=$((ws + $(proc_ticks "$p"))) ;;
			*"logical replication worker"*|*"parallel_apply leader"*|*"parallel_apply worker"*) ap=$((ap + $(proc_ticks "$p"))) ;;
		esac
	done
	awk -v w="$ws" -v a="$ap" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f %.2f\n", w / hz, a / hz }'
}

# TCP segments sent by this machine (the replication connection is the only
# TCP traffic of the benchmark; everything else uses the Unix socket).  A
# walsender whose reader keeps up sends each message in a segment of its
# own; one whose reader lags queues them and sends few large segments.
tcp_out_segs() {
	awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "OutSegs") c = i; h = 1 } else { print $c; exit } }' /proc/net/snmp
}

# Cancel the waiter's query on the publisher (its psql then exits).
stop_waiter() {
	pub "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pa_bench_wait'" postgres >/dev/null 2>&1 ||
		kill "$WAITER_PID" 2>/dev/null || true
}

# ------------------------------------------------------------- one mode run --
run_mode() {	# run_mode MODE WORKERS RUN
	local mode="$1" w="$2" run="$3"
	local label="$mode${w:+-$w}-run$run"
	[ "$mode" = builtin ] && label="builtin-run$run"
	local status=ok seconds="" rate="" load_tps="" build first_s="" cpu_ours="" cpu_other="" applied_s="" applied_rate=""
	local cpu_walsender="" cpu_apply="" tcp_segs=""
	build="$(so_md5)"

	log "=== $label: fresh clusters"
	rm -rf "$WORK/pub" "$WORK/sub" "$WORK/pub.log" "$WORK/sub.log"
	mkdir -p "$SOCK"; [ "$(id -u)" = 0 ] && chown "$PG_USER" "$SOCK"
	init_cluster pub "$PUB_PORT" pub
	init_cluster sub "$SUB_PORT" sub
	if [ "$mode" = pa ]; then
		echo "parallel_apply.workers = $w" >>"$WORK/sub/postgresql.conf"
		[ -n "$QUEUE_MEMORY" ] && echo "parallel_apply.queue_memory = '$QUEUE_MEMORY'" >>"$WORK/sub/postgresql.conf"
	fi
	local c
	for c in ${SUB_CONF[@]+"${SUB_CONF[@]}"}; do echo "$c" >>"$WORK/sub/postgresql.conf"; done
	start_cluster pub || { record "$mode|$w|$TXNS|||$run|START_FAILED|"; return 1; }
	start_cluster sub || { record "$mode|$w|$TXNS|||$run|START_FAILED|"; return 1; }

	pub "CREATE DATABASE $DB" postgres
	sub "CREATE DATABASE $DB" postgres
	pub "$WAITER_SQL" postgres

	log "pgbench -i -s $SCALE on the publisher; schema only on the subscriber"
	as_pg "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	as_pg "$PG_BIN/pgbench" -i -q -I dtp -s "$SCALE" -h "$SOCK" -p "$SUB_PORT" "$DB" >>"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	if [ "$PRELOAD" = 1 ]; then
		sub "CREATE EXTENSION parallel_apply"
	fi

	# pgbench_history has no primary key: it is insert-only, which the
	# default replica identity publishes fine.
	pub "$MARKER_PUB_SQL"
	sub "$MARKER_SUB_SQL"
	pub "CREATE PUBLICATION $PUBNAME FOR TABLE ${TABLES// /, }, pa_bench_marker"
	sub "CREATE SUBSCRIPTION $SUBNAME
	       CONNECTION 'host=127.0.0.1 port=$PUB_PORT dbname=$DB user=postgres'
	       PUBLICATION $PUBNAME WITH (copy_data = true)"
	sub "ALTER SUBSCRIPTION $SUBNAME SET (synchronous_commit = '$SYNC_COMMIT')"

	log "initial sync (copy_data = true)"
	local t=0 notready
	while :; do
		notready="$(sub "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		                  WHERE s.subname = '$SUBNAME' AND r.srsubstate <> 'r'")"
		local nrel; nrel="$(sub "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		                  WHERE s.subname = '$SUBNAME'")"
		[ "$notready" = 0 ] && [ "$nrel" = 5 ] && break
		t=$((t + 1))
		if [ "$t" -gt $((SYNC_TIMEOUT * 2)) ]; then
			log "initial sync did not finish in ${SYNC_TIMEOUT}s"; tail -n 30 "$WORK/sub.log" >&2
			record "$mode|$w|$TXNS|||$run|SYNC_TIMEOUT|"; return 1
		fi
		sleep 0.5
	done

	# Stop applying so that the load builds a backlog.
	sub "ALTER SUBSCRIPTION $SUBNAME DISABLE"
	t=0
	while :; do
		local alive active
		alive="$(sub "SELECT count(*) FROM pg_stat_subscription WHERE subname = '$SUBNAME' AND pid IS NOT NULL")"
		active="$(pub "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SUBNAME' AND active")"
		[ "$alive" = 0 ] && [ "$active" = 0 ] && break
		t=$((t + 1)); [ "$t" -gt 600 ] && { log "subscription did not stop"; record "$mode|$w|$TXNS|||$run|DISABLE_FAILED|"; return 1; }
		sleep 0.1
	done
	local t_disabled=$SECONDS
	sub "VACUUM ANALYZE"
	pub "VACUUM ANALYZE"
	pub "CHECKPOINT"; sub "CHECKPOINT"

	log "load: pgbench -n -c $CLIENTS -j $JOBS -t $TX_PER_CLIENT (${PGBENCH_SCRIPT[*]}) on the publisher, subscriber not applying"
	if ! as_pg "$PG_BIN/pgbench" -n -c "$CLIENTS" -j "$JOBS" -t "$TX_PER_CLIENT" "${PGBENCH_SCRIPT[@]}" \
			-h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/load.log" 2>&1; then
		cat "$WORK/load.log" >&2
		record "$mode|$w|$TXNS|||$run|LOAD_FAILED|"; return 1
	fi
	local done_tx
	done_tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/load.log")"
	load_tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/load.log" | tail -n 1)"
	[ -n "$done_tx" ] || { cat "$WORK/load.log" >&2; record "$mode|$w|$TXNS|||$run|LOAD_FAILED|"; return 1; }
	# The marker row ends the backlog (see MARKER_SUB_SQL).
	pub "INSERT INTO pa_bench_marker VALUES ($run, 'end of the backlog')"
	local target
	target="$(pub "SELECT pg_current_wal_lsn()")"
	local backlog_mb
	backlog_mb="$(pub "SELECT round((pg_current_wal_lsn() - confirmed_flush_lsn) / 1048576.0, 1) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")"
	log "load done: $done_tx transactions at $load_tps tx/s; backlog ${backlog_mb} MB of WAL, target LSN $target"
	pub "CHECKPOINT"; sub "CHECKPOINT"

	# PostgreSQL's launcher starts no apply worker within
	# wal_retrieve_retry_interval (5 s) of its previous start; a short load
	# must not make the built-in mode pay for that.  Same wait in every mode.
	while [ $((SECONDS - t_disabled)) -lt 6 ]; do sleep 0.5; done

	# Waiter first, then start applying.
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PUB_PORT" -d postgres \
		-c "SET application_name = 'pa_bench_wait'" \
		-c "SELECT * FROM pa_bench_wait('$SUBNAME', '$target', $TIMEOUT, $POLL)" \
		>"$WORK/wait.out" 2> >(sed -u 's/^psql:[^N]*NOTICE: */            /; s/^NOTICE: */            /' >&2) &
	WAITER_PID=$!
	t=0
	until [ "$(pub "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pa_bench_wait' AND state = 'active'" postgres)" = 1 ]; do
		t=$((t + 1)); [ "$t" -gt 100 ] && { log "waiter did not start"; return 1; }
		sleep 0.05
	done

	local t0 start_err="" cpu0 ours0 segs0
	cpu0="$(machine_busy_ticks)"; ours0="$(cluster_ticks)"; segs0="$(tcp_out_segs)"
	t0="$(date +%s.%N)"
	if [ "$mode" = builtin ]; then
		log "start applying: ALTER SUBSCRIPTION $SUBNAME ENABLE"
		sub "ALTER SUBSCRIPTION $SUBNAME ENABLE" >/dev/null 2>"$WORK/start.err" || start_err=1
	else
		log "start applying: SELECT parallel_apply.attach('$SUBNAME')  [parallel_apply.workers = $w]"
		sub "SELECT parallel_apply.attach('$SUBNAME')" >/dev/null 2>"$WORK/start.err" || start_err=1
	fi
	if [ -n "$start_err" ]; then
		log "starting the apply FAILED:"; cat "$WORK/start.err" >&2
		stop_waiter; wait "$WAITER_PID" 2>/dev/null || true; WAITER_PID=""
		status=START_FAILED
	else
		# Wait for the waiter; meanwhile watch the subscriber log for crashes
		# (a crashed subscriber would otherwise only show as a timeout).
		local crash=""
		local n=0
		while kill -0 "$WAITER_PID" 2>/dev/null; do
			if [ $((n % 5)) = 0 ]; then
				crash="$(grep -m 3 -E 'terminated by signal|PANIC:|TRAP:' "$WORK/sub.log" || true)"
				[ -n "$crash" ] && break
			fi
			n=$((n + 1))
			sleep 0.2
		done
		# CPU accounting: as close to the end of the catch-up as we can see it
		local cpu1 ours1 tcpu1
		cpu1="$(machine_busy_ticks)"; ours1="$(cluster_ticks)"; tcpu1="$(date +%s.%N)"
		read -r cpu_walsender cpu_apply < <(role_cpu)
		tcp_segs=$(($(tcp_out_segs) - segs0))
		if [ -n "$crash" ]; then
			stop_waiter
		fi
		wait "$WAITER_PID" 2>/dev/null || true
		WAITER_PID=""
		local reached applied_at
		reached="$(head -n 1 "$WORK/wait.out" | cut -d'|' -f1)"
		if [ -n "$reached" ]; then
			applied_at="$(sub "SELECT at FROM pa_bench_marker_seen WHERE id = $run")"
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
			local first
			read -r cpu_ours cpu_other < <(awk -v c="$((cpu1 - cpu0))" -v o="$((ours1 - ours0))" \
				-v s="$(awk -v a="$tcpu1" -v b="$t0" 'BEGIN { print a - b }')" \
				-v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { t = s * hz * n; if (t <= 0) t = 1;
				oth = (c - o) / t * 100; if (oth < 0) oth = 0; printf "%.0f %.0f\n", o / t * 100, oth }')
			first="$(head -n 1 "$WORK/wait.out" | cut -d'|' -f4)"
			[ -n "$first" ] && first_s="$(awk -v a="$first" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"
			log "caught up: $done_tx transactions in $seconds s = $rate tx/s (first progress after ${first_s:-?} s); applied on the subscriber after ${applied_s:-?} s = ${applied_rate:-?} tx/s"
			log "CPU during the catch-up: both clusters ${cpu_ours}%, other processes ${cpu_other}% of $NCPU CPUs"
			log "CPU seconds: walsender $cpu_walsender, apply processes $cpu_apply; TCP segments sent: $tcp_segs ($(awk -v a="$tcp_segs" -v n="$done_tx" 'BEGIN { printf "%.2f", a / n }') per transaction)"
			if [ "${cpu_other:-0}" -ge 10 ]; then
				log "WARNING: other processes used ${cpu_other}% of the machine during this measurement: the figure is disturbed"
			fi
		fi
	fi

	# Engine statistics (parallel_apply modes).
	if [ "$mode" = pa ]; then
		{
			echo "# $label"
			as_pg "$PG_BIN/psql" -X -h "$SOCK" -p "$SUB_PORT" -d "$DB" -c "SELECT * FROM parallel_apply.stat_subscription" 2>&1 || true
			as_pg "$PG_BIN/psql" -X -h "$SOCK" -p "$SUB_PORT" -d "$DB" -c "SELECT * FROM parallel_apply.stat_workers" 2>&1 || true
		} >"$OUT/stats/$label.txt"
		sed -n '1,12p' "$OUT/stats/$label.txt" | sed 's/^/            /' >&2
	fi

	# Verify: same content on both sides.
	if [ "$status" = ok ] || [ "$status" = TIMEOUT ] || [ "$status" = CRASHED ]; then
		local herr=""
		# one line per table; the statement's output order is not fixed
		pub "$HASH_SQL" >"$WORK/hash.pub.raw" 2>"$WORK/hash.err" || herr="publisher"
		sub "$HASH_SQL" >"$WORK/hash.sub.raw" 2>>"$WORK/hash.err" || herr="$herr subscriber"
		sort "$WORK/hash.pub.raw" >"$WORK/hash.pub"
		sort "$WORK/hash.sub.raw" >"$WORK/hash.sub"
		if [ -n "$herr" ]; then
			[ "$status" = ok ] && status=VERIFY_FAILED
			log "verify: could not hash the tables on the $herr: $(head -n 2 "$WORK/hash.err" | tr '\n' ' ')"
		elif cmp -s "$WORK/hash.pub" "$WORK/hash.sub" && [ -s "$WORK/hash.pub" ]; then
			log "verify: all 4 tables equal ($(tr '\n' ' ' <"$WORK/hash.pub" | sed 's/|[0-9a-f]\{32\}//g'))"
		elif [ "$status" != ok ]; then
			log "verify: tables differ, as expected after a $status:"
			diff "$WORK/hash.pub" "$WORK/hash.sub" | sed 's/^/            /' >&2 || true
		else
			status=MISMATCH
			{
				echo "############################################################"
				echo "### MISMATCH: subscriber differs from publisher ($label)"
				echo "### table|rows|md5  publisher vs subscriber:"
				diff "$WORK/hash.pub" "$WORK/hash.sub" | sed 's/^/###   /' || true
				echo "############################################################"
			} >&2
		fi
	fi

	# Engine problems: show what the subscriber logged.
	local nerr
	nerr="$(grep -cE '(ERROR|FATAL|PANIC|WARNING):|TRAP:|terminated by signal' "$WORK/sub.log" || true)"
	if [ "${nerr:-0}" -gt 0 ]; then
		log "subscriber log has $nerr ERROR/FATAL/PANIC/WARNING lines; first ones:"
		grep -E '(ERROR|FATAL|PANIC|WARNING):|TRAP:|terminated by signal' "$WORK/sub.log" | head -n 8 | sed 's/^/            /' >&2 || true
	fi

	if [ "$(so_md5)" != "$build" ]; then
		log "WARNING: $PKGLIBDIR/parallel_apply.so was replaced during this mode (make install elsewhere?); its checksum at the start was $build (running servers keep the library they loaded)"
	fi
	record "$mode|$w|$done_tx|$seconds|$rate|$run|$status|$load_tps|$build|$first_s|$cpu_ours|$cpu_other|$applied_s|$applied_rate|$cpu_walsender|$cpu_apply|$tcp_segs"
	stop_cluster sub; stop_cluster pub
	cp "$WORK/sub.log" "$OUT/logs/$label.sub.log" 2>/dev/null || true
	cp "$WORK/pub.log" "$OUT/logs/$label.pub.log" 2>/dev/null || true
	cp "$WORK/load.log" "$OUT/logs/$label.pgbench.log" 2>/dev/null || true
	return 0
}

# Each mode runs in a subshell with errexit on, so that any failing step ends
# that mode (bash ignores errexit inside a function called from "if").
for ((run = 1; run <= REPEAT; run++)); do
	for m in "${MODES[@]}"; do
		mode="${m%%:*}"; w="${m#*:}"; [ "$mode" = builtin ] && w=""
		label="$mode${w:+-$w}-run$run"; [ "$mode" = builtin ] && label="builtin-run$run"
		nrec="$(wc -l <"$RESULTS_FILE")"
		trap - ERR; set +e
		( trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR; set -e; run_mode "$mode" "$w" "$run" )
		rc=$?
		set -e; trap 'err_trap "$LINENO" "$BASH_COMMAND"' ERR
		[ "$rc" -ge 128 ] && exit "$rc"
		if [ "$rc" = 0 ]; then
			last="$(tail -n 1 "$RESULTS_FILE")"
			case "$last" in *"|ok|"*) ;; *) FAILED=1 ;; esac
		else
			FAILED=1
			log "!!! $label did not complete cleanly"
			[ "$(wc -l <"$RESULTS_FILE")" = "$nrec" ] && record "$mode|$w|$TXNS|||$run|FAILED|"
			stop_cluster sub; stop_cluster pub
			cp "$WORK/sub.log" "$OUT/logs/$label.sub.log" 2>/dev/null || true
			cp "$WORK/pub.log" "$OUT/logs/$label.pub.log" 2>/dev/null || true
			echo "--- last lines of the subscriber log ($OUT/logs/$label.sub.log):" >&2
			tail -n 15 "$WORK/sub.log" 2>/dev/null | sed 's/^/            /' >&2 || true
		fi
	done
done

# ------------------------------------------------------------------ report --
builtin_rate() {	# builtin_rate RUN [FIELD] -> rate (or field FIELD) of the built-in mode in that run
	local line
	while IFS= read -r line; do
		IFS='|' read -r -a f <<<"$line"
		if [ "${f[0]}" = builtin ] && [ "${f[5]}" = "$1" ] && [ "${f[6]}" = ok ]; then
			echo "${f[${2:-4}]:-}"; return
		fi
	done <"$RESULTS_FILE"
}

TABLE="$OUT/results.txt"
{
	echo
	echo "parallel_apply catch-up benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs (${CPU_MODEL:-?}), $((MEM_KB / 1024 / 1024)) GiB RAM, $PG_VERSION, malloc: $ALLOCATOR"
	echo "load:    pgbench $SCRIPT, scale $SCALE, $CLIENTS clients, $TXNS transactions; subscription synchronous_commit = $SYNC_COMMIT; fsync = on"
	echo
	printf '%-18s | %7s | %8s | %9s | %9s | %10s | %9s | %10s | %7s | %9s | %8s | %7s | %s\n' mode workers txns seconds "tx/s" "x built-in" "applied s" "x built-in" "start s" "cpu/other" "walsnd s" "segs/tx" status
	printf '%s\n' "-------------------+---------+----------+-----------+-----------+------------+-----------+------------+---------+-----------+----------+---------+--------"
	while IFS='|' read -r m w n s rate run st lt so fp co cx as ar cw ca ts; do
		b="$(builtin_rate "$run")"
		sp=""
		if [ -n "$b" ] && [ -n "$rate" ] && [ "$st" = ok ]; then
			sp="$(awk -v a="$rate" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
		fi
		ba="$(builtin_rate "$run" 13)"
		asp=""
		if [ -n "$ba" ] && [ -n "$ar" ] && [ "$st" = ok ]; then
			asp="$(awk -v a="$ar" -v b="$ba" 'BEGIN { printf "%.2f", a / b }')"
		fi
		name="$m"; [ "$m" = builtin ] && name="built-in" || name="parallel_apply"
		[ "$REPEAT" -gt 1 ] && name="$name #$run"
		cpu="-"; [ -n "$co" ] && cpu="$co%/$cx%"
		spt=""; [ -n "$ts" ] && [ "${n:-0}" -gt 0 ] && spt="$(awk -v a="$ts" -v b="$n" 'BEGIN { printf "%.2f", a / b }')"
		printf '%-18s | %7s | %8s | %9s | %9s | %10s | %9s | %10s | %7s | %9s | %8s | %7s | %s\n' "$name" "${w:--}" "$n" "${s:--}" "${rate:--}" "${sp:+${sp}x}" "${as:--}" "${asp:+${asp}x}" "${fp:--}" "$cpu" "${cw:--}" "${spt:--}" "$st"
		echo "$m,$w,$n,$s,$rate,$sp,$SYNC_COMMIT,$SCRIPT,$SCALE,$CLIENTS,$ALLOCATOR,$run,$st,$lt,$so,$fp,$co,$cx,$as,$ar,$asp,$cw,$ca,$ts" >>"$CSV"
	done <"$RESULTS_FILE"
	echo
	echo "tx/s = pgbench transactions in the backlog / seconds from ENABLE (built-in) or attach()"
	echo "(parallel_apply) until the publisher's slot confirmed_flush_lsn >= pg_current_wal_lsn() after the load;"
	echo "applied s = seconds from ENABLE/attach() until a marker row written after the load was applied on the subscriber"
	echo "(whether or not the publisher has been told yet); its x built-in compares those;"
	echo "start s = seconds from ENABLE/attach() until the slot's confirmed_flush_lsn first moved (start-up included in seconds);"
	echo "cpu/other = CPU used during the catch-up by both clusters / by everything else, in % of all $NCPU CPUs;"
	echo "walsnd s = CPU seconds of the publisher's walsender; segs/tx = TCP segments sent per transaction (see docs/benchmarks.md)."
} | tee "$TABLE"

# Plot: rate vs workers, built-in as a horizontal line.
if command -v gnuplot >/dev/null 2>&1; then
	PA_DAT="$OUT/pa.dat"
	PA_MEAN="$OUT/pa_mean.dat"
	awk -F, 'NR > 1 && $1 == "pa" && $13 == "ok" { print $2, $5 }' "$CSV" >"$PA_DAT"
	awk '{ s[$1] += $2; n[$1]++ } END { for (w in s) printf "%d %.1f\n", w, s[w] / n[w] }' "$PA_DAT" | sort -n >"$PA_MEAN"
	B_AVG="$(awk -F, 'NR > 1 && $1 == "builtin" && $13 == "ok" { s += $5; n++ } END { if (n) printf "%.1f", s / n }' "$CSV")"
	MAXW="$(awk 'BEGIN { m = 1 } $1 > m { m = $1 } END { print m }' "$PA_DAT")"
	if [ -s "$PA_DAT" ] || [ -n "$B_AVG" ]; then
		{
			echo "set terminal pngcairo size 900,600 noenhanced"
			echo "set output '$OUT/rate_vs_workers.png'"
			echo "set title 'Catch-up rate: pgbench $SCRIPT, scale $SCALE, $TXNS txns, sync_commit=$SYNC_COMMIT, $ALLOCATOR, $(nproc) CPUs'"
			echo "set xlabel 'parallel_apply.workers'"
			echo "set ylabel 'transactions applied per second'"
			echo "set grid"
			echo "set key below"
			echo "set bmargin 6"
			echo "set yrange [0:*]"
			echo "set xrange [0:$((MAXW + 1))]"
			echo "set xtics 1"
			plot=""
			if [ -s "$PA_DAT" ]; then
				plot="'$PA_MEAN' using 1:2 with linespoints lw 2 pt 7 title 'parallel_apply'"
				[ "$REPEAT" -gt 1 ] && plot="$plot, '$PA_DAT' using 1:2 with points pt 1 title 'parallel_apply (each run)'"
			fi
			if [ -n "$B_AVG" ]; then
				[ -n "$plot" ] && plot="$plot, "
				plot="$plot $B_AVG with lines dt 2 lw 2 title 'built-in apply ($B_AVG tx/s)'"
			fi
			echo "plot $plot"
		} >"$OUT/plot.gp"
		if gnuplot "$OUT/plot.gp" 2>"$OUT/plot.err"; then
			log "plot: $OUT/rate_vs_workers.png"
		else
			log "gnuplot failed: $(head -n 3 "$OUT/plot.err")"
		fi
	fi
else
	log "gnuplot not installed: no plot (apt-get install gnuplot-nox)"
fi

log "results: $CSV"
if [ "$FAILED" = 1 ]; then
	if grep -q '|MISMATCH|' "$RESULTS_FILE"; then
		echo "########## MISMATCH: the subscriber's tables differ from the publisher's (see above) ##########" >&2
	fi
	log "some modes FAILED (see the status column and $OUT/logs/)"
	exit 2
fi
exit 0
