#!/usr/bin/env bash
# shellcheck disable=SC2317  # run_mode, and what only it calls, run through run_isolated (lib.sh)
#
# ri_full_bench.sh -- catch-up rate of single-row UPDATEs on a REPLICA
# IDENTITY FULL table: PostgreSQL's built-in apply worker versus
# parallel_apply, in one run.
#
# For every index set of --index, every repetition and every mode of
# --modes (the order alternates between repetitions: builtin pa, pa builtin,
# ...), the script builds a fresh publisher and a fresh subscriber on
# loopback with one table
#
#     t (id bigint, k bigint, grp int, payload text)
#
# of --rows rows (k = id * A mod ROWS, a permutation of 0..ROWS-1 with A
# coprime to ROWS; grp = id % 2; payload 40 bytes).  Both sides are loaded
# identically with generate_series and checked equal; the subscription is
# created with copy_data = false and enabled = false, so it never applies
# before the measurement.
#
#   publisher:  no primary key, REPLICA IDENTITY FULL, an index on k (only so
#               that the publisher's own UPDATEs do not scan the table);
#   subscriber: no primary key, and the index set of --index:
#     selective        CREATE INDEX t_k ON t (k)
#     two-value-first  CREATE INDEX t_grp ON t (grp), then CREATE INDEX t_k ON t (k)
#     none             no index
#     pk               reference: PRIMARY KEY (id) on both sides, default
#                      replica identity, UPDATEs by id
#
# Then VACUUM ANALYZE t on both sides; the backlog is built with pgbench
# (-c 4) on the publisher: single-row transactions
#     UPDATE t SET payload = md5(random()::text) WHERE k = <random k>
# (WHERE id = <random id> for pk).  The clock starts at ALTER SUBSCRIPTION
# ... ENABLE (built-in) or SELECT parallel_apply.attach() (parallel_apply,
# on the disabled subscription) and stops when the publisher's slot
# confirmed_flush_lsn reaches the publisher's WAL position taken after the
# load.  rate = updates / seconds.  Finally the table is compared on both
# sides (row count + ordered md5).
#
# Run as root (clusters run as the unprivileged user "postgres" via runuser),
# or directly as a non-root user who may run initdb.
#
# Exit status: 0 all modes ran and every table matched; 2 a mismatch, a
# timeout or a failure in some mode; 1 usage or setup error.

set -Eeuo pipefail

BENCH_NAME=ri_full_bench
BENCH_PREFIX=ri_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- defaults --
# (and those of lib.sh: --timeout 3600, --poll 0.1, --shared-buffers 1GB, ...)
ROWS=1000000
UPDATES=5000
BUILTIN_UPDATES=500
INDEXES="selective"
WORKERS=4
RI_FULL_INDEX=auto
REPEAT=1
MODES_ARG="builtin pa"
CLIENTS=4
PUB_PORT=54341
SUB_PORT=54342
CLUSTER_CONF=("maintenance_work_mem = 256MB")
ALL_INDEXES="selective two-value-first none pk"

