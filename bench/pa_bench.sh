#!/usr/bin/env bash
# shellcheck disable=SC2317  # run_mode, and what only it calls, run through run_isolated (lib.sh)
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

BENCH_NAME=pa_bench
BENCH_PREFIX=pa_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- defaults --
# (and those of lib.sh: --timeout 3600, --poll 0.1, --shared-buffers 1GB, ...)
SCALE=10
CLIENTS=8
TXNS=200000
SYNC_COMMIT=off
STREAMING=off
SCRIPT=tpcb-like
HOT_ROWS=10
WORKERS="1 2 4"
BUILTIN=1
JEMALLOC=0
PUB_PORT=54321
SUB_PORT=54322
SYNC_TIMEOUT=900
REPEAT=1
QUEUE_MEMORY=""
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
  --script S           tpcb-like | simple-update | hot | insert (default $SCRIPT)
                       hot: each transaction updates one of --hot-rows
                       pgbench_accounts rows and inserts a history row
  --hot-rows N         number of hot rows for --script hot (default $HOT_ROWS)
  --sync-commit on|off the subscription's synchronous_commit (default $SYNC_COMMIT)
  --streaming on|off   the subscription's streaming (default $STREAMING); the
                       pgbench scripts' transactions are too small to stream
  --workers "LIST"     parallel_apply worker counts to run (default "$WORKERS"):
                       N runs N workers, all of them used
                       (parallel_apply.adaptive = off); aN runs the default,
                       adaptive worker use with at most N workers
                       (parallel_apply.adaptive = on); "" runs the built-in
                       mode only
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

script_opt() {	# script_opt ARG...: this script's own options (see parse_args in lib.sh)
	OPT_SHIFT=2
	case "$1" in
		--scale) SCALE="$2" ;;
		--clients) CLIENTS="$2" ;;
		--txns) TXNS="$2" ;;
		--script) SCRIPT="$2" ;;
		--hot-rows) HOT_ROWS="$2" ;;
		--sync-commit) SYNC_COMMIT="$2" ;;
		--streaming) STREAMING="$2" ;;
		--workers) WORKERS="$2" ;;
		--no-builtin) BUILTIN=0; OPT_SHIFT=1 ;;
		--repeat) REPEAT="$2" ;;
		--jemalloc) JEMALLOC=1; OPT_SHIFT=1 ;;
		--queue-memory) QUEUE_MEMORY="$2" ;;
		--sync-timeout) SYNC_TIMEOUT="$2" ;;
		*) OPT_SHIFT=0 ;;
	esac
}

parse_args "$@"
check_uints SCALE CLIENTS TXNS HOT_ROWS REPEAT PUB_PORT SUB_PORT TIMEOUT SYNC_TIMEOUT
[ "$SCALE" -ge 1 ] && [ "$CLIENTS" -ge 1 ] && [ "$REPEAT" -ge 1 ] && [ "$HOT_ROWS" -ge 1 ] ||
	die "--scale, --clients, --repeat and --hot-rows must be >= 1"
case "$SYNC_COMMIT" in on|off) ;; *) die "--sync-commit must be on or off" ;; esac
case "$STREAMING" in on|off) ;; *) die "--streaming must be on or off" ;; esac
case "$SCRIPT" in tpcb-like|simple-update|hot|insert) ;; *) die "--script must be tpcb-like, simple-update, hot or insert" ;; esac
for w in $WORKERS; do
	{ is_uint "${w#a}" && [ "${w#a}" -ge 1 ]; } ||
		die "--workers: '$w' is neither a positive integer nor a followed by one"
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
bench_env

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

check_ports
make_dirs
set_traps

# ------------------------------------------------------------------ helpers --
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

define_waiter "MB to apply" "round(coalesce(p_target - c, 0) / 1048576.0, 1)"
define_marker

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
# insert: one INSERT per transaction into pgbench_history, which this script
# gives a primary key (hid) on both sides, so every applied row goes through
# a unique index's check (and the engine's conflict detection)
INSERT_FILE="$WORK/insert.sql"
cat >"$INSERT_FILE" <<EOF
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
EOF
chmod 644 "$INSERT_FILE"
case "$SCRIPT" in
	hot) PGBENCH_SCRIPT=(-f "$HOT_FILE") ;;
	insert) PGBENCH_SCRIPT=(-f "$INSERT_FILE") ;;
	*) PGBENCH_SCRIPT=(-b "$SCRIPT") ;;
esac

# ------------------------------------------------------------- machine info --
machine_info "allocator:  $ALLOCATOR${JEMALLOC_LIB:+ ($JEMALLOC_LIB)}" \
	"settings:   scale=$SCALE clients=$CLIENTS jobs=$JOBS txns=$TXNS ($TX_PER_CLIENT per client) script=$SCRIPT sync_commit=$SYNC_COMMIT streaming=$STREAMING" \
	"            shared_buffers=$SHARED_BUFFERS fsync=on max_wal_size=16GB preload=$PRELOAD${QUEUE_MEMORY:+ queue_memory=$QUEUE_MEMORY}" \
	"            modes=${MODES[*]} repeat=$REPEAT"

