#!/usr/bin/env bash
# shellcheck disable=SC2317  # run_mode, and what only it calls, run through run_isolated (lib.sh)
#
# sustained_bench.sh -- lag under a sustained load: PostgreSQL's built-in
# logical-replication apply worker versus parallel_apply, while the
# publisher runs pgbench at a fixed rate (not a backlog: the subscription
# applies live).
#
# For every rate of --rates, every repetition and every engine of --engines
# (the order alternates from one rate or repetition to the next: builtin pa,
# pa builtin, ...) the script builds a fresh publisher and a fresh subscriber
# on loopback and sets them up as pa_bench.sh does: pgbench -i -s --scale on
# the publisher, the same tables empty on the subscriber, CREATE SUBSCRIPTION
# ... WITH (copy_data = true), the initial sync, then ALTER SUBSCRIPTION ...
# DISABLE.  The apply is started (built-in: ALTER SUBSCRIPTION ... ENABLE;
# parallel_apply: SELECT parallel_apply.attach(...) on the disabled
# subscription, parallel_apply.workers = --workers) and the script waits
# until it has caught up.  Then, on the publisher,
#
#     pgbench -n -b tpcb-like -c --clients -j 2 -R RATE -T --duration
#
# and, beside it, a ticker: one session (a procedure, COMMIT after each
# update) that sets the one row of sustained_bench_tick, published with the
# pgbench tables, to clock_timestamp() every --tick seconds (1 s: one tiny
# transaction a second, next to hundreds of pgbench ones), at every
# multiple of --tick since the epoch.  Once a second, half a tick after a
# tick, the script samples
#
#   byte lag   on the publisher: pg_current_wal_lsn() - confirmed_flush_lsn
#              of the subscription's slot (bytes);
#   time lag   on the subscriber: clock_timestamp() - the tick value applied
#              there (seconds; both clusters share the host's clock).  Both
#              engines commit in the publisher's commit order, so an applied
#              tick means every transaction before it is applied too.  The
#              resolution is the tick interval: a subscriber that keeps up
#              reads half a tick plus its apply delay, in every measurement
#              (the samples keep a fixed phase to the ticks);
#   (parallel_apply only, also: its own apply_lag and pending_bytes from
#   parallel_apply.stat_subscription, when the installed build has them)
#
# into DIR/samples.csv, during the load ("load") and after it ("drain")
# until the slot has confirmed the publisher's WAL position taken when
# pgbench ended, or for --drain-timeout seconds.  Per measurement: p50, p99
# and max of the time lag over the load (the samples taken while pgbench
# ran), pgbench's achieved tx/s, "kept up" (p99 < --keep-up-p99 s), and the
# drain time (pgbench's end until the slot confirmed that position; polled
# every --poll s by lib.sh's waiter, which goes on after --drain-timeout,
# unsampled, up to --timeout, so that the tables can be compared).  The
# ticker is then stopped, a last marker row applied (lib.sh's marker
# table), and the four pgbench tables (and the tick row) compared on both sides (row counts and ordered
# md5, as pa_bench.sh does): a difference prints MISMATCH.
#
# At the end: a table per rate with both engines, the highest rate each
# engine kept up with (at every repetition), their ratio (pa/built-in), and
# DIR/time_lag.png (gnuplot): the time lag against time, one line per
# engine (and repetition), one panel per rate.
#
# Run as root (clusters run as the unprivileged user "postgres" via runuser),
# or directly as a non-root user who may run initdb.
#
# Exit status: 0 all measurements ran and every table matched (whether or
# not an engine kept up is a result, not a failure); 2 a mismatch, a timeout
# or a failure in some measurement; 1 usage or setup error.

set -Eeuo pipefail

BENCH_NAME=sustained_bench
BENCH_PREFIX=sustained_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- defaults --
# (and those of lib.sh: --timeout 3600, --poll 0.1, --shared-buffers 1GB, ...)
RATES="500 1000 1500 2000 3000"
DURATION=60
ENGINES_ARG="builtin pa"
WORKERS=4
CLIENTS=8
SCALE=10
SYNC_COMMIT=off		# the subscription's, as pa_bench.sh
PUB_SYNC_COMMIT=on	# the publisher's: PostgreSQL's default, which pa_bench.sh keeps
PROTOCOL=simple		# pgbench -M: prepared lets a small publisher reach higher rates
KEEP_UP_P99=5
DRAIN_TIMEOUT=60
REPEAT=1
TICK=1
SYNC_TIMEOUT=900
QUICK=0
PUB_PORT=54361
SUB_PORT=54362
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
TICK_TABLE="${BENCH_PREFIX}_tick"	# the one-row ticker table
MARKER="${BENCH_PREFIX}_marker"		# lib.sh's marker (define_marker): readiness, the final catch-up
# --quick: these unless given
QUICK_RATES="200 400"
QUICK_DURATION=10
QUICK_DRAIN_TIMEOUT=20
QUICK_SCALE=1
GIVEN=" "

