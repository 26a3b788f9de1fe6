#!/usr/bin/env bash
# shellcheck disable=SC2317  # run_mode, and what only it calls, run through run_isolated (lib.sh)
#
# stream_bench.sh -- streamed transactions (subscription streaming = on,
# publisher logical_decoding_work_mem = 64kB): PostgreSQL's built-in apply
# worker versus parallel_apply, in one run.
#
# Every measurement gets a fresh publisher and a fresh subscriber on
# loopback; the engines alternate which goes first on each repetition
# (builtin pa, pa builtin, ...).  parallel_apply runs with
# parallel_apply.workers = --workers and is started with
# SELECT parallel_apply.attach(...) on the disabled subscription, the
# built-in worker with ALTER SUBSCRIPTION ... ENABLE (as pa_bench.sh does).
#
#   latency  big (id int PRIMARY KEY, v int), --rows rows, loaded identically
#            on both sides (checked equal); the subscription (copy_data =
#            false) is started and caught up.  Then ONE transaction on the
#            publisher, in a single psql call,
#                UPDATE big SET v = v + 1; UPDATE stream_bench_mark SET n = n + 1
#            (the one-row marker last).  The clock starts when that psql call
#            returns (the COMMIT has returned); a procedure on the subscriber
#            polls the marker row every --latency-poll seconds, each poll in
#            a transaction of its own, and notes when it first shows the new
#            value: the whole transaction is visible then ("visible s").  The
#            publisher's UPDATE duration is reported too ("UPDATE s").
#   backlog  t (id bigint PRIMARY KEY, c int, pad text), empty; the
#            subscription (copy_data = false) is created disabled and
#            nothing applies.  pgbench -c --clients -t 1 on the publisher:
#            each client commits one transaction inserting --txn-rows rows
#            into its own key range, concurrently.  Then the apply starts and
#            the clock runs until the publisher's slot confirmed_flush_lsn
#            reaches pg_current_wal_lsn() taken after the load ("seconds",
#            rows/s), as in pa_bench.sh; "applied s" is when lib.sh's marker
#            row written after the load was committed on the subscriber.
#
# Each measurement ends by comparing the tables on both sides (rows, sum and
# ordered md5); parallel_apply's streams_applied, streams_spilled and
# bytes_spilled (parallel_apply.stat_subscription) are shown after each of
# its runs (a note if this build has no such columns).
#
# Run as root (clusters run as the unprivileged user "postgres" via runuser),
# or directly as a non-root user who may run initdb.
#
# Exit status: 0 all measurements ran and every table matched; 2 a mismatch,
# a timeout or a failure in some measurement; 1 usage or setup error.

set -Eeuo pipefail

BENCH_NAME=stream_bench
BENCH_PREFIX=stream_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- defaults --
# (and those of lib.sh: --timeout 3600, --poll 0.1, --shared-buffers 1GB, ...)
MODES_ARG="latency backlog"
ENGINES_ARG="builtin pa"
ROWS=1000000
TXN_ROWS=100000
CLIENTS=8
WORKERS=4
REPEAT=3
SYNC_COMMIT=off
DECODING_MEM=64kB
LATENCY_POLL=0.02
SYNC_TIMEOUT=900
PUB_PORT=54351
SUB_PORT=54352
CLUSTER_CONF=("maintenance_work_mem = 256MB")
MARK="${BENCH_PREFIX}_mark"		# latency: the one-row marker the measured transaction updates last
MARKER="${BENCH_PREFIX}_marker"		# lib.sh's marker (define_marker): readiness, end of the backlog