init_results "mode,workers,txns,seconds,rate,speedup_vs_builtin,sync_commit,script,scale,clients,allocator,run,status,load_tps,so_md5,first_progress_s,cpu_clusters_pct,cpu_other_pct,applied_seconds,applied_rate,applied_speedup_vs_builtin,walsender_cpu_s,apply_cpu_s,tcp_segments"
# RESULTS_FILE: lines "mode|workers|txns|seconds|rate|run|status|load_tps|so_md5|first_progress_s|cpu_clusters_pct|cpu_other_pct|applied_s|applied_rate|walsender_cpu_s|apply_cpu_s|tcp_segments"

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

# stream_probe begin|end (catch_up's PROBE): TCP segments sent during the
# catch-up (tcp_segs, from run_mode's segs0) and the stream's CPU seconds
# (cpu_walsender, cpu_apply).
stream_probe() {
	if [ "$1" = begin ]; then
		segs0="$(tcp_out_segs)"
	else
		read -r cpu_walsender cpu_apply < <(role_cpu)
		tcp_segs=$(($(tcp_out_segs) - segs0))
	fi
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
	local conf=()
	if [ "$mode" = pa ]; then
		conf+=("parallel_apply.workers = ${w#a}")
		if [ "${w#a}" = "$w" ]; then
			conf+=("parallel_apply.adaptive = off")
		else
			conf+=("parallel_apply.adaptive = on")
		fi
		if [ -n "$QUEUE_MEMORY" ]; then conf+=("parallel_apply.queue_memory = '$QUEUE_MEMORY'"); fi
	fi
	fresh_clusters ${conf[@]+"${conf[@]}"}
	start_clusters || { record "$mode|$w|$TXNS|||$run|START_FAILED|"; return 1; }
	create_databases

	log "pgbench -i -s $SCALE on the publisher; schema only on the subscriber"
	as_pg "$PG_BIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PUB_PORT" "$DB" >"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	as_pg "$PG_BIN/pgbench" -i -q -I dtp -s "$SCALE" -h "$SOCK" -p "$SUB_PORT" "$DB" >>"$WORK/init.log" 2>&1 ||
		{ cat "$WORK/init.log" >&2; return 1; }
	if [ "$PRELOAD" = 1 ]; then
		sub "CREATE EXTENSION parallel_apply"
	fi
	if [ "$SCRIPT" = insert ]; then
		pub "ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY"
		sub "ALTER TABLE pgbench_history ADD COLUMN hid bigint PRIMARY KEY"
	fi

	# pgbench_history has no primary key (but with --script insert): it is insert-only, which the
	# default replica identity publishes fine.
	pub "$MARKER_PUB_SQL"
	sub "$MARKER_SUB_SQL"
	pub "CREATE PUBLICATION $PUBNAME FOR TABLE ${TABLES// /, }, pa_bench_marker"
	sub "CREATE SUBSCRIPTION $SUBNAME
	       CONNECTION 'host=127.0.0.1 port=$PUB_PORT dbname=$DB user=postgres'
	       PUBLICATION $PUBNAME WITH (copy_data = true)"
	sub "ALTER SUBSCRIPTION $SUBNAME SET (synchronous_commit = '$SYNC_COMMIT', streaming = $STREAMING)"

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
	local done_tx=""
	run_load "$TX_PER_CLIENT" "${PGBENCH_SCRIPT[@]}" || { record "$mode|$w|$TXNS|||$run|LOAD_FAILED|"; return 1; }
	[ -n "$done_tx" ] || { cat "$WORK/load.log" >&2; record "$mode|$w|$TXNS|||$run|LOAD_FAILED|"; return 1; }
	# The marker row ends the backlog (see define_marker in lib.sh).
	local target
	end_backlog "$run"
	local backlog_mb
	backlog_mb="$(pub "SELECT round((pg_current_wal_lsn() - confirmed_flush_lsn) / 1048576.0, 1) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")"
	log "load done: $done_tx transactions at $load_tps tx/s; backlog ${backlog_mb} MB of WAL, target LSN $target"
	pub "CHECKPOINT"; sub "CHECKPOINT"

	# PostgreSQL's launcher starts no apply worker within
	# wal_retrieve_retry_interval (5 s) of its previous start; a short load
	# must not make the built-in mode pay for that.  Same wait in every mode.
	while [ $((SECONDS - t_disabled)) -lt 6 ]; do sleep 0.5; done

	# Waiter first, then start applying.
	start_waiter "$target" || return 1

	local segs0
	catch_up "$mode" "[parallel_apply.workers = $w]" "$run" stream_probe
	if [ "$status" = ok ]; then
		log "caught up: $done_tx transactions in $seconds s = $rate tx/s (first progress after ${first_s:-?} s); applied on the subscriber after ${applied_s:-?} s = ${applied_rate:-?} tx/s"
		log_cpu "CPU seconds: walsender $cpu_walsender, apply processes $cpu_apply; TCP segments sent: $tcp_segs ($(awk -v a="$tcp_segs" -v n="$done_tx" 'BEGIN { printf "%.2f", a / n }') per transaction)"
	fi

	# Engine statistics (parallel_apply modes).
	if [ "$mode" = pa ]; then
		engine_stats "$label" >"$OUT/stats/$label.txt"
		sed -n '1,12p' "$OUT/stats/$label.txt" | sed 's/^/            /' >&2
	fi

	# Verify: same content on both sides.
	if verifies; then
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
			mismatch_banner "$label" "### table|rows|md5  publisher vs subscriber:" \
				"$(diff "$WORK/hash.pub" "$WORK/hash.sub" | sed 's/^/###   /' || true)"
		fi
	fi

	# Engine problems: show what the subscriber logged.
	log_sub_problems ""
	check_lib_change "$build"
	record "$mode|$w|$done_tx|$seconds|$rate|$run|$status|$load_tps|$build|$first_s|$cpu_ours|$cpu_other|$applied_s|$applied_rate|$cpu_walsender|$cpu_apply|$tcp_segs"
	stop_and_save "$label"
	cp "$WORK/load.log" "$OUT/logs/$label.pgbench.log" 2>/dev/null || true
	return 0
}