usage() {
	cat <<EOF
Usage: $0 [options]

Lag of a logical-replication subscriber under a sustained pgbench load at
fixed rates: built-in apply vs parallel_apply, alternating, a fresh
publisher and subscriber on 127.0.0.1 per measurement.

  --rates "LIST"         pgbench -R rates, tx/s (default "$RATES")
  --duration SEC         pgbench -T: seconds of load per measurement (default $DURATION)
  --engines "LIST"       builtin and/or pa (default "$ENGINES_ARG"); the order
                         alternates from one rate or repetition to the next
  --workers N            parallel_apply.workers (default $WORKERS)
  --clients N            pgbench clients on the publisher (default $CLIENTS, -j 2)
  --scale N              pgbench scale factor (default $SCALE)
  --keep-up-p99 SEC      an engine kept up if the p99 of the time lag over the
                         load is below SEC (default $KEEP_UP_P99)
  --drain-timeout SEC    sample for at most SEC after the load (default
                         $DRAIN_TIMEOUT); the catch-up is still awaited (up to
                         --timeout) so that the tables can be compared
  --repeat N             repetitions (default $REPEAT)
  --tick SEC             the publisher's ticker interval, the time lag's
                         resolution (default $TICK)
  --sync-commit on|off   the subscription's synchronous_commit (default $SYNC_COMMIT)
  --pub-sync-commit on|off
                         the publisher's synchronous_commit (default $PUB_SYNC_COMMIT)
  --protocol P           pgbench -M P: simple, extended or prepared (default
                         $PROTOCOL; prepared costs the publisher less per
                         transaction, so it reaches higher rates)
  --quick                a smoke run: --rates "$QUICK_RATES" --duration $QUICK_DURATION
                         --drain-timeout $QUICK_DRAIN_TIMEOUT --scale $QUICK_SCALE, each unless given
                         (about 2 minutes with both engines)
  --out DIR              results directory (default \$TMPDIR/sustained_bench-<date>)
  --sub-conf 'N = V'     extra postgresql.conf line for the subscriber (repeatable)
  --shared-buffers S     shared_buffers of both clusters (default $SHARED_BUFFERS)
  --pub-port P           publisher port (default $PUB_PORT)
  --sub-port P           subscriber port (default $SUB_PORT)
  --timeout SEC          give up the catch-up after the load after SEC (default $TIMEOUT)
  --poll SEC             slot polling interval after the load (default $POLL)
  --sync-timeout SEC     give up the initial table sync, or the wait for a caught-up
                         subscription, after SEC (default $SYNC_TIMEOUT)
  --pg-bin DIR           PostgreSQL 15 binaries (default $PG_BIN)
  --keep                 keep the temporary directory (data dirs, logs)
  -h, --help             this text

Results: DIR/results.txt (the printed tables), DIR/results.csv (one line per
measurement), DIR/samples.csv (one line per sample: t,engine,rate,byte_lag,
time_lag_s,run,phase,pa_apply_lag_s,pa_pending_bytes), DIR/time_lag.png (if
gnuplot is installed), DIR/machine.txt, DIR/logs/*.log, DIR/stats/*.txt.
EOF
}

script_opt() {	# script_opt ARG...: this script's own options (see parse_args in lib.sh)
	OPT_SHIFT=2
	case "$1" in
		--rates) RATES="$2"; GIVEN+="rates " ;;
		--duration) DURATION="$2"; GIVEN+="duration " ;;
		--engines) ENGINES_ARG="$2" ;;
		--workers) WORKERS="$2" ;;
		--clients) CLIENTS="$2" ;;
		--scale) SCALE="$2"; GIVEN+="scale " ;;
		--keep-up-p99) KEEP_UP_P99="$2" ;;
		--drain-timeout) DRAIN_TIMEOUT="$2"; GIVEN+="drain-timeout " ;;
		--repeat) REPEAT="$2" ;;
		--tick) TICK="$2" ;;
		--sync-commit) SYNC_COMMIT="$2" ;;
		--pub-sync-commit) PUB_SYNC_COMMIT="$2" ;;
		--protocol) PROTOCOL="$2" ;;
		--sync-timeout) SYNC_TIMEOUT="$2" ;;
		--quick) QUICK=1; OPT_SHIFT=1 ;;
		*) OPT_SHIFT=0 ;;
	esac
}

parse_args "$@"
if [ "$QUICK" = 1 ]; then
	case "$GIVEN" in *" rates "*) ;; *) RATES="$QUICK_RATES" ;; esac
	case "$GIVEN" in *" duration "*) ;; *) DURATION="$QUICK_DURATION" ;; esac
	case "$GIVEN" in *" drain-timeout "*) ;; *) DRAIN_TIMEOUT="$QUICK_DRAIN_TIMEOUT" ;; esac
	case "$GIVEN" in *" scale "*) ;; *) SCALE="$QUICK_SCALE" ;; esac
fi
check_uints DURATION WORKERS CLIENTS SCALE DRAIN_TIMEOUT REPEAT PUB_PORT SUB_PORT TIMEOUT SYNC_TIMEOUT
if [ "$DURATION" -lt 1 ] || [ "$CLIENTS" -lt 1 ] || [ "$SCALE" -lt 1 ] || [ "$REPEAT" -lt 1 ]; then
	die "--duration, --clients, --scale and --repeat must be >= 1"
fi
if [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt 32 ]; then die "--workers must be between 1 and 32"; fi
[[ "$KEEP_UP_P99" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--keep-up-p99 must be a number of seconds"
if ! [[ "$TICK" =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v t="$TICK" 'BEGIN { exit !(t >= 0.05) }'; then
	die "--tick must be a number of seconds, at least 0.05"
fi
case "$SYNC_COMMIT" in on|off) ;; *) die "--sync-commit must be on or off" ;; esac
case "$PUB_SYNC_COMMIT" in on|off) ;; *) die "--pub-sync-commit must be on or off" ;; esac
case "$PROTOCOL" in simple|extended|prepared) ;; *) die "--protocol must be simple, extended or prepared" ;; esac
[ "$PUB_PORT" != "$SUB_PORT" ] || die "--pub-port and --sub-port must differ"
RATE_LIST=()
for r in $RATES; do
	if ! is_uint "$r" || [ "$r" -lt 1 ]; then die "--rates: '$r' is not a positive integer"; fi
	case " ${RATE_LIST[*]-} " in *" $r "*) ;; *) RATE_LIST+=("$r") ;; esac
done
[ "${#RATE_LIST[@]}" -gt 0 ] || die "--rates: nothing to run"
ENGINE_LIST=()
for e in $ENGINES_ARG; do
	case "$e" in builtin|pa) ;; *) die "--engines: unknown engine '$e' (builtin, pa)" ;; esac
	case " ${ENGINE_LIST[*]-} " in *" $e "*) ;; *) ENGINE_LIST+=("$e") ;; esac
done
[ "${#ENGINE_LIST[@]}" -gt 0 ] || die "--engines: nothing to run"
NEED_EXT=0
case " ${ENGINE_LIST[*]} " in *" pa "*) NEED_EXT=1 ;; esac
JOBS=2; [ "$CLIENTS" -lt 2 ] && JOBS=1
# the ticker's own limit (it is stopped before that; a safety net only)
TICKER_MAX_S=$((DURATION + DRAIN_TIMEOUT + SYNC_TIMEOUT + 60))

# -------------------------------------------------------------- environment --
bench_env
check_ports
make_dirs
set_traps

# ------------------------------------------------------------------ helpers --
# Ordered content hash of each pgbench table and the tick row: one line
# "table|rows|md5" (pa_bench.sh's, plus the tick row).
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
          FROM pgbench_history t GROUP BY 1) s
UNION ALL
SELECT '$TICK_TABLE|' || count(*) || '|' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY id)), '-')
  FROM $TICK_TABLE t;"

define_waiter "MB to confirm" "round(coalesce(p_target - c, 0) / 1048576.0, 1)"
define_marker

TICK_SQL="CREATE TABLE $TICK_TABLE (id int PRIMARY KEY, ts timestamptz NOT NULL)"
# The ticker, on the publisher: a transaction of its own per tick (COMMIT in
# the loop), at every multiple of p_interval seconds since the epoch (the
# samples are taken half an interval later: see next_sample), for at most
# p_seconds.
TICKER_SQL="
CREATE PROCEDURE ${BENCH_PREFIX}_ticker(p_seconds float8, p_interval float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t_start timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t_start + make_interval(secs => p_seconds) LOOP
        PERFORM pg_sleep(p_interval - mod(extract(epoch FROM clock_timestamp()), p_interval::numeric));
        UPDATE public.$TICK_TABLE SET ts = clock_timestamp() WHERE id = 1;
        COMMIT;
    END LOOP;
END
\$\$;"
TICKER_APP="${BENCH_PREFIX}_ticker"

# ------------------------------------------------------------- machine info --
machine_info "" \
	"settings:   rates=${RATE_LIST[*]} duration=${DURATION}s engines=${ENGINE_LIST[*]} (alternating) repeat=$REPEAT" \
	"            pgbench tpcb-like scale=$SCALE clients=$CLIENTS jobs=$JOBS; publisher synchronous_commit=$PUB_SYNC_COMMIT" \
	"            subscription synchronous_commit=$SYNC_COMMIT streaming=off; parallel_apply.workers=$WORKERS" \
	"            tick=${TICK}s keep_up_p99=${KEEP_UP_P99}s drain_timeout=${DRAIN_TIMEOUT}s" \
	"            shared_buffers=$SHARED_BUFFERS fsync=on max_wal_size=16GB preload=$PRELOAD"

init_results "engine,workers,rate,run,duration_s,scale,clients,txns,achieved_tps,p50_lag_s,p99_lag_s,max_lag_s,kept_up,drain_s,max_byte_lag_mb,samples,cpu_clusters_pct,cpu_other_pct,so_md5,status"
# RESULTS_FILE: "engine|rate|run|txns|tps|p50|p99|max|kept|drain_s|max_mb|samples|cpu_ours|cpu_other|so_md5|status"
SAMPLES="$OUT/samples.csv"
echo "t,engine,rate,byte_lag,time_lag_s,run,phase,pa_apply_lag_s,pa_pending_bytes" >"$SAMPLES"

# fail_line ENGINE RATE RUN SO_MD5 STATUS -> a results line without figures
fail_line() { printf '%s|%s|%s||||||||||||%s|%s\n' "$1" "$2" "$3" "$4" "$5"; }

now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }	# wall clock, microseconds
us_s() { printf '%d.%03d' $(($1 / 1000000)) $(($1 % 1000000 / 1000)); }	# us_s US -> seconds, 3 decimals

# The samples: every second, at a fixed phase of the ticker's grid, half a
# tick after a tick (for a --tick that divides 1 s), so that the time lag of
# a subscriber that keeps up reads about half a tick in every measurement,
# not a random phase between 0 and a tick.
SAMPLE_OFF_US="$(awk -v t="$TICK" 'BEGIN { printf "%d", (t * 1000000 / 2) % 1000000 }')"
next_sample() {	# next_sample -> the next sampling time (now_us) after now
	local n g
	n="$(now_us)"
	g=$((n - n % 1000000 + SAMPLE_OFF_US))
	while [ "$g" -le "$n" ]; do g=$((g + 1000000)); done
	echo "$g"
}

# sleep_until US [PID]: sleep until the wall clock reaches US (now_us), or
# until process PID has ended
sleep_until() {
	local d
	while :; do
		d=$(($1 - $(now_us)))
		[ "$d" -gt 0 ] || return 0
		if [ -n "${2:-}" ]; then
			kill -0 "$2" 2>/dev/null || return 0
			[ "$d" -le 100000 ] || d=100000
		fi
		sleep "$(printf '%d.%06d' $((d / 1000000)) $((d % 1000000)))"
	done
}

# wait_applied ID NOTE: lib.sh's marker row ID (note NOTE), written now on
# the publisher, is on the subscriber and the slot has confirmed it; 1 after
# --sync-timeout.
wait_applied() {
	local lsn t=0
	pub "INSERT INTO $MARKER VALUES ($1, '$2')"
	lsn="$(pub "SELECT pg_current_wal_lsn()")"
	until [ "$(sub "SELECT count(*) FROM $MARKER WHERE id = $1")" = 1 ] &&
		[ "$(pub "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$lsn'), false) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")" = t ]; do
		t=$((t + 1))
		if [ "$t" -gt $((SYNC_TIMEOUT * 10)) ]; then
			log "the subscription did not catch up within ${SYNC_TIMEOUT}s"; tail -n 20 "$WORK/sub.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

# start_ticker: the ticker (a psql in the background, TICKER_PID) and until
# the subscriber has applied one of its ticks; 1 if either does not happen.
start_ticker() {
	local t=0 ts0
	ts0="$(sub "SELECT ts FROM $TICK_TABLE WHERE id = 1")"
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PUB_PORT" -d "$DB" \
		-c "SET application_name = '$TICKER_APP'" \
		-c "CALL ${BENCH_PREFIX}_ticker($TICKER_MAX_S, $TICK)" >"$WORK/ticker.out" 2>&1 &
	TICKER_PID=$!
	until [ "$(sub "SELECT count(*) FROM $TICK_TABLE WHERE id = 1 AND ts > '$ts0'")" = 1 ]; do
		t=$((t + 1))
		if [ "$t" -gt $((SYNC_TIMEOUT * 10)) ] || ! kill -0 "$TICKER_PID" 2>/dev/null; then
			log "the ticker's first tick did not reach the subscriber: $(head -n 2 "$WORK/ticker.out" | tr '\n' ' ')"
			return 1
		fi
		sleep 0.1
	done
}

stop_ticker() {	# stop_ticker: cancel the ticker's CALL (its psql then exits)
	[ -n "${TICKER_PID:-}" ] || return 0
	pub "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '$TICKER_APP'" postgres >/dev/null 2>&1 ||
		kill "$TICKER_PID" 2>/dev/null || true
	wait "$TICKER_PID" 2>/dev/null || true
	TICKER_PID=""
}

# sample PHASE: one line of DIR/samples.csv, t from run_mode's t0_us; a query
# that fails leaves its field empty.
sample() {
	local t bl row tl="" pal="" pap=""
	t="$(us_s $(($(now_us) - t0_us)))"
	bl="$(pub "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SUBNAME'" 2>/dev/null)" || bl=""
	row="$(sub "$LAG_SQL" 2>/dev/null)" || row=""
	IFS='|' read -r tl pal pap <<<"$row"
	echo "$t,$engine,$rate,$bl,$tl,$run,$1,$pal,$pap" >>"$SAMPLES"
	nsamples=$((nsamples + 1))
}

# start_drain_waiter TARGET: lib.sh's waiter (a psql in the background,
# WAITER_PID) until the slot reaches the LSN TARGET, result in WORK/wait.out,
# notes on stderr.  Unlike start_waiter it does not wait to see the query
# running: a subscriber that keeps up reaches TARGET at once.
start_drain_waiter() {
	local w="${BENCH_PREFIX}_wait"
	as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PUB_PORT" -d postgres \
		-c "SET application_name = '$w'" \
		-c "SELECT * FROM $w('$SUBNAME', '$1', $TIMEOUT, $POLL)" \
		>"$WORK/wait.out" 2> >(sed -u 's/^psql:[^N]*NOTICE: */            /; s/^NOTICE: */            /' >&2) &
	WAITER_PID=$!
}