usage() {
	cat <<EOF
Usage: $0 [--mode latency|backlog|both] [options]

Streamed transactions (streaming = on, publisher logical_decoding_work_mem =
$DECODING_MEM): built-in apply vs parallel_apply, alternating, a fresh
publisher and subscriber on 127.0.0.1 per measurement.

  --mode "LIST"          latency and/or backlog, or both (default "$MODES_ARG")
                         latency: one UPDATE of all --rows rows; seconds from
                         its COMMIT on the publisher until it is visible on
                         the subscriber
                         backlog: --clients concurrent transactions of
                         --txn-rows INSERTs each, built while nothing applies;
                         seconds until the slot confirms them
  --rows N               latency: rows in big (default $ROWS)
  --txn-rows N           backlog: rows each client's transaction inserts
                         (default $TXN_ROWS)
  --clients N            backlog: concurrent transactions (default $CLIENTS)
  --workers N            parallel_apply.workers (default $WORKERS)
  --engines "LIST"       builtin and/or pa (default "$ENGINES_ARG"); the order
                         alternates between repetitions
  --repeat N             repetitions (default $REPEAT)
  --sync-commit on|off   the subscription's synchronous_commit (default $SYNC_COMMIT)
  --decoding-mem SIZE    the publisher's logical_decoding_work_mem (default $DECODING_MEM)
  --latency-poll SEC     latency: subscriber polling interval (default $LATENCY_POLL)
  --out DIR              results directory (default \$TMPDIR/stream_bench-<date>)
  --sub-conf 'N = V'     extra postgresql.conf line for the subscriber (repeatable)
  --shared-buffers S     shared_buffers of both clusters (default $SHARED_BUFFERS)
  --pub-port P           publisher port (default $PUB_PORT)
  --sub-port P           subscriber port (default $SUB_PORT)
  --timeout SEC          give up a measurement after SEC seconds (default $TIMEOUT)
  --poll SEC             backlog: slot polling interval (default $POLL)
  --sync-timeout SEC     give up waiting for the subscription to be ready
                         (caught up) after SEC (default $SYNC_TIMEOUT)
  --pg-bin DIR           PostgreSQL 15 binaries (default $PG_BIN)
  --keep                 keep the temporary directory (data dirs, logs)
  -h, --help             this text

Results: DIR/results.csv, DIR/results.txt (the printed tables),
DIR/machine.txt, DIR/logs/*.log, DIR/stats/*.txt.
EOF
}

script_opt() {	# script_opt ARG...: this script's own options (see parse_args in lib.sh)
	OPT_SHIFT=2
	case "$1" in
		--mode|--modes) MODES_ARG="$2" ;;
		--engines) ENGINES_ARG="$2" ;;
		--rows) ROWS="$2" ;;
		--txn-rows) TXN_ROWS="$2" ;;
		--clients) CLIENTS="$2" ;;
		--workers) WORKERS="$2" ;;
		--repeat) REPEAT="$2" ;;
		--sync-commit) SYNC_COMMIT="$2" ;;
		--decoding-mem) DECODING_MEM="$2" ;;
		--latency-poll) LATENCY_POLL="$2" ;;
		--sync-timeout) SYNC_TIMEOUT="$2" ;;
		*) OPT_SHIFT=0 ;;
	esac
}

parse_args "$@"
check_uints ROWS TXN_ROWS CLIENTS WORKERS REPEAT PUB_PORT SUB_PORT TIMEOUT SYNC_TIMEOUT
if [ "$ROWS" -lt 1 ] || [ "$TXN_ROWS" -lt 1 ] || [ "$CLIENTS" -lt 1 ] || [ "$REPEAT" -lt 1 ]; then
	die "--rows, --txn-rows, --clients and --repeat must be >= 1"
fi
[ "$ROWS" -le 2000000000 ] || die "--rows must be at most 2000000000 (big.id is an int)"
if [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt 32 ]; then die "--workers must be between 1 and 32"; fi
case "$SYNC_COMMIT" in on|off) ;; *) die "--sync-commit must be on or off" ;; esac
[[ "$LATENCY_POLL" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--latency-poll must be a number of seconds"
[[ "$DECODING_MEM" =~ ^[0-9]+[kMG]?B?$ ]] || die "--decoding-mem must be a size such as 64kB"
[ "$PUB_PORT" != "$SUB_PORT" ] || die "--pub-port and --sub-port must differ"
case "$MODES_ARG" in both|all) MODES_ARG="latency backlog" ;; esac
MODE_LIST=()
for m in $MODES_ARG; do
	case "$m" in latency|backlog) ;; *) die "--mode: unknown mode '$m' (latency, backlog, both)" ;; esac
	case " ${MODE_LIST[*]-} " in *" $m "*) ;; *) MODE_LIST+=("$m") ;; esac
done
[ "${#MODE_LIST[@]}" -gt 0 ] || die "--mode: nothing to run"
ENGINE_LIST=()
for e in $ENGINES_ARG; do
	case "$e" in builtin|pa) ;; *) die "--engines: unknown engine '$e' (builtin, pa)" ;; esac
	case " ${ENGINE_LIST[*]-} " in *" $e "*) ;; *) ENGINE_LIST+=("$e") ;; esac
done
[ "${#ENGINE_LIST[@]}" -gt 0 ] || die "--engines: nothing to run"
NEED_EXT=0
case " ${ENGINE_LIST[*]} " in *" pa "*) NEED_EXT=1 ;; esac
JOBS=2; [ "$CLIENTS" -lt 2 ] && JOBS=1
BACKLOG_ROWS=$((CLIENTS * TXN_ROWS))

# -------------------------------------------------------------- environment --
bench_env
check_ports
make_dirs
set_traps

# ------------------------------------------------------------------ helpers --
# "rows|sum|md5" of a table with an integer key "id" and an integer column:
# rows hashed in id order inside groups of 100,000 ids, groups in order, so
# no string_agg grows past ~100k rows.
hash_sql() {	# hash_sql TABLE SUM_COLUMN
	printf '%s\n' "SELECT coalesce(sum(n), 0) || '|' || coalesce(sum(s), 0) || '|' || coalesce(md5(string_agg(h, '' ORDER BY g)), '-')
  FROM (SELECT id / 100000 AS g, count(*) AS n, sum($2) AS s, md5(string_agg(x::text, E'\\n' ORDER BY id)) AS h
          FROM $1 x GROUP BY 1) y"
}
BIG_HASH_SQL="SELECT ($(hash_sql big v)) || '|mark ' || coalesce((SELECT string_agg(id || '=' || n, ',' ORDER BY id) FROM $MARK), '-')"
T_HASH_SQL="$(hash_sql t c)"

define_waiter "MB to confirm" "round(coalesce(p_target - c, 0) / 1048576.0, 1)"
define_marker

# latency: the subscriber's poller, one session (no psql forked per poll).
# Each poll reads the marker in a transaction of its own (COMMIT in the
# loop), so the poller holds no snapshot across the apply it watches.
# Returns the wall-clock time (epoch) at which the marker first showed
# p_n, or NULL on timeout, and the number of polls.
POLLER_SQL="
CREATE PROCEDURE ${BENCH_PREFIX}_poll(p_n int, p_timeout float8, p_poll float8,
                                      INOUT seen float8 DEFAULT NULL, INOUT polls int DEFAULT 0)
LANGUAGE plpgsql AS \$\$
DECLARE
    t_start timestamptz := clock_timestamp();
    v int;
BEGIN
    LOOP
        SELECT m.n INTO v FROM public.$MARK m WHERE m.id = 1;
        polls := polls + 1;
        IF v >= p_n THEN
            seen := extract(epoch FROM clock_timestamp());
            RETURN;
        END IF;
        IF clock_timestamp() - t_start > make_interval(secs => p_timeout) THEN
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(p_poll);
    END LOOP;
END
\$\$;"

# backlog: one transaction per pgbench client (-t 1), into its own key range.
LOAD_FILE="$WORK/insert_range.sql"
cat >"$LOAD_FILE" <<EOF
INSERT INTO t SELECT CAST(:client_id AS bigint) * $TXN_ROWS + g, CAST(g % 1000 AS int), md5(CAST(g AS text)) FROM generate_series(1, $TXN_ROWS) AS g;
EOF
chmod 644 "$LOAD_FILE"

# ------------------------------------------------------------- machine info --
machine_info "" \
	"settings:   modes=${MODE_LIST[*]} engines=${ENGINE_LIST[*]} (alternating) repeat=$REPEAT" \
	"            latency: rows=$ROWS latency_poll=${LATENCY_POLL}s; backlog: clients=$CLIENTS txn_rows=$TXN_ROWS ($BACKLOG_ROWS rows)" \
	"            publisher logical_decoding_work_mem=$DECODING_MEM; subscription streaming=on synchronous_commit=$SYNC_COMMIT" \
	"            parallel_apply.workers=$WORKERS shared_buffers=$SHARED_BUFFERS fsync=on preload=$PRELOAD"

init_results "mode,engine,workers,run,rows,seconds,ratio_vs_builtin,rows_per_s,update_seconds,applied_seconds,first_progress_s,load_seconds,backlog_mb,cpu_clusters_pct,cpu_other_pct,streams_applied,streams_spilled,bytes_spilled,pub_stream_txns,pub_stream_bytes,so_md5,status"
# RESULTS_FILE: "mode|engine|run|rows|seconds|rate|update_s|applied_s|first_s|load_s|backlog_mb|cpu_ours|cpu_other|streams_applied|streams_spilled|bytes_spilled|pub_stream_txns|pub_stream_bytes|so_md5|status"

# fail_line MODE ENGINE RUN ROWS SO_MD5 STATUS -> a results line without figures
fail_line() { printf '%s|%s|%s|%s|||||||||||||||%s|%s\n' "$1" "$2" "$3" "$4" "$5" "$6"; }

mode_rows() { if [ "$1" = latency ]; then echo "$ROWS"; else echo "$BACKLOG_ROWS"; fi; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }	# elapsed LATER EARLIER

# create_subscription TABLE...: the publication of TABLEs and the disabled
# subscription (copy_data = false, streaming = on); 1 unless every table is
# ready ('r').
create_subscription() {
	pub "CREATE PUBLICATION $PUBNAME FOR TABLE $(printf '%s, ' "$@" | sed 's/, $//')"
	sub "CREATE SUBSCRIPTION $SUBNAME
	       CONNECTION 'host=127.0.0.1 port=$PUB_PORT dbname=$DB user=postgres'
	       PUBLICATION $PUBNAME
	       WITH (copy_data = false, enabled = false, streaming = on, synchronous_commit = '$SYNC_COMMIT')" \
		2>"$WORK/create_sub.err" || { cat "$WORK/create_sub.err" >&2; return 1; }
	local ready
	ready="$(sub "SELECT count(*) FILTER (WHERE r.srsubstate <> 'r') || '/' || count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = '$SUBNAME'")"
	[ "$ready" = "0/$#" ] || { log "subscription tables not ready: $ready (not ready/all)"; return 1; }
}

# wait_ready: the running apply has caught up: lib.sh's marker row 0, written
# now on the publisher, is on the subscriber and the slot has confirmed it.
wait_ready() {
	local lsn t=0
	pub "INSERT INTO $MARKER VALUES (0, 'apply running')"
	lsn="$(pub "SELECT pg_current_wal_lsn()")"
	until [ "$(sub "SELECT count(*) FROM $MARKER WHERE id = 0")" = 1 ] &&
		[ "$(pub "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$lsn'), false) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")" = t ]; do
		t=$((t + 1))
		if [ "$t" -gt $((SYNC_TIMEOUT * 10)) ]; then
			log "the subscription did not catch up within ${SYNC_TIMEOUT}s"; tail -n 20 "$WORK/sub.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

# start_poller N: the latency poller (a psql in the background, WAITER_PID,
# so that lib.sh's watch_catch_up and cleanup handle it) until the marker
# shows N; its result goes to WORK/poll.out.  1 if it does not start.
start_poller() {
	local p="${BENCH_PREFIX}_poll" t=0
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$SUB_PORT" -d "$DB" \
		-c "SET application_name = '$p'" \
		-c "CALL $p($1, $TIMEOUT, $LATENCY_POLL)" >"$WORK/poll.out" 2>"$WORK/poll.err" &
	WAITER_PID=$!
	until [ "$(sub "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$p' AND state = 'active'")" = 1 ]; do
		t=$((t + 1)); [ "$t" -gt 100 ] && { log "poller did not start: $(head -n 2 "$WORK/poll.err")"; return 1; }
		sleep 0.05
	done
}

# wait_launcher_interval T: PostgreSQL's launcher starts no apply worker
# within wal_retrieve_retry_interval (5 s) of its previous pass, which was
# when the subscriber started (at SECONDS = T); the built-in engine must not
# pay for that in a measurement, so every engine waits until 6 s have passed.
wait_launcher_interval() {
	while [ $((SECONDS - $1)) -lt 6 ]; do sleep 0.5; done
}

# stream_stats: parallel_apply's streams_applied, streams_spilled and
# bytes_spilled (sets st_applied, st_spilled, st_bytes), shown on stderr; a
# note if the view has no such columns in this build.
stream_stats() {
	local row
	if row="$(sub "SELECT streams_applied || '|' || streams_spilled || '|' || bytes_spilled FROM parallel_apply.stat_subscription WHERE subname = '$SUBNAME'" 2>"$WORK/stream_stats.err")"; then
		if [ -n "$row" ]; then
			IFS='|' read -r st_applied st_spilled st_bytes <<<"$row"
			log "parallel_apply.stat_subscription: streams_applied $st_applied | streams_spilled $st_spilled | bytes_spilled $st_bytes"
		else
			log "NOTE: parallel_apply.stat_subscription has no row for $SUBNAME"
		fi
	else
		log "NOTE: SELECT streams_applied, streams_spilled, bytes_spilled FROM parallel_apply.stat_subscription failed (not in this build?): $(head -n 1 "$WORK/stream_stats.err")"
	fi
}

# slot_stream_stats: the publisher's pg_stat_replication_slots for the slot
# (sets ps_txns and ps_bytes, streamed transactions and bytes), shown on
# stderr, with a warning if nothing was streamed: then the transactions were
# not streamed and the run measures something else.
slot_stream_stats() {
	local row ps_count ps_spill
	row="$(pub "SELECT stream_txns || '|' || stream_count || '|' || stream_bytes || '|' || spill_txns FROM pg_stat_replication_slots WHERE slot_name = '$SUBNAME'" 2>/dev/null)" || row=""
	IFS='|' read -r ps_txns ps_count ps_bytes ps_spill <<<"$row"
	log "publisher slot: stream_txns ${ps_txns:-?} stream_count ${ps_count:-?} stream_bytes ${ps_bytes:-?} spill_txns ${ps_spill:-?} (pg_stat_replication_slots)"
	if [ "${ps_txns:-0}" = 0 ]; then
		log "WARNING: the publisher streamed no transaction (logical_decoding_work_mem = $DECODING_MEM): this run measured no streamed transaction"
	fi
}

# verify_table LABEL WHAT SQL: compares SQL's result ("rows|sum|md5 ...") on
# both sides; sets status to VERIFY_FAILED or MISMATCH as pa_bench.sh does.
verify_table() {
	local label="$1" what="$2" sql="$3" hp="" hs="" herr=""
	hp="$(pub "$sql" 2>"$WORK/hash.err")" || herr="publisher"
	hs="$(sub "$sql" 2>>"$WORK/hash.err")" || herr="$herr subscriber"
	if [ -n "$herr" ]; then
		if [ "$status" = ok ]; then status=VERIFY_FAILED; fi
		log "verify: could not hash $what on the $herr: $(head -n 2 "$WORK/hash.err" | tr '\n' ' ')"
	elif [ "$hp" = "$hs" ] && [ -n "$hp" ]; then
		log "verify: $what equal on both sides (rows|sum|md5 $hp)"
	elif [ "$status" != ok ]; then
		log "verify: $what differs, as expected after a $status: publisher $hp, subscriber $hs"
	else
		status=MISMATCH
		mismatch_banner "$label" "### rows|sum|md5 publisher:  $hp" "### rows|sum|md5 subscriber: $hs"
	fi
}

# ------------------------------------------------------------- one mode run --
run_mode() {	# run_mode MODE ENGINE RUN
	local mode="$1" engine="$2" run="$3"
	local label="$mode-$engine-run$run" nrows
	# shellcheck disable=SC2034  # applied_rate: set by catch_up (lib.sh), not reported here
	local status=ok seconds="" rate="" update_s="" applied_s="" applied_rate="" first_s="" load_s="" backlog_mb=""
	local cpu_ours="" cpu_other="" st_applied="" st_spilled="" st_bytes="" ps_txns="" ps_bytes="" build
	build="$(so_md5)"
	nrows="$(mode_rows "$mode")"

	log "=== $label: fresh clusters"
	if [ "$engine" = pa ]; then fresh_clusters "parallel_apply.workers = $WORKERS"; else fresh_clusters; fi
	echo "logical_decoding_work_mem = '$DECODING_MEM'" >>"$WORK/pub/postgresql.conf"
	start_clusters || { record "$(fail_line "$mode" "$engine" "$run" "$nrows" "$build" START_FAILED)"; return 1; }
	local t_sub_started=$SECONDS
	create_databases
	if [ "$PRELOAD" = 1 ]; then sub "CREATE EXTENSION parallel_apply"; fi
	pub "$MARKER_PUB_SQL"
	sub "$MARKER_SUB_SQL"

	if [ "$mode" = latency ]; then
		run_latency
	else
		run_backlog
	fi

	if verifies; then slot_stream_stats; fi
	if [ "$engine" = pa ]; then
		stream_stats
		engine_stats "$label" >"$OUT/stats/$label.txt"
	fi

	log_sub_problems ""
	check_lib_change "$build"
	record "$mode|$engine|$run|$nrows|$seconds|$rate|$update_s|$applied_s|$first_s|$load_s|$backlog_mb|$cpu_ours|$cpu_other|$st_applied|$st_spilled|$st_bytes|$ps_txns|$ps_bytes|$build|$status"
	stop_and_save "$label"
	if [ "$mode" = backlog ]; then cp "$WORK/load.log" "$OUT/logs/$label.pgbench.log" 2>/dev/null || true; fi
	return 0
}

# run_latency: run_mode's latency part (its locals: dynamic scope).
run_latency() {
	local t0s=$SECONDS
	log "load: big, $ROWS rows on both sides (generate_series)"
	local table_sql="CREATE TABLE big (id int PRIMARY KEY, v int); CREATE TABLE $MARK (id int PRIMARY KEY, n int)"
	local load_sql="INSERT INTO big SELECT i, i % 1000 FROM generate_series(1, $ROWS) AS i; INSERT INTO $MARK VALUES (1, 0)"
	pub "$table_sql"; sub "$table_sql"
	pub "$load_sql" & local lp=$!
	sub "$load_sql"
	wait "$lp"
	pub "VACUUM ANALYZE big"; sub "VACUUM ANALYZE big"
	sub "$POLLER_SQL"
	local h0p h0s
	h0p="$(pub "$BIG_HASH_SQL")"; h0s="$(sub "$BIG_HASH_SQL")"
	if [ "$h0p" != "$h0s" ]; then
		log "initial tables differ: publisher $h0p, subscriber $h0s"; status=SETUP_FAILED; return 0
	fi
	log "tables loaded and equal ($h0p) in $((SECONDS - t0s)) s"
	create_subscription big "$MARK" "$MARKER" || { status=SETUP_FAILED; return 0; }

	start_apply "$engine" "[parallel_apply.workers = $WORKERS]" || { status=START_FAILED; return 0; }
	wait_ready || { status=SYNC_TIMEOUT; return 0; }
	pub "CHECKPOINT"; sub "CHECKPOINT"
	log "apply running and caught up; the measured transaction: UPDATE big SET v = v + 1 ($ROWS rows), then the marker"

	start_poller 1 || { status=POLLER_FAILED; return 0; }
	local t0 t1 cpu0 ours0 cpu1 ours1 tcpu1 crash="" seen=""
	cpu0="$(machine_busy_ticks)"; ours0="$(cluster_ticks)"
	t0="$(now)"
	pub "BEGIN; UPDATE big SET v = v + 1; UPDATE $MARK SET n = n + 1 WHERE id = 1; COMMIT" >/dev/null
	t1="$(now)"
	update_s="$(elapsed "$t1" "$t0")"
	log "publisher: UPDATE committed after $update_s s; polling the subscriber every ${LATENCY_POLL}s"
	watch_catch_up
	cpu1="$(machine_busy_ticks)"; ours1="$(cluster_ticks)"; tcpu1="$(now)"
	if [ -n "$crash" ]; then kill "$WAITER_PID" 2>/dev/null || true; fi
	wait "$WAITER_PID" 2>/dev/null || true
	WAITER_PID=""
	seen="$(head -n 1 "$WORK/poll.out" | cut -d'|' -f1)"

	if [ -n "$crash" ]; then
		status=CRASHED
		log "CRASH: the subscriber crashed during the measurement; the run is void:"
		printf '            %s\n' "${crash//$'\n'/$'\n'            }" >&2
	elif [ -z "$seen" ]; then
		status=TIMEOUT
		log "TIMEOUT: the transaction was not visible on the subscriber after ${TIMEOUT}s ($(head -n 2 "$WORK/poll.err" | tr '\n' ' '))"
	else
		seconds="$(elapsed "$seen" "$t1")"
		read -r cpu_ours cpu_other < <(awk -v c="$((cpu1 - cpu0))" -v o="$((ours1 - ours0))" \
			-v s="$(elapsed "$tcpu1" "$t0")" -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { t = s * hz * n; if (t <= 0) t = 1;
			oth = (c - o) / t * 100; if (oth < 0) oth = 0; printf "%.0f %.0f\n", o / t * 100, oth }')
		log "visible on the subscriber $seconds s after the publisher's COMMIT returned ($(cut -d'|' -f2 "$WORK/poll.out" | head -n 1) polls; UPDATE took $update_s s)"
		log_cpu ""
	fi
	if verifies; then verify_table "$label" "big and $MARK" "$BIG_HASH_SQL"; fi
}

# run_backlog: run_mode's backlog part (its locals: dynamic scope).
run_backlog() {
	local table_sql="CREATE TABLE t (id bigint PRIMARY KEY, c int, pad text)"
	pub "$table_sql"; sub "$table_sql"
	create_subscription t "$MARKER" || { status=SETUP_FAILED; return 0; }
	pub "CHECKPOINT"; sub "CHECKPOINT"

	log "load: pgbench -n -c $CLIENTS -j $JOBS -t 1: $CLIENTS concurrent transactions of $TXN_ROWS INSERTs each, subscription not applying"
	# shellcheck disable=SC2034  # load_tps: set by run_load (lib.sh); load_s is reported instead
	local done_tx="" load_tps="" l0 target
	l0="$(now)"
	run_load 1 -f "$LOAD_FILE" || { status=LOAD_FAILED; return 0; }
	load_s="$(elapsed "$(now)" "$l0")"
	[ "$done_tx" = "$CLIENTS" ] || { cat "$WORK/load.log" >&2; status=LOAD_FAILED; return 0; }
	end_backlog "$run"
	backlog_mb="$(pub "SELECT round((pg_current_wal_lsn() - confirmed_flush_lsn) / 1048576.0, 1) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")"
	log "load done: $BACKLOG_ROWS rows in $CLIENTS transactions in $load_s s; backlog $backlog_mb MB of WAL, target LSN $target"
	pub "CHECKPOINT"; sub "CHECKPOINT"
	wait_launcher_interval "$t_sub_started"

	start_waiter "$target" || { status=WAITER_FAILED; return 0; }
	done_tx="$BACKLOG_ROWS"		# catch_up's rate: rows/s
	catch_up "$engine" "[parallel_apply.workers = $WORKERS]" "$run"
	if [ "$status" = ok ]; then
		log "caught up: $BACKLOG_ROWS rows in $seconds s = $rate rows/s (first progress after ${first_s:-?} s); applied on the subscriber after ${applied_s:-?} s"
		log_cpu ""
	fi
	if verifies; then verify_table "$label" t "$T_HASH_SQL"; fi
}

# Each measurement runs in a subshell with errexit on (run_isolated in lib.sh).
for mode in "${MODE_LIST[@]}"; do
	for ((run = 1; run <= REPEAT; run++)); do
		order=("${ENGINE_LIST[@]}")
		if [ $((run % 2)) = 0 ] && [ "${#ENGINE_LIST[@]}" = 2 ]; then
			order=("${ENGINE_LIST[1]}" "${ENGINE_LIST[0]}")
		fi
		for engine in "${order[@]}"; do
			run_isolated "$mode-$engine-run$run" '*|ok' run_mode "$mode" "$engine" "$run"
			if [ "$UNRECORDED" = 1 ]; then record "$(fail_line "$mode" "$engine" "$run" "$(mode_rows "$mode")" "$(so_md5)" FAILED)"; fi
		done
	done
done

# ------------------------------------------------------------------ report --
# field MODE ENGINE RUN N -> field N (1-based) of that ok results line
field() {
	awk -F'|' -v m="$1" -v e="$2" -v r="$3" -v n="$4" '$1 == m && $2 == e && $3 == r && $NF == "ok" { print $n; exit }' "$RESULTS_FILE"
}
# values MODE ENGINE N -> field N of that engine's ok lines, one a line
values() {
	awk -F'|' -v m="$1" -v e="$2" -v n="$3" '$1 == m && $2 == e && $NF == "ok" && $n != "" { print $n }' "$RESULTS_FILE"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.3f", a / b }'; }
engine_name() { if [ "$1" = pa ]; then echo "parallel_apply"; else echo "built-in"; fi; }

TABLE="$OUT/results.txt"
{
	echo
	echo "streamed transactions benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs (${CPU_MODEL:-?}), $((MEM_KB / 1024 / 1024)) GiB RAM, $PG_VERSION; parallel_apply.so $(so_md5)"
	echo "streaming = on, publisher logical_decoding_work_mem = $DECODING_MEM, subscription synchronous_commit = $SYNC_COMMIT,"
	echo "parallel_apply.workers = $WORKERS; engines alternate which goes first on each repetition; fsync = on"
	for mode in "${MODE_LIST[@]}"; do
		echo
		if [ "$mode" = latency ]; then
			echo "latency: one transaction UPDATE big SET v = v + 1 of $ROWS rows (+ a one-row marker, last)"
			printf '%-14s | %3s | %10s | %10s | %9s | %9s | %8s | %8s | %12s | %s\n' engine run "visible s" "s/built-in" "UPDATE s" "cpu/other" "streams" "spilled" "spilled kB" status
			printf '%s\n' "---------------+-----+------------+------------+-----------+-----------+----------+----------+--------------+--------"
		else
			echo "backlog: $CLIENTS concurrent transactions of $TXN_ROWS INSERTs ($BACKLOG_ROWS rows), applied after the load"
			printf '%-14s | %3s | %10s | %10s | %10s | %9s | %7s | %9s | %8s | %8s | %12s | %s\n' engine run seconds "s/built-in" "rows/s" "applied s" "start s" "cpu/other" "streams" "spilled" "spilled kB" status
			printf '%s\n' "---------------+-----+------------+------------+------------+-----------+---------+-----------+----------+----------+--------------+--------"
		fi
		while IFS='|' read -r m e run n s rate us as fp ls bm co cx sa ss sb pt pb so st; do
			[ "$m" = "$mode" ] || continue
			b="$(field "$mode" builtin "$run" 5)"
			sp=""; [ "$st" = ok ] && sp="$(ratio "$s" "$b")"
			cpu="-"; [ -n "$co" ] && cpu="$co%/$cx%"
			kb=""; [ -n "$sb" ] && kb="$(awk -v b="$sb" 'BEGIN { printf "%.0f", b / 1024 }')"
			if [ "$mode" = latency ]; then
				printf '%-14s | %3s | %10s | %10s | %9s | %9s | %8s | %8s | %12s | %s\n' "$(engine_name "$e")" "$run" "${s:--}" "${sp:--}" "${us:--}" "$cpu" "${sa:--}" "${ss:--}" "${kb:--}" "$st"
			else
				printf '%-14s | %3s | %10s | %10s | %10s | %9s | %7s | %9s | %8s | %8s | %12s | %s\n' "$(engine_name "$e")" "$run" "${s:--}" "${sp:--}" "${rate:--}" "${as:--}" "${fp:--}" "$cpu" "${sa:--}" "${ss:--}" "${kb:--}" "$st"
			fi
			w=""; [ "$e" = pa ] && w="$WORKERS"
			echo "$m,$e,$w,$run,$n,$s,$sp,$rate,$us,$as,$fp,$ls,$bm,$co,$cx,$sa,$ss,$sb,$pt,$pb,$so,$st" >>"$CSV"
		done <"$RESULTS_FILE"
		echo
		echo "medians over the repetitions that ended ok:"
		printf '%-14s | %4s | %10s | %10s | %10s | %10s | %s\n' engine runs "median s" "min s" "max s" "s/built-in" "$([ "$mode" = latency ] && echo "median UPDATE s" || echo "median rows/s")"
		printf '%s\n' "---------------+------+------------+------------+------------+------------+----------------"
		bmed="$(values "$mode" builtin 5 | median || true)"
		for e in "${ENGINE_LIST[@]}"; do
			vals="$(values "$mode" "$e" 5)"
			cnt="$(printf '%s' "$vals" | grep -c . || true)"
			med="$(printf '%s\n' "$vals" | grep . | median || true)"
			mn="$(printf '%s\n' "$vals" | grep . | sort -g | head -n 1 || true)"
			mx="$(printf '%s\n' "$vals" | grep . | sort -g | tail -n 1 || true)"
			if [ "$mode" = latency ]; then extra="$(values "$mode" "$e" 7 | median || true)"; else extra="$(values "$mode" "$e" 6 | median || true)"; fi
			r="$(ratio "$med" "$bmed")"
			printf '%-14s | %4s | %10s | %10s | %10s | %10s | %s\n' "$(engine_name "$e")" "$cnt" "${med:--}" "${mn:--}" "${mx:--}" "${r:--}" "${extra:--}"
		done
	done
	echo
	case " ${MODE_LIST[*]} " in *" latency "*)
		echo "latency: visible s = from the return of the publisher's COMMIT (its psql call) until a poll on the"
		echo "subscriber (every ${LATENCY_POLL}s) saw the marker the transaction updated last, i.e. the whole transaction;"
		echo "UPDATE s = the publisher's transaction, psql call included."
	esac
	case " ${MODE_LIST[*]} " in *" backlog "*)
		echo "backlog: seconds = from ENABLE (built-in) or attach() (parallel_apply) until the publisher's slot"
		echo "confirmed_flush_lsn >= pg_current_wal_lsn() after the load; rows/s = rows in the backlog / seconds;"
		echo "applied s = until lib.sh's marker row written after the load was committed on the subscriber;"
		echo "start s = until the slot first moved."
	esac
	echo "s/built-in = seconds / the built-in engine's seconds in the same repetition (medians: median / median;"
	echo "below 1 is faster); cpu/other = CPU used by both clusters / by everything else, in % of all $NCPU CPUs;"
	echo "streams, spilled, spilled kB = parallel_apply.stat_subscription streams_applied, streams_spilled, bytes_spilled."
} | tee "$TABLE"

bench_exit '|MISMATCH$' "tables differ"