# Each mode runs in a subshell with errexit on (run_isolated in lib.sh).
for ((run = 1; run <= REPEAT; run++)); do
	for m in "${MODES[@]}"; do
		mode="${m%%:*}"; w="${m#*:}"; [ "$mode" = builtin ] && w=""
		label="$mode${w:+-$w}-run$run"; [ "$mode" = builtin ] && label="builtin-run$run"
		run_isolated "$label" '*|ok|*' run_mode "$mode" "$w" "$run"
		if [ "$UNRECORDED" = 1 ]; then record "$mode|$w|$TXNS|||$run|FAILED|"; fi
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

# headline: the demo's one line, on "applied s" (the time until the backlog
# is applied on the subscriber): the built-in worker's median against the
# fastest parallel_apply worker count's median, over the runs that ended ok
headline() {
	awk -F'|' '
		function median(list,   n, a, i, j, t) {
			n = split(list, a, " ")
			for (i = 1; i <= n; i++)
				for (j = i + 1; j <= n; j++)
					if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		$7 == "ok" && $13 != "" {
			k = ($1 == "builtin") ? "b" : $2
			ap[k] = ap[k] " " $13; st[k] = st[k] " " $10; nr[k]++
		}
		END {
			if (!("b" in ap)) exit
			b = median(ap["b"]); best = ""
			for (k in ap)
				if (k != "b" && (best == "" || median(ap[k]) < median(ap[best])))
					best = k
			if (best == "") exit
			p = median(ap[best]); s = median(st[best])
			label = best ~ /^a/ ? "adaptive, at most " substr(best, 2) " workers" : best " workers"
			printf "headline: the subscriber applied the backlog %.2fx as fast with parallel_apply (%s: %.2f s)\n", b / p, label, p
			printf "          as with PostgreSQL'"'"'s built-in apply worker (%.2f s)%s.\n", b, (nr["b"] > 1 ? sprintf(", medians of %d runs", nr["b"]) : "")
			printf "          Both times are \"applied s\": from the start of apply until the last transaction of the backlog\n"
			printf "          was committed on the subscriber; parallel_apply'"'"'s start-up took %.2f s (%.0f%% of the built-in'"'"'s time).\n", s, 100 * s / b
			if (s > 0.1 * b)
				printf "          The backlog is small: start-up is more than 10%% of that time; a larger --txns gives a figure it does not dominate.\n"
		}' "$RESULTS_FILE"
}

TABLE="$OUT/results.txt"
{
	echo
	echo "parallel_apply catch-up benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs (${CPU_MODEL:-?}), $((MEM_KB / 1024 / 1024)) GiB RAM, $PG_VERSION, malloc: $ALLOCATOR"
	echo "load:    pgbench $SCRIPT, scale $SCALE, $CLIENTS clients, $TXNS transactions; subscription synchronous_commit = $SYNC_COMMIT, streaming = $STREAMING; fsync = on"
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
	echo
	headline
} | tee "$TABLE"

# Plot: rate vs workers, built-in as a horizontal line.
if command -v gnuplot >/dev/null 2>&1; then
	PA_DAT="$OUT/pa.dat"
	PA_MEAN="$OUT/pa_mean.dat"
	# fixed counts only: an adaptive run (aN) is no point of this curve
	awk -F, 'NR > 1 && $1 == "pa" && $13 == "ok" && $2 !~ /^a/ { print $2, $5 }' "$CSV" >"$PA_DAT"
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

bench_exit '|MISMATCH|' "tables differ"