# bench_ticks VAR: VAR = the CPU ticks used so far by everything the
# benchmark runs: the clusters' processes (cluster_ticks), their exited
# backends (the postmasters' cutime + cstime: pgbench's connections end
# with the load) and this shell's waited-for children (pgbench itself, the
# sampling psql calls).  Not called in $(...): "times" must see this shell.
bench_ticks() {
	local total pm p c
	total="$(cluster_ticks)"
	for pm in "$WORK/pub/postmaster.pid" "$WORK/sub/postmaster.pid"; do
		[ -f "$pm" ] || continue
		p="$(head -n 1 "$pm")"
		c="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $14 + $15 }')" || c=0
		total=$((total + ${c:-0}))
	done
	times >"$WORK/times.out"
	c="$(awk -v hz="$CLK_TCK" 'function sec(x,  m) { m = x; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", x); sub(/s$/, "", x); return m * 60 + x }
		NR == 2 { printf "%d\n", (sec($1) + sec($2)) * hz }' "$WORK/times.out")"
	printf -v "$1" '%d' $((total + ${c:-0}))
}

check_crash() {	# check_crash: crash = the subscriber log's first crash lines, "" if none
	crash="$(grep -m 3 -E 'terminated by signal|PANIC:|TRAP:' "$WORK/sub.log" || true)"
}