usage() {
	cat <<EOF
Usage: $0 [options]

Catch-up rate of single-row UPDATEs on a REPLICA IDENTITY FULL table:
built-in apply vs parallel_apply.  Builds throw-away clusters on 127.0.0.1.

  --rows N               rows in t (default $ROWS)
  --updates N            single-row UPDATE transactions in the backlog
                         (default $UPDATES; rounded down to a multiple of --clients)
  --builtin-updates N    backlog of the built-in mode for the REPLICA IDENTITY
                         FULL index sets, whose built-in apply scans the table
                         per row (default $BUILTIN_UPDATES); pk uses --updates
  --index "LIST"         index sets of the subscriber, one mode run each:
                         selective | two-value-first | none | pk | all
                         (default "$INDEXES")
  --workers N            parallel_apply.workers (default $WORKERS)
  --ri-full-index auto|off
                         parallel_apply.ri_full_index on the subscriber
                         (default $RI_FULL_INDEX; a build without the GUC is
                         run as is and labelled n/a)
  --modes "LIST"         builtin and/or pa (default "$MODES_ARG"); the order
                         alternates between repetitions
  --repeat N             repetitions (default $REPEAT)
  --clients N            pgbench clients building the backlog (default $CLIENTS)
  --out DIR              results directory (default \$TMPDIR/ri_full_bench-<date>)
  --sub-conf 'N = V'     extra postgresql.conf line for the subscriber (repeatable)
  --shared-buffers S     shared_buffers of both clusters (default $SHARED_BUFFERS)
  --pub-port P           publisher port (default $PUB_PORT)
  --sub-port P           subscriber port (default $SUB_PORT)
  --timeout SEC          give up a catch-up after SEC seconds (default $TIMEOUT)
  --poll SEC             slot polling interval (default $POLL)
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
		--rows) ROWS="$2" ;;
		--updates) UPDATES="$2" ;;
		--builtin-updates) BUILTIN_UPDATES="$2" ;;
		--index) INDEXES="$2" ;;
		--workers) WORKERS="$2" ;;
		--ri-full-index) RI_FULL_INDEX="$2" ;;
		--modes) MODES_ARG="$2" ;;
		--repeat) REPEAT="$2" ;;
		--clients) CLIENTS="$2" ;;
		*) OPT_SHIFT=0 ;;
	esac
}

parse_args "$@"
check_uints ROWS UPDATES BUILTIN_UPDATES WORKERS REPEAT CLIENTS PUB_PORT SUB_PORT TIMEOUT
[ "$ROWS" -ge 100 ] && [ "$ROWS" -le 1000000000 ] || die "--rows must be between 100 and 1000000000"
[ "$REPEAT" -ge 1 ] && [ "$CLIENTS" -ge 1 ] || die "--repeat and --clients must be >= 1"
[ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 32 ] || die "--workers must be between 1 and 32"
[ "$UPDATES" -ge "$CLIENTS" ] || die "--updates must be >= --clients"
[ "$BUILTIN_UPDATES" -ge "$CLIENTS" ] || die "--builtin-updates must be >= --clients"
case "$RI_FULL_INDEX" in auto|off) ;; *) die "--ri-full-index must be auto or off" ;; esac
[ "$PUB_PORT" != "$SUB_PORT" ] || die "--pub-port and --sub-port must differ"
[ "$INDEXES" = all ] && INDEXES="$ALL_INDEXES"
INDEX_LIST=()
for i in $INDEXES; do
	case " $ALL_INDEXES " in *" $i "*) ;; *) die "--index: unknown index set '$i' (selective, two-value-first, none, pk, all)" ;; esac
	case " ${INDEX_LIST[*]-} " in *" $i "*) ;; *) INDEX_LIST+=("$i") ;; esac
done
[ "${#INDEX_LIST[@]}" -gt 0 ] || die "--index: nothing to run"
MODE_LIST=()
for m in $MODES_ARG; do
	case "$m" in builtin|pa) ;; *) die "--modes: unknown mode '$m' (builtin, pa)" ;; esac
	case " ${MODE_LIST[*]-} " in *" $m "*) ;; *) MODE_LIST+=("$m") ;; esac
done
[ "${#MODE_LIST[@]}" -gt 0 ] || die "--modes: nothing to run"
NEED_EXT=0
case " ${MODE_LIST[*]} " in *" pa "*) NEED_EXT=1 ;; esac
JOBS=2; [ "$CLIENTS" -lt 2 ] && JOBS=1

# k = id * KMUL mod ROWS: a permutation of 0..ROWS-1 when gcd(KMUL, ROWS) = 1.
gcd() { local a="$1" b="$2" t; while [ "$b" -ne 0 ]; do t=$((a % b)); a=$b; b=$t; done; echo "$a"; }
KMUL=1000003
while [ "$(gcd "$KMUL" "$ROWS")" != 1 ]; do KMUL=$((KMUL + 2)); done

# -------------------------------------------------------------- environment --
bench_env
check_ports
make_dirs
set_traps