# lag_stats ENGINE RATE RUN -> "p50 p99 max max_mb": the time lag's
# percentiles (nearest rank) and maximum over the load's samples, and the
# largest byte lag then, in MB; nothing without a time-lag sample.
lag_stats() {
	awk -F, -v e="$1" -v r="$2" -v n="$3" '
		$2 == e && $3 == r && $6 == n && $7 == "load" {
			if ($5 != "") v[++k] = $5 + 0
			if ($4 != "" && $4 + 0 > mb) mb = $4 + 0
		}
		function rank(p,   i) { i = int(p * k + 0.999999); if (i < 1) i = 1; if (i > k) i = k; return v[i] }
		END {
			if (k == 0) exit
			# insertion sort: a few thousand samples at most
			for (i = 2; i <= k; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			printf "%.3f %.3f %.3f %.1f\n", rank(0.50), rank(0.99), v[k], mb / 1048576
		}' "$SAMPLES"
}

# verify LABEL: the pgbench tables and the tick row on both sides; sets
# status to VERIFY_FAILED or MISMATCH as pa_bench.sh does.
verify() {
	local label="$1" herr=""
	pub "$HASH_SQL" >"$WORK/hash.pub.raw" 2>"$WORK/hash.err" || herr="publisher"
	sub "$HASH_SQL" >"$WORK/hash.sub.raw" 2>>"$WORK/hash.err" || herr="$herr subscriber"
	sort "$WORK/hash.pub.raw" >"$WORK/hash.pub"
	sort "$WORK/hash.sub.raw" >"$WORK/hash.sub"
	if [ -n "$herr" ]; then
		if [ "$status" = ok ]; then status=VERIFY_FAILED; fi
		log "verify: could not hash the tables on the $herr: $(head -n 2 "$WORK/hash.err" | tr '\n' ' ')"
	elif cmp -s "$WORK/hash.pub" "$WORK/hash.sub" && [ -s "$WORK/hash.pub" ]; then
		log "verify: all 5 tables equal ($(tr '\n' ' ' <"$WORK/hash.pub" | sed 's/|[0-9a-f]\{32\}//g'))"
	elif [ "$status" != ok ]; then
		log "verify: tables differ, as expected after a $status:"
		diff "$WORK/hash.pub" "$WORK/hash.sub" | sed 's/^/            /' >&2 || true
	else
		status=MISMATCH
		mismatch_banner "$label" "### table|rows|md5  publisher vs subscriber:" \
			"$(diff "$WORK/hash.pub" "$WORK/hash.sub" | sed 's/^/###   /' || true)"
	fi
}

# ------------------------------------------------------------- one mode run --
run_mode() {	# run_mode ENGINE RATE RUN
	local engine="$1" rate="$2" run="$3"
	local label="$engine-r$rate-run$run"
	local status=ok done_tx="" tps="" p50="" p99="" pmax="" max_mb="" kept="" drain_s="" nsamples=0
	local cpu_ours="" cpu_other="" crash="" build TICKER_PID="" LAG_SQL
	build="$(so_md5)"

	log "=== $label: fresh clusters"
	if [ "$engine" = pa ]; then fresh_clusters "parallel_apply.workers = $WORKERS"; else fresh_clusters; fi
	if [ "$PUB_SYNC_COMMIT" = off ]; then echo "synchronous_commit = off" >>"$WORK/pub/postgresql.conf"; fi
	start_clusters || { record "$(fail_line "$engine" "$rate" "$run" "$build" START_FAILED)"; return 1; }
	create_databases

	# as pa_bench.sh: the data on the publisher, the empty tables on the
	# subscriber, copy_data = true
	log "pgbench -i -s $SCALE on the publisher; schema only on the subscriber"
	as_pg "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	as_pg "$PG_BIN/pgbench" -i -q -I dtp -s "$SCALE" -h "$SOCK" -p "$SUB_PORT" "$DB" >>"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	if [ "$PRELOAD" = 1 ]; then sub "CREATE EXTENSION parallel_apply"; fi
	pub "$MARKER_PUB_SQL"; sub "$MARKER_SUB_SQL"
	pub "$TICK_SQL"; sub "$TICK_SQL"
	pub "INSERT INTO $TICK_TABLE VALUES (1, clock_timestamp())"
	pub "$TICKER_SQL"
	pub "CREATE PUBLICATION $PUBNAME FOR TABLE ${TABLES// /, }, $MARKER, $TICK_TABLE"
	sub "CREATE SUBSCRIPTION $SUBNAME
	       CONNECTION 'host=127.0.0.1 port=$PUB_PORT dbname=$DB user=postgres'
	       PUBLICATION $PUBNAME WITH (copy_data = true)"
	sub "ALTER SUBSCRIPTION $SUBNAME SET (synchronous_commit = '$SYNC_COMMIT')"

	log "initial sync (copy_data = true)"
	local t=0 notready nrel
	while :; do
		notready="$(sub "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		                  WHERE s.subname = '$SUBNAME' AND r.srsubstate <> 'r'")"
		nrel="$(sub "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		                  WHERE s.subname = '$SUBNAME'")"
		[ "$notready" = 0 ] && [ "$nrel" = 6 ] && break
		t=$((t + 1))
		if [ "$t" -gt $((SYNC_TIMEOUT * 2)) ]; then
			log "initial sync did not finish in ${SYNC_TIMEOUT}s"; tail -n 30 "$WORK/sub.log" >&2
			record "$(fail_line "$engine" "$rate" "$run" "$build" SYNC_TIMEOUT)"; return 1
		fi
		sleep 0.5
	done

	# The engine measured starts on the disabled subscription (as pa_bench.sh).
	sub "ALTER SUBSCRIPTION $SUBNAME DISABLE"
	t=0
	local alive active
	while :; do
		alive="$(sub "SELECT count(*) FROM pg_stat_subscription WHERE subname = '$SUBNAME' AND pid IS NOT NULL")"
		active="$(pub "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SUBNAME' AND active")"
		[ "$alive" = 0 ] && [ "$active" = 0 ] && break
		t=$((t + 1)); [ "$t" -gt 600 ] && { log "subscription did not stop"; record "$(fail_line "$engine" "$rate" "$run" "$build" DISABLE_FAILED)"; return 1; }
		sleep 0.1
	done
	sub "VACUUM ANALYZE"
	pub "VACUUM ANALYZE"

	start_apply "$engine" "[parallel_apply.workers = $WORKERS]" ||
		{ record "$(fail_line "$engine" "$rate" "$run" "$build" START_FAILED)"; stop_and_save "$label"; return 0; }
	# (the built-in worker may wait for the launcher's wal_retrieve_retry_interval here: before the load)
	wait_applied 0 "apply running" ||
		{ record "$(fail_line "$engine" "$rate" "$run" "$build" SYNC_TIMEOUT)"; stop_and_save "$label"; return 0; }
	pub "CHECKPOINT"; sub "CHECKPOINT"

	LAG_SQL="SELECT round(extract(epoch FROM clock_timestamp() - t.ts)::numeric, 3) FROM $TICK_TABLE t WHERE t.id = 1"
	if [ "$engine" = pa ]; then
		if sub "SELECT apply_lag, pending_bytes FROM parallel_apply.stat_subscription LIMIT 0" >/dev/null 2>&1; then
			LAG_SQL="SELECT round(extract(epoch FROM clock_timestamp() - t.ts)::numeric, 3)
			           || '|' || coalesce((SELECT coalesce(round(extract(epoch FROM s.apply_lag)::numeric, 3)::text, '')
			                                      || '|' || coalesce(s.pending_bytes::text, '')
			                                 FROM parallel_apply.stat_subscription s WHERE s.subname = '$SUBNAME'), '|')
			           FROM $TICK_TABLE t WHERE t.id = 1"
		else
			log "NOTE: parallel_apply.stat_subscription has no apply_lag/pending_bytes in this build: not sampled"
		fi
	fi
	start_ticker || { record "$(fail_line "$engine" "$rate" "$run" "$build" TICKER_FAILED)"; stop_and_save "$label"; return 0; }
	log "apply running and caught up; ticker every ${TICK}s"

	# ---- the load, sampled once a second
	log "load: pgbench -n -b tpcb-like -M $PROTOCOL -c $CLIENTS -j $JOBS -R $rate -T $DURATION on the publisher, applied live; sampling every 1 s"
	local t0_us t_end_us cpu0 ours0 cpu1 ours1 load_pid
	cpu0="$(machine_busy_ticks)"; bench_ticks ours0
	t0_us="$(now_us)"
	as_pg "$PG_BIN/pgbench" -n -b tpcb-like -M "$PROTOCOL" -c "$CLIENTS" -j "$JOBS" -R "$rate" -T "$DURATION" -P 5 \
		-h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/load.log" 2>&1 &
	load_pid=$!
	while :; do
		sleep_until "$(next_sample)" "$load_pid"
		kill -0 "$load_pid" 2>/dev/null || break
		sample load
		check_crash
		if [ -n "$crash" ]; then kill "$load_pid" 2>/dev/null || true; break; fi
	done
	local load_rc=0
	wait "$load_pid" || load_rc=$?
	t_end_us="$(now_us)"
	cpu1="$(machine_busy_ticks)"; bench_ticks ours1
	read -r cpu_ours cpu_other < <(awk -v c="$((cpu1 - cpu0))" -v o="$((ours1 - ours0))" \
		-v s="$(us_s $((t_end_us - t0_us)))" -v hz="$CLK_TCK" -v n="$NCPU" 'BEGIN { t = s * hz * n; if (t <= 0) t = 1;
		oth = (c - o) / t * 100; if (oth < 0) oth = 0; printf "%.0f %.0f\n", o / t * 100, oth }')
	done_tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/load.log")"
	tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/load.log" | tail -n 1)"
	if [ -n "$tps" ]; then tps="$(printf '%.1f' "$tps")"; fi
	if [ -n "$crash" ]; then
		status=CRASHED
		log "CRASH: the subscriber crashed during the load; the run is void:"
		printf '            %s\n' "${crash//$'\n'/$'\n'            }" >&2
	elif [ "$load_rc" != 0 ] || [ -z "$done_tx" ]; then
		status=LOAD_FAILED
		log "pgbench failed (exit $load_rc):"; tail -n 15 "$WORK/load.log" | sed 's/^/            /' >&2
	else
		log "load done: $done_tx transactions in $(us_s $((t_end_us - t0_us))) s, $tps tx/s (-R $rate); $nsamples samples"
		log "CPU during the load: the benchmark (both clusters, pgbench, sampling) ${cpu_ours}%, other processes ${cpu_other}% of $NCPU CPUs"
		if [ "${cpu_other:-0}" -ge 10 ]; then
			log "WARNING: other processes used ${cpu_other}% of the machine during this measurement: the figure is disturbed"
		fi
	fi

	# ---- the drain: sampled until the slot confirms the load, at most --drain-timeout
	if [ "$status" = ok ]; then
		local target
		target="$(pub "SELECT pg_current_wal_lsn()")"
		start_drain_waiter "$target"
		local drain_end_us=$((t_end_us + DRAIN_TIMEOUT * 1000000))
		local next
		while :; do
			next="$(next_sample)"
			if [ "$next" -gt "$drain_end_us" ]; then sleep_until "$drain_end_us" "$WAITER_PID"; break; fi
			sleep_until "$next" "$WAITER_PID"
			if ! kill -0 "$WAITER_PID" 2>/dev/null; then break; fi
			sample drain
			check_crash
			if [ -n "$crash" ]; then break; fi
		done
		stop_ticker
		if [ -z "$crash" ] && kill -0 "$WAITER_PID" 2>/dev/null; then
			log "not caught up ${DRAIN_TIMEOUT}s after the load (--drain-timeout): sampling stopped; waiting for the catch-up (up to ${TIMEOUT}s) to compare the tables"
			watch_catch_up
		fi
		if [ -n "$crash" ]; then stop_waiter; fi
		local waiter_rc=0 reached
		wait "$WAITER_PID" 2>/dev/null || waiter_rc=$?
		WAITER_PID=""
		reached="$(head -n 1 "$WORK/wait.out" | cut -d'|' -f1)"
		if [ -n "$crash" ]; then
			status=CRASHED
			log "CRASH: the subscriber crashed after the load; the run is void:"
			printf '            %s\n' "${crash//$'\n'/$'\n'            }" >&2
		elif [ "$waiter_rc" != 0 ]; then
			status=WAITER_FAILED
			log "the waiter failed (psql exit $waiter_rc; its error is above)"
		elif [ -z "$reached" ]; then
			status=TIMEOUT
			log "TIMEOUT: not caught up ${TIMEOUT}s after the load (slot confirmed_flush|replay: $(cut -d'|' -f2,3 "$WORK/wait.out"), target $target)"
		else
			drain_s="$(awk -v a="$reached" -v b="$(us_s "$t_end_us")" 'BEGIN { d = a - b; if (d < 0) d = 0; printf "%.2f", d }')"
			log "drained: the slot confirmed the load ${drain_s}s after pgbench ended"
		fi
	fi
	stop_ticker

	# ---- the figures of the load window
	local st
	st="$(lag_stats "$engine" "$rate" "$run")"
	if [ -n "$st" ]; then
		read -r p50 p99 pmax max_mb <<<"$st"
		if [ "$status" = ok ]; then
			kept=no
			if awk -v p="$p99" -v l="$KEEP_UP_P99" 'BEGIN { exit !(p < l) }'; then kept=yes; fi
		fi
		log "time lag over the load: p50 ${p50}s p99 ${p99}s max ${pmax}s (byte lag up to ${max_mb} MB): kept up (p99 < ${KEEP_UP_P99}s): ${kept:--}"
	else
		log "no time-lag sample during the load"
		if [ "$status" = ok ]; then status=NO_SAMPLES; fi
	fi

	# ---- the tables
	if [ "$status" = ok ]; then
		wait_applied 1 "end of the measurement" || status=TIMEOUT
	fi
	if [ "$engine" = pa ]; then
		engine_stats "$label" >"$OUT/stats/$label.txt"
		sed -n '1,6p' "$OUT/stats/$label.txt" | sed 's/^/            /' >&2
	fi
	if verifies; then verify "$label"; fi

	log_sub_problems ""
	check_lib_change "$build"
	record "$engine|$rate|$run|$done_tx|$tps|$p50|$p99|$pmax|$kept|$drain_s|$max_mb|$nsamples|$cpu_ours|$cpu_other|$build|$status"
	stop_and_save "$label"
	cp "$WORK/load.log" "$OUT/logs/$label.pgbench.log" 2>/dev/null || true
	return 0
}

# Each measurement runs in a subshell with errexit on (run_isolated in lib.sh).
# The engines alternate which goes first, from one rate (and repetition) to the next.
for ((run = 1; run <= REPEAT; run++)); do
	for i in "${!RATE_LIST[@]}"; do
		rate="${RATE_LIST[$i]}"
		order=("${ENGINE_LIST[@]}")
		if [ $(((i + run - 1) % 2)) = 1 ] && [ "${#ENGINE_LIST[@]}" = 2 ]; then
			order=("${ENGINE_LIST[1]}" "${ENGINE_LIST[0]}")
		fi
		for engine in "${order[@]}"; do
			run_isolated "$engine-r$rate-run$run" '*|ok' run_mode "$engine" "$rate" "$run"
			if [ "$UNRECORDED" = 1 ]; then record "$(fail_line "$engine" "$rate" "$run" "$(so_md5)" FAILED)"; fi
		done
	done
done

# ------------------------------------------------------------------ report --
engine_name() { if [ "$1" = pa ]; then echo "parallel_apply"; else echo "built-in"; fi; }

# kept_rate ENGINE -> "RATE|TPS": the highest rate at which every repetition
# of ENGINE ended ok and kept up (TPS: the lowest achieved tx/s there);
# nothing if none.
kept_rate() {
	awk -F'|' -v e="$1" '
		$1 == e { n[$2]++; if ($16 == "ok" && $9 == "yes") { k[$2]++; if (!($2 in lo) || $5 + 0 < lo[$2]) lo[$2] = $5 + 0 } }
		END { best = -1; for (r in n) if (k[r] == n[r] && r + 0 > best) best = r + 0
		      if (best >= 0) printf "%d|%.1f\n", best, lo[best] }' "$RESULTS_FILE"
}

TABLE="$OUT/results.txt"
MAX_RATE="$(printf '%s\n' "${RATE_LIST[@]}" | sort -n | tail -n 1)"
MIN_RATE="$(printf '%s\n' "${RATE_LIST[@]}" | sort -n | head -n 1)"
{
	echo
	echo "sustained-load benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs (${CPU_MODEL:-?}), $((MEM_KB / 1024 / 1024)) GiB RAM, $PG_VERSION; parallel_apply.so $(so_md5)"
	echo "load:    pgbench tpcb-like -M $PROTOCOL -R RATE -T $DURATION, scale $SCALE, $CLIENTS clients (-j $JOBS), publisher synchronous_commit = $PUB_SYNC_COMMIT,"
	echo "         applied live; subscription synchronous_commit = $SYNC_COMMIT; parallel_apply.workers = $WORKERS; fsync = on;"
	echo "         engines alternate which goes first; a fresh publisher and subscriber per measurement"
	for rate in "${RATE_LIST[@]}"; do
		echo
		echo "rate $rate tx/s"
		printf '%-14s | %3s | %9s | %6s | %9s | %9s | %9s | %7s | %8s | %9s | %9s | %s\n' engine run "tx/s" "% of -R" "p50 lag s" "p99 lag s" "max lag s" "kept up" "drain s" "max MB" "cpu/other" status
		printf '%s\n' "---------------+-----+-----------+---------+-----------+-----------+-----------+---------+----------+-----------+-----------+--------"
		for e in "${ENGINE_LIST[@]}"; do
			while IFS='|' read -r en r run n tps p50 p99 pmax kept drain mb ns co cx so st; do
				if [ "$en" != "$e" ] || [ "$r" != "$rate" ]; then continue; fi
				pct=""; [ -n "$tps" ] && pct="$(awk -v a="$tps" -v b="$r" 'BEGIN { printf "%.0f%%", a / b * 100 }')"
				cpu="-"; [ -n "$co" ] && cpu="$co%/$cx%"
				dr="${drain:--}"
				if [ -n "$drain" ] && awk -v d="$drain" -v l="$DRAIN_TIMEOUT" 'BEGIN { exit !(d > l) }'; then dr="$drain*"; fi
				printf '%-14s | %3s | %9s | %7s | %9s | %9s | %9s | %7s | %8s | %9s | %9s | %s\n' "$(engine_name "$e")" "$run" "${tps:--}" "${pct:--}" "${p50:--}" "${p99:--}" "${pmax:--}" "${kept:--}" "$dr" "${mb:--}" "$cpu" "$st"
				w=""; [ "$e" = pa ] && w="$WORKERS"
				echo "$e,$w,$r,$run,$DURATION,$SCALE,$CLIENTS,$n,$tps,$p50,$p99,$pmax,$kept,$drain,$mb,$ns,$co,$cx,$so,$st" >>"$CSV"
			done <"$RESULTS_FILE"
		done
	done
	echo
	echo "highest rate kept up (p99 time lag < ${KEEP_UP_P99}s over the load, in every repetition):"
	declare -A KEPT=()
	for e in "${ENGINE_LIST[@]}"; do
		kr="$(kept_rate "$e")"
		if [ -n "$kr" ]; then
			KEPT[$e]="${kr%%|*}"
			note=""; [ "${kr%%|*}" = "$MAX_RATE" ] && note="  (the highest rate tried: the limit is higher)"
			printf '  %-14s  %6s tx/s  (achieved %s tx/s)%s\n' "$(engine_name "$e")" "${kr%%|*}" "${kr#*|}" "$note"
		else
			printf '  %-14s  %6s       (not even %s tx/s, the lowest rate tried)\n' "$(engine_name "$e")" none "$MIN_RATE"
		fi
	done
	if [ "${#ENGINE_LIST[@]}" = 2 ]; then
		if [ -z "${KEPT[pa]:-}" ] || [ -z "${KEPT[builtin]:-}" ]; then
			echo "  ratio pa/built-in: n/a (an engine kept up at no rate tried)"
		elif [ "${KEPT[pa]}" = "$MAX_RATE" ] && [ "${KEPT[builtin]}" = "$MAX_RATE" ]; then
			echo "  ratio pa/built-in: n/a (both kept up at the highest rate tried: try higher --rates)"
		else
			printf '  ratio pa/built-in: %s' "$(awk -v a="${KEPT[pa]}" -v b="${KEPT[builtin]}" 'BEGIN { printf "%.2f", a / b }')"
			if [ "${KEPT[pa]}" = "$MAX_RATE" ]; then printf '  (at least: parallel_apply kept up at the highest rate tried)'; fi
			if [ "${KEPT[builtin]}" = "$MAX_RATE" ]; then printf '  (at most: the built-in worker kept up at the highest rate tried)'; fi
			echo
		fi
	fi
	echo
	echo "time lag = the subscriber's clock_timestamp() minus the applied value of a tick row the publisher sets to"
	echo "clock_timestamp() every ${TICK}s, sampled every second half a tick after a tick (a subscriber that keeps up"
	echo "reads half a tick plus its apply delay; resolution ${TICK}s); p50/p99 (nearest rank)/max over the samples taken"
	echo "while pgbench ran; tx/s = pgbench's achieved rate, % of -R = of the rate asked for; drain s = from pgbench's"
	echo "end until the slot's confirmed_flush_lsn reached the WAL position then (* = after --drain-timeout ${DRAIN_TIMEOUT}s,"
	echo "unsampled); max MB = the largest byte lag (pg_current_wal_lsn() - confirmed_flush_lsn) during the load;"
	echo "cpu/other = CPU used during the load by the benchmark (both clusters, pgbench, the sampling) / by everything"
	echo "else, in % of all $NCPU CPUs."
} | tee "$TABLE"

# Plot: time lag against time, one line per engine (and repetition), one panel per rate.
if command -v gnuplot >/dev/null 2>&1; then
	PLOT_DIR="$OUT/plot"
	mkdir -p "$PLOT_DIR"
	PNG="$OUT/time_lag.png"
	NR=${#RATE_LIST[@]}
	{
		echo "set terminal pngcairo size 1000,$((NR * 300 + 60)) noenhanced"
		echo "set output '$PNG'"
		echo "set multiplot layout $NR,1 title 'Time lag under a sustained pgbench tpcb-like load (scale $SCALE, $CLIENTS clients, -T $DURATION; parallel_apply.workers = $WORKERS; $(nproc) CPUs)'"
		echo "set grid"
		echo "set key top left opaque box"
		echo "set xlabel 'seconds since the load started'"
		echo "set ylabel 'time lag (s)'"
		echo "set xrange [0:*]"
		echo "set yrange [0:*]"
		echo "set offsets 0, 0, graph 0.15, 0"
		echo "set arrow 1 from $DURATION, graph 0 to $DURATION, graph 1 nohead dt 3 lc rgb 'gray40'"
		echo "set label 1 'load ends' at $DURATION, graph 0.95 right offset -0.5,0 textcolor rgb 'gray40'"
		for rate in "${RATE_LIST[@]}"; do
			plot=""
			for e in "${ENGINE_LIST[@]}"; do
				lc="#1f77b4"; [ "$e" = pa ] && lc="#d62728"
				for ((run = 1; run <= REPEAT; run++)); do
					dat="$PLOT_DIR/$e-r$rate-run$run.dat"
					awk -F, -v e="$e" -v r="$rate" -v n="$run" '$2 == e && $3 == r && $6 == n && $5 != "" { print $1, $5 }' "$SAMPLES" >"$dat"
					[ -s "$dat" ] || continue
					title="$(engine_name "$e")"; [ "$REPEAT" -gt 1 ] && title="$title #$run"
					plot="$plot'$dat' using 1:2 with linespoints lw 2 pt 7 ps 0.5 dt $run lc rgb '$lc' title '$title', "
				done
			done
			echo "set title '-R $rate tx/s'"
			echo "plot $plot$KEEP_UP_P99 with lines dt 2 lw 1 lc rgb 'black' title 'keep-up limit (p99 < ${KEEP_UP_P99}s)'"
		done
		echo "unset multiplot"
	} >"$OUT/plot.gp"
	if gnuplot "$OUT/plot.gp" 2>"$OUT/plot.err"; then
		log "plot: $PNG"
	else
		log "gnuplot failed: $(head -n 3 "$OUT/plot.err")"
	fi
else
	log "gnuplot not installed: no plot (apt-get install gnuplot-nox)"
fi
log "samples: $SAMPLES"

bench_exit '|MISMATCH$' "tables differ"