# ------------------------------------------------------------------ helpers --
# The table.  Identical on both sides: no random(), only functions of id.
TABLE_SQL="CREATE TABLE t (id bigint, k bigint, grp int, payload text)"
LOAD_SQL="INSERT INTO t
  SELECT i, (i * $KMUL) % $ROWS, (i % 2)::int, 'p' || lpad(i::text, 7, '0') || md5(i::text)
    FROM generate_series(1::bigint, $ROWS) AS i"

# "rows|md5": rows hashed in (id, text) order inside groups of 100,000 ids,
# groups in order, so no string_agg grows past ~100k rows.
HASH_SQL="
SELECT coalesce(sum(n), 0) || '|' || coalesce(md5(string_agg(h, '' ORDER BY g)), '-')
  FROM (SELECT id / 100000 AS g, count(*) AS n, md5(string_agg(t::text, E'\\n' ORDER BY id, t::text)) AS h
          FROM t GROUP BY 1) s"

# Lookups on the subscriber's t: "seq|N" and "<index>|N" lines
# (pg_stat_user_tables.seq_scan, pg_stat_user_indexes.idx_scan).
SCANS_SQL="
SELECT 'seq|' || coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relid = 'public.t'::regclass
UNION ALL
SELECT indexrelname || '|' || coalesce(idx_scan, 0) FROM pg_stat_user_indexes WHERE relid = 'public.t'::regclass"

define_waiter "kB of WAL to confirm" "round(coalesce(p_target - c, 0) / 1024.0)"
define_marker

# pgbench scripts: one single-row UPDATE per transaction.
UPD_K_FILE="$WORK/update_by_k.sql"
UPD_ID_FILE="$WORK/update_by_id.sql"
cat >"$UPD_K_FILE" <<EOF
\set id random(1, $ROWS)
\set k (:id * $KMUL) % $ROWS
UPDATE t SET payload = md5(random()::text) WHERE k = :k;
EOF
cat >"$UPD_ID_FILE" <<EOF
\set id random(1, $ROWS)
UPDATE t SET payload = md5(random()::text) WHERE id = :id;
EOF
chmod 644 "$UPD_K_FILE" "$UPD_ID_FILE"

# ------------------------------------------------------------- machine info --
machine_info "" \
	"settings:   rows=$ROWS updates=$UPDATES builtin_updates=$BUILTIN_UPDATES clients=$CLIENTS jobs=$JOBS k=id*$KMUL%$ROWS" \
	"            index sets=${INDEX_LIST[*]} modes=${MODE_LIST[*]} (alternating) repeat=$REPEAT" \
	"            parallel_apply.workers=$WORKERS parallel_apply.ri_full_index=$RI_FULL_INDEX" \
	"            shared_buffers=$SHARED_BUFFERS fsync=on synchronous_commit(subscription)=off preload=$PRELOAD"

init_results "index_set,mode,workers,run,updates,seconds,rate,speedup_vs_builtin,applied_seconds,applied_rate,first_progress_s,rows,ri_full_index,sub_scans,cpu_clusters_pct,cpu_other_pct,load_tps,backlog_kb,so_md5,status"
# RESULTS_FILE: "index|mode|run|updates|seconds|rate|applied_s|applied_rate|first_s|ri|scans|cpu_ours|cpu_other|load_tps|backlog_kb|so_md5|status"

# fail_line INDEX MODE RUN UPDATES SO_MD5 STATUS -> a results line without figures
fail_line() { printf '%s|%s|%s|%s||||||||||||%s|%s\n' "$1" "$2" "$3" "$4" "$5" "$6"; }

# scans_delta BEFORE AFTER -> "seq=N t_k=M ..." (lookups during the catch-up)
scans_delta() {
	awk -F'|' 'NR == FNR { b[$1] = $2; next } NF == 2 { printf "%s%s=%d", (n++ ? " " : ""), $1, $2 - b[$1] } END { print "" }' "$1" "$2"
}

# mode_updates INDEXSET MODE -> updates in that mode's backlog (a multiple of --clients)
mode_updates() {
	local n="$UPDATES"
	if [ "$2" = builtin ] && [ "$1" != pk ]; then n="$BUILTIN_UPDATES"; fi
	echo $(((n / CLIENTS) * CLIENTS))
}

# ------------------------------------------------------------- one mode run --
run_mode() {	# run_mode INDEXSET MODE RUN
	local ix="$1" mode="$2" run="$3"
	local label="$ix-$mode-run$run"
	local status=ok seconds="" rate="" load_tps="" build first_s="" cpu_ours="" cpu_other=""
	local applied_s="" applied_rate="" ri="-" scans="" backlog_kb="" n_upd
	build="$(so_md5)"
	n_upd="$(mode_updates "$ix" "$mode")"
	local per_client=$((n_upd / CLIENTS))

	log "=== $label: fresh clusters ($ROWS rows, $n_upd updates)"
	if [ "$mode" = pa ]; then fresh_clusters "parallel_apply.workers = $WORKERS"; else fresh_clusters; fi
	start_clusters || { record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" START_FAILED)"; return 1; }
	create_databases
	if [ "$PRELOAD" = 1 ]; then sub "CREATE EXTENSION parallel_apply"; fi

	# parallel_apply.ri_full_index (sighup): set only if this build has it.
	if [ "$mode" = pa ]; then
		if [ "$(sub "SELECT count(*) FROM pg_settings WHERE name = 'parallel_apply.ri_full_index'")" = 1 ]; then
			sub "ALTER SYSTEM SET parallel_apply.ri_full_index = '$RI_FULL_INDEX'" >/dev/null
			sub "SELECT pg_reload_conf()" >/dev/null
			sleep 0.3
			ri="$(sub "SHOW parallel_apply.ri_full_index")"
			[ "$ri" = "$RI_FULL_INDEX" ] || { log "parallel_apply.ri_full_index is '$ri', not '$RI_FULL_INDEX'"; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" CONFIG_FAILED)"; return 1; }
		else
			ri="n/a"
			log "WARNING: this build of parallel_apply has no parallel_apply.ri_full_index (run as is; rows labelled n/a)"
		fi
	fi

	local t0s=$SECONDS
	log "load: $ROWS rows on both sides (generate_series), subscriber index set '$ix'"
	pub "$TABLE_SQL"; sub "$TABLE_SQL"
	pub "$LOAD_SQL" & local lp=$!
	sub "$LOAD_SQL"
	wait "$lp"
	if [ "$ix" = pk ]; then
		pub "ALTER TABLE t ADD PRIMARY KEY (id)"
		sub "ALTER TABLE t ADD PRIMARY KEY (id)"
	else
		# The publisher's index only serves its own UPDATEs ... WHERE k = ...
		pub "CREATE INDEX t_pub_k ON t (k)"
		pub "ALTER TABLE t REPLICA IDENTITY FULL"
		case "$ix" in
			selective) sub "CREATE INDEX t_k ON t (k)" ;;
			two-value-first) sub "CREATE INDEX t_grp ON t (grp)"; sub "CREATE INDEX t_k ON t (k)" ;;
			none) ;;
		esac
	fi
	pub "VACUUM ANALYZE t"; sub "VACUUM ANALYZE t"
	local distinct
	distinct="$(pub "SELECT count(DISTINCT k) FROM t")"
	[ "$distinct" = "$ROWS" ] || { log "k is not unique ($distinct distinct values of $ROWS)"; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" SETUP_FAILED)"; return 1; }
	local h0p h0s
	h0p="$(pub "$HASH_SQL")"; h0s="$(sub "$HASH_SQL")"
	if [ "$h0p" != "$h0s" ]; then
		log "initial tables differ: publisher $h0p, subscriber $h0s"; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" SETUP_FAILED)"; return 1
	fi
	log "tables loaded and equal ($h0p) in $((SECONDS - t0s)) s; subscriber: $(sub "SELECT string_agg(indexrelid::regclass::text || ' ' || pg_size_pretty(pg_relation_size(indexrelid)), ', ' ORDER BY indexrelid) FROM pg_index WHERE indrelid = 't'::regclass" | sed 's/^$/no index/'), publisher replica identity $(pub "SELECT CASE relreplident WHEN 'f' THEN 'FULL' WHEN 'd' THEN 'default' ELSE relreplident::text END FROM pg_class WHERE oid = 't'::regclass")"

	pub "$MARKER_PUB_SQL"
	sub "$MARKER_SUB_SQL"
	pub "CREATE PUBLICATION $PUBNAME FOR TABLE t, ri_bench_marker"
	# copy_data = false: both sides were loaded identically (checked above).
	# enabled = false: nothing applies until the measurement starts.
	sub "CREATE SUBSCRIPTION $SUBNAME
	       CONNECTION 'host=127.0.0.1 port=$PUB_PORT dbname=$DB user=postgres'
	       PUBLICATION $PUBNAME WITH (copy_data = false, enabled = false, synchronous_commit = off)" \
		2>"$WORK/create_sub.err" || { cat "$WORK/create_sub.err" >&2; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" SETUP_FAILED)"; return 1; }
	local notready
	notready="$(sub "SELECT count(*) FILTER (WHERE r.srsubstate <> 'r') || '/' || count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = '$SUBNAME'")"
	[ "$notready" = "0/2" ] || { log "subscription tables not ready: $notready (not ready/all)"; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" SYNC_FAILED)"; return 1; }
	pub "CHECKPOINT"; sub "CHECKPOINT"

	local script="$UPD_K_FILE"; [ "$ix" = pk ] && script="$UPD_ID_FILE"
	log "backlog: pgbench -n -c $CLIENTS -j $JOBS -t $per_client -f $(basename "$script") on the publisher, subscription disabled"
	local done_tx=""
	run_load "$per_client" -f "$script" || { record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" LOAD_FAILED)"; return 1; }
	[ "$done_tx" = "$n_upd" ] || { cat "$WORK/load.log" >&2; record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" LOAD_FAILED)"; return 1; }
	local target
	end_backlog "$run"
	backlog_kb="$(pub "SELECT round((pg_current_wal_lsn() - confirmed_flush_lsn) / 1024.0) FROM pg_replication_slots WHERE slot_name = '$SUBNAME'")"
	log "backlog done: $done_tx updates at $load_tps tx/s; ${backlog_kb} kB of WAL, target LSN $target"
	pub "CHECKPOINT"; sub "CHECKPOINT"
	sub "$SCANS_SQL" >"$WORK/scans.before"

	start_waiter "$target" || { record "$(fail_line "$ix" "$mode" "$run" "$n_upd" "$build" WAITER_FAILED)"; return 1; }

	catch_up "$mode" "[workers $WORKERS, ri_full_index $ri]" "$run"
	if [ "$status" = ok ]; then
		log "caught up: $done_tx updates in $seconds s = $rate rows/s (first progress after ${first_s:-?} s; applied on the subscriber after ${applied_s:-?} s)"
		log_cpu ""
	fi

	# Engine statistics, then stop applying, so that the apply processes
	# exit and flush their table statistics (pg_stat_user_*), then read
	# which way rows were looked up.
	if [ "$mode" = pa ]; then
		{
			engine_stats "$label"
			if [ "$(sub "SELECT to_regclass('parallel_apply.stat_relations') IS NOT NULL")" = t ]; then
				sub_show "SELECT * FROM parallel_apply.stat_relations"
			else
				echo "(no parallel_apply.stat_relations in this build)"
			fi
		} >"$OUT/stats/$label.txt"
		sed 's/^/            /' "$OUT/stats/$label.txt" >&2
		sub "SELECT parallel_apply.pause('$SUBNAME')" >/dev/null 2>&1 || { log "pause() failed; waiting 2 s for the statistics instead"; sleep 2; }
	else
		sub "ALTER SUBSCRIPTION $SUBNAME DISABLE" >/dev/null 2>&1 || true
		local t=0
		while [ "$(sub "SELECT count(*) FROM pg_stat_subscription WHERE subname = '$SUBNAME' AND pid IS NOT NULL")" != 0 ]; do
			t=$((t + 1)); [ "$t" -gt 300 ] && { log "the apply worker did not exit"; break; }
			sleep 0.1
		done
	fi
	sleep 0.2
	sub "$SCANS_SQL" >"$WORK/scans.after" 2>/dev/null || : >"$WORK/scans.after"
	scans="$(scans_delta "$WORK/scans.before" "$WORK/scans.after")"
	log "lookups on the subscriber's t during the catch-up (scans started): $scans"

	# Verify: same content on both sides.
	if verifies; then
		local hp="" hs="" herr=""
		hp="$(pub "$HASH_SQL" 2>"$WORK/hash.err")" || herr="publisher"
		hs="$(sub "$HASH_SQL" 2>>"$WORK/hash.err")" || herr="$herr subscriber"
		if [ -n "$herr" ]; then
			if [ "$status" = ok ]; then status=VERIFY_FAILED; fi
			log "verify: could not hash t on the $herr: $(head -n 2 "$WORK/hash.err" | tr '\n' ' ')"
		elif [ "$hp" = "$hs" ] && [ -n "$hp" ]; then
			log "verify: t equal on both sides (rows|md5 $hp)"
		elif [ "$status" != ok ]; then
			log "verify: t differs, as expected after a $status: publisher $hp, subscriber $hs"
		else
			status=MISMATCH
			mismatch_banner "$label" "### rows|md5 publisher:  $hp" "### rows|md5 subscriber: $hs"
		fi
	fi

	# (pause() at the end makes the engine's processes log "terminating
	# background worker ... due to administrator command": not a problem)
	log_sub_problems 'FATAL:  terminating background worker "parallel_apply [a-z]*" due to administrator command'
	check_lib_change "$build"

	record "$ix|$mode|$run|$done_tx|$seconds|$rate|$applied_s|$applied_rate|$first_s|$ri|$scans|$cpu_ours|$cpu_other|$load_tps|$backlog_kb|$build|$status"
	stop_and_save "$label"
	cp "$WORK/load.log" "$OUT/logs/$label.pgbench.log" 2>/dev/null || true
	return 0
}

# Each mode runs in a subshell with errexit on (run_isolated in lib.sh).
for ix in "${INDEX_LIST[@]}"; do
	for ((run = 1; run <= REPEAT; run++)); do
		order=("${MODE_LIST[@]}")
		if [ $((run % 2)) = 0 ] && [ "${#MODE_LIST[@]}" = 2 ]; then
			order=("${MODE_LIST[1]}" "${MODE_LIST[0]}")
		fi
		for mode in "${order[@]}"; do
			label="$ix-$mode-run$run"
			run_isolated "$label" '*|ok' run_mode "$ix" "$mode" "$run"
			if [ "$UNRECORDED" = 1 ]; then record "$(fail_line "$ix" "$mode" "$run" "$(mode_updates "$ix" "$mode")" "$(so_md5)" FAILED)"; fi
		done
	done
done

# ------------------------------------------------------------------ report --
builtin_rate() {	# builtin_rate INDEXSET RUN -> rate of the built-in mode there
	awk -F'|' -v ix="$1" -v r="$2" '$1 == ix && $2 == "builtin" && $3 == r && $17 == "ok" { print $6; exit }' "$RESULTS_FILE"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

TABLE="$OUT/results.txt"
{
	echo
	echo "REPLICA IDENTITY FULL catch-up benchmark -- $(date '+%Y-%m-%d %H:%M %Z')"
	echo "machine: $(nproc) CPUs (${CPU_MODEL:-?}), $((MEM_KB / 1024 / 1024)) GiB RAM, $PG_VERSION; parallel_apply.so $(so_md5)"
	echo "table:   $ROWS rows; backlog: single-row UPDATEs by k (by id for pk), pgbench -c $CLIENTS; parallel_apply.workers = $WORKERS"
	echo
	printf '%-16s | %-14s | %3s | %8s | %9s | %9s | %10s | %9s | %7s | %-5s | %-26s | %9s | %s\n' \
		"index set" mode run updates seconds "rows/s" "x built-in" "applied s" "start s" "ri" "lookups on t (sub)" "cpu/other" status
	printf '%s\n' "-----------------+----------------+-----+----------+-----------+-----------+------------+-----------+---------+-------+----------------------------+-----------+--------"
	while IFS='|' read -r ix m run n s rate as ar fp ri sc co cx lt bk so st; do
		b="$(builtin_rate "$ix" "$run")"
		sp=""
		if [ -n "$b" ] && [ -n "$rate" ] && [ "$st" = ok ]; then
			sp="$(awk -v a="$rate" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b }')"
		fi
		name="built-in"; [ "$m" = pa ] && name="parallel_apply"
		cpu="-"; [ -n "$co" ] && cpu="$co%/$cx%"
		printf '%-16s | %-14s | %3s | %8s | %9s | %9s | %10s | %9s | %7s | %-5s | %-26s | %9s | %s\n' \
			"$ix" "$name" "$run" "${n:--}" "${s:--}" "${rate:--}" "${sp:+${sp}x}" "${as:--}" "${fp:--}" "${ri:--}" "${sc:--}" "$cpu" "$st"
		w=""; [ "$m" = pa ] && w="$WORKERS"
		echo "$ix,$m,$w,$run,$n,$s,$rate,$sp,$as,$ar,$fp,$ROWS,$ri,$sc,$co,$cx,$lt,$bk,$so,$st" >>"$CSV"
	done <"$RESULTS_FILE"
	if [ "$REPEAT" -gt 1 ]; then
		echo
		echo "medians over the repetitions that ended ok:"
		printf '%-16s | %-14s | %4s | %9s | %9s | %9s | %10s\n' "index set" mode runs "rows/s" min max "x built-in"
		printf '%s\n' "-----------------+----------------+------+-----------+-----------+-----------+-----------"
		for ix in "${INDEX_LIST[@]}"; do
			bmed="$(awk -F'|' -v ix="$ix" '$1 == ix && $2 == "builtin" && $17 == "ok" { print $6 }' "$RESULTS_FILE" | median)"
			for m in "${MODE_LIST[@]}"; do
				vals="$(awk -F'|' -v ix="$ix" -v m="$m" '$1 == ix && $2 == m && $17 == "ok" { print $6 }' "$RESULTS_FILE")"
				cnt="$(printf '%s' "$vals" | grep -c . || true)"
				med="$(printf '%s\n' "$vals" | grep . | median || true)"
				mn="$(printf '%s\n' "$vals" | grep . | sort -g | head -n 1 || true)"
				mx="$(printf '%s\n' "$vals" | grep . | sort -g | tail -n 1 || true)"
				sp=""
				if [ -n "$bmed" ] && [ -n "$med" ]; then sp="$(awk -v a="$med" -v b="$bmed" 'BEGIN { if (b > 0) printf "%.2fx", a / b }')"; fi
				name="built-in"; [ "$m" = pa ] && name="parallel_apply"
				printf '%-16s | %-14s | %4s | %9s | %9s | %9s | %10s\n' "$ix" "$name" "$cnt" "${med:--}" "${mn:--}" "${mx:--}" "${sp:--}"
			done
		done
	fi
	echo
	echo "rows/s = single-row UPDATE transactions in the backlog / seconds from ENABLE (built-in) or attach()"
	echo "(parallel_apply) until the publisher's slot confirmed_flush_lsn >= pg_current_wal_lsn() after the backlog;"
	echo "the built-in mode of the FULL index sets applies --builtin-updates ($BUILTIN_UPDATES), so compare rates, not seconds;"
	echo "x built-in = rows/s / built-in rows/s of the same index set and repetition;"
	echo "applied s = until the marker row after the backlog was committed on the subscriber; start s = until the slot first moved;"
	echo "ri = parallel_apply.ri_full_index (n/a: not in this build); lookups on t = table scans (seq) and index scans"
	echo "started on the subscriber's t during the catch-up (pg_stat_user_tables / pg_stat_user_indexes; PostgreSQL's"
	echo "sequential lookup starts two table scans per row, an index lookup one index scan);"
	echo "cpu/other = CPU used by both clusters / by everything else, in % of all $NCPU CPUs."
} | tee "$TABLE"

bench_exit '|MISMATCH$' "table differs"
