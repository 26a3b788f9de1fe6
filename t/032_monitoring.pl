
# Copyright (c) parallel_apply authors
#
# Monitoring (issue 14): the lag, error and per-worker columns of
# parallel_apply.stat_subscription and stat_workers, and the apply workers'
# lines in pg_stat_activity.  Subscriber: 4 workers, group_size = 1 (each
# remote transaction commits on its own), retry_interval 200 ms,
# lc_messages = C; publisher with pg_walinspect when available (the LSN of a
# transaction's COMMIT record is what "finished at" names).
#
#  1. lag, deterministically: T0 is applied, then a session on the
#     subscriber locks row 2; the publisher commits T1 (row 1), T2 (row 2)
#     and T3 (row 3).  T1 is applied, T2 blocks on the row lock, T3 (on
#     another worker) waits for its commit turn.  Meanwhile:
#     stat_subscription has pending_bytes > 0, pending_transactions >= 2,
#     apply_lag not NULL and growing past 200 ms, last_msg_send_time (at or
#     after T3 was written), last_msg_receipt_time, latest_end_lsn and
#     latest_end_time set; stat_workers shows T2's worker with remote_xid =
#     T2's xid, finish_lsn = T2's COMMIT LSN and xact_start, T3's worker with
#     waiting_for 'commit turn' (or 'earlier transaction') for T2 (xid and
#     finish LSN), the leader row with none of these; pg_stat_activity.query
#     of T2's worker is exactly 'applying remote transaction <xid> finished
#     at <lsn>', of T3's worker the 'waiting for' line.  After the lock is
#     released: pending_bytes 0, pending_transactions 0, apply_lag
#     '00:00:00', both sides equal, every worker idle (stat_workers columns
#     NULL, pg_stat_activity state 'idle' with no query text);
#  2. the SKIP walkthrough: a local row collides with the second row of a
#     three-row publisher transaction E, F follows it.  stat_subscription:
#     last_error 'conflict detected on relation "public.err_tab":
#     conflict=insert_exists', last_error_xid = E's xid, last_error_lsn =
#     E's COMMIT LSN (= conflict_history.finish_lsn), last_error_time set,
#     apply_error_count >= 1; ALTER SUBSCRIPTION ... SKIP built from the view
#     alone: exactly E's rows are missing, F arrives, subskiplsn is cleared,
#     the four last_error* columns become NULL;
#  3. reset_subscription_stats('sub') by a superuser sets apply_error_count
#     to 0;
#  4. privileges: the subscription is handed to alice (not a superuser);
#     with an error standing (G fails on a duplicate key) a superuser, a
#     member of pg_read_all_stats (reader) and the owner see last_error, a
#     plain role (nobody) gets NULL for it but sees last_error_time,
#     last_error_xid, last_error_lsn and apply_error_count; paused, the lag
#     columns are NULL and the error columns stay; nobody and reader may
#     not reset the counters (42501), the owner may: apply_error_count 0,
#     last_error* kept; fixed and resumed: G and H applied, last_error*
#     NULL, no error counted.
# With PA_NO_ENGINE=1 (PostgreSQL 15's own worker) the row lock, SKIP (with
# the LSN from pg_walinspect or the log) and the data are checked; the
# views are the engine's.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $t_start = time;
my $engine = pa_engine();

my $pub = pa_publisher('publisher', conf => "lc_messages = 'C'\n");
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "lc_messages = 'C'\n"
	  . ($engine ? "parallel_apply.group_size = 1\nparallel_apply.retry_interval = 200\n" : ''));

my $walinspect = $pub->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_walinspect'") eq '1';
$pub->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect') if $walinspect;
note 'pg_walinspect ' . ($walinspect ? 'available' : 'not available');

pa_both($pub, $sub, q{
CREATE TABLE lag_tab (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE err_tab (id int PRIMARY KEY, v text);
});
$pub->safe_psql('postgres', 'INSERT INTO lag_tab SELECT g, 0 FROM generate_series(1, 10) g');
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

my $LSN = qr/[0-9A-F]+\/[0-9A-F]+/;

sub q_sub
{
	my ($sql, $role) = @_;
	$sql = "SET ROLE $role;\n$sql" if defined $role;
	return $sub->safe_psql('postgres', $sql);
}

# one row of stat_subscription for 'sub' (columns joined by '|')
sub sstat
{
	my ($cols, $role) = @_;
	return q_sub("SELECT $cols FROM parallel_apply.stat_subscription WHERE subname = 'sub'", $role);
}

# Run $sql in one transaction on the publisher: { xid (32 bits), lsn (of its
# COMMIT record, undef without pg_walinspect), written (clock_timestamp()
# before COMMIT) }
sub pub_txn
{
	my ($sql) = @_;
	my $from = $pub->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	my ($fxid, $ts) = split /\|/, $pub->safe_psql('postgres',
		"BEGIN; $sql; SELECT pg_current_xact_id() || '|' || clock_timestamp(); COMMIT;");
	my $xid = $fxid % 4294967296;
	my $lsn;
	$lsn = $pub->safe_psql('postgres', qq{
SELECT start_lsn FROM pg_get_wal_records_info('$from', pg_current_wal_flush_lsn())
WHERE xid = '$xid'::xid AND resource_manager = 'Transaction' AND record_type = 'COMMIT'})
	  if $walinspect;
	$lsn = undef if defined $lsn && $lsn eq '';
	return { xid => $xid, lsn => $lsn, written => $ts };
}

sub rows
{
	my ($node, $where) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(e::text, ',' ORDER BY id) FROM err_tab e WHERE $where");
}

# the LSN of the ERROR the subscriber logged from $pos for remote
# transaction $xid ("... in transaction N, finished at X/Y")
sub logged_finish_lsn
{
	my ($pos, $xid, $seconds) = @_;
	my $m = pa_wait_log_for($sub, qr/in transaction $xid, finished at $LSN/, $pos, $seconds);
	return defined $m && $m =~ /finished at ($LSN)/ ? $1 : undef;
}

my $pos;
my ($pid2, $pid3) = ('?', '?');    # the workers of T2 and T3

# ================================================================ 1. lag
$pub->safe_psql('postgres', 'UPDATE lag_tab SET v = v + 1 WHERE id = 10');    # T0
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'lag_tab');
SKIP:
{
	skip 'stat_subscription is the engine\'s', 1 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT pending_bytes || ',' || pending_transactions || ',' || apply_lag FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'0,0,00:00:00', 20),
		'lag: caught up after T0: pending_bytes 0, pending_transactions 0, apply_lag 00:00:00');
}

my $locker = $sub->background_psql('postgres', on_error_stop => 1);
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT * FROM lag_tab WHERE id = 2 FOR UPDATE');
my $t1 = pub_txn('UPDATE lag_tab SET v = v + 1 WHERE id = 1');
my $t2 = pub_txn('UPDATE lag_tab SET v = v + 1 WHERE id = 2');
my $t3 = pub_txn('UPDATE lag_tab SET v = v + 1 WHERE id = 3');
note "T1 $t1->{xid}, T2 $t2->{xid} at " . ($t2->{lsn} // '?') . ", T3 $t3->{xid} at " . ($t3->{lsn} // '?');

ok( pa_poll_for($sub, q{
SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE a.backend_type IN ('parallel_apply worker', 'logical replication worker') AND NOT l.granted
  AND l.locktype = 'transactionid'}, 't', 30),
	'lag: an apply worker waits for the row lock');
ok(pa_poll_for($sub, 'SELECT v FROM lag_tab WHERE id = 1', '1', 30), 'lag: T1 (independent) is applied');
is($sub->safe_psql('postgres', 'SELECT string_agg(v::text, \',\' ORDER BY id) FROM lag_tab WHERE id IN (2, 3)'),
	'0,0', 'lag: T2 and T3 are not committed while T2 is blocked');

SKIP:
{
	skip 'stat_subscription, stat_workers and the workers\' activity are the engine\'s', 19
	  unless $engine;

	# stat_workers: T2's worker, T3's worker waiting
	my $w_sql = "SELECT pid || '|' || remote_xid || '|' || finish_lsn || '|' || (xact_start IS NOT NULL AND xact_start <= now()) || '|' || coalesce(waiting_for, '') || '|' || coalesce(waiting_for_xid::text, '') || '|' || coalesce(waiting_for_lsn::text, '') FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply' AND remote_xid = ";
	ok(pa_poll_for($sub, "SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND remote_xid = '$t2->{xid}' AND waiting_for IS NULL", '1', 30),
		'stat_workers: one worker applies T2 (remote_xid) and waits for nothing of the engine\'s');
	ok(pa_poll_for($sub, "SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND remote_xid = '$t3->{xid}' AND waiting_for IS NOT NULL", '1', 30),
		'stat_workers: another worker applied T3 and waits');
	my ($x2, $lsn2, $start2, $wf2, $wfx2, $wfl2, $x3, $lsn3, $start3, $wf3, $wfx3, $wfl3);
	($pid2, $x2, $lsn2, $start2, $wf2, $wfx2, $wfl2) =
	  map { $_ // '?' } (split(/\|/, q_sub($w_sql . "'$t2->{xid}'"), -1))[ 0 .. 6 ];
	($pid3, $x3, $lsn3, $start3, $wf3, $wfx3, $wfl3) =
	  map { $_ // '?' } (split(/\|/, q_sub($w_sql . "'$t3->{xid}'"), -1))[ 0 .. 6 ];
	note "stat_workers:\n" . q_sub('SELECT * FROM parallel_apply.stat_workers');
	like($lsn2, qr/\A$LSN\z/, "stat_workers: T2's finish_lsn is set ($lsn2)");
	SKIP:
	{
		skip 'no pg_walinspect on the publisher', 2 unless defined $t2->{lsn} && defined $t3->{lsn};
		is($lsn2, $t2->{lsn}, 'stat_workers: T2\'s finish_lsn is the LSN of its COMMIT record');
		is($lsn3, $t3->{lsn}, 'stat_workers: T3\'s finish_lsn is the LSN of its COMMIT record');
	}
	is($start2, 'true', 'stat_workers: T2\'s xact_start is set (and not in the future)');
	isnt($pid3, $pid2, 'stat_workers: T3 is on another worker than T2');
	ok($wf3 eq 'commit turn' || $wf3 eq 'earlier transaction',
		"stat_workers: T3's worker waits for 'commit turn' or 'earlier transaction' ($wf3)");
	is("$wfx3 $wfl3", "$t2->{xid} $lsn2",
		'stat_workers: T3\'s worker waits for T2 (waiting_for_xid, waiting_for_lsn)');
	is( q_sub(
			"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'leader' AND num_nulls(remote_xid, finish_lsn, xact_start, waiting_for, waiting_for_xid, waiting_for_lsn) = 6"
		),
		'1',
		'stat_workers: the leader row has no remote transaction');

	# pg_stat_activity
	my $act = q_sub("SELECT backend_type || '|' || state || '|' || query FROM pg_stat_activity WHERE pid = '$pid2'");
	is($act,
		"parallel_apply worker|active|applying remote transaction $t2->{xid} finished at $lsn2",
		'pg_stat_activity: T2\'s worker: "applying remote transaction <xid> finished at <lsn>"');
	my $waitline =
	  $wf3 eq 'commit turn'
	  ? 'waiting for its commit turn'
	  : "waiting for remote transaction $t2->{xid} finished at $lsn2 to commit";
	like(q_sub("SELECT query FROM pg_stat_activity WHERE pid = '$pid3'"),
		qr/\Aremote transaction $t3->{xid} finished at \Q$lsn3\E: \Q$waitline\E\z/,
		"pg_stat_activity: T3's worker: \"remote transaction <xid> finished at <lsn>: $waitline\"");

	# stat_subscription
	is(sstat('pending_bytes > 0, pending_transactions >= 2, apply_lag IS NOT NULL'),
		't|t|t', 'stat_subscription: pending_bytes > 0, pending_transactions >= 2, apply_lag set');
	note 'stat_subscription: ' . sstat('received_lsn, applied_lsn, pending_bytes, pending_transactions, apply_lag');
	ok( pa_poll_for($sub,
			"SELECT apply_lag > interval '200 ms' FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			't', 30),
		'stat_subscription: apply_lag grows past 200 ms while T2 is blocked');
	is(sstat("apply_lag < interval '10 min'"), 't', 'stat_subscription: apply_lag is sensible (< 10 min)');
	ok( pa_poll_for($sub, qq{
SELECT last_msg_send_time >= '$t3->{written}' AND last_msg_receipt_time >= last_msg_send_time
  AND last_msg_receipt_time <= now()
FROM parallel_apply.stat_subscription WHERE subname = 'sub'}, 't', 30),
		'stat_subscription: last_msg_send_time at or after T3 was written, last_msg_receipt_time after it');
	ok( pa_poll_for($sub,
			"SELECT num_nulls(latest_end_lsn, latest_end_time) FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'0', 30),
		'stat_subscription: latest_end_lsn and latest_end_time are set');
	is( sstat("pending_bytes > 0 AND pending_transactions >= 2"), 't',
		'stat_subscription: still pending while T2 is blocked');
	note 'stat_subscription: ' . sstat('*');
	is($sub->safe_psql('postgres', 'SELECT string_agg(v::text, \',\' ORDER BY id) FROM lag_tab WHERE id IN (2, 3)'),
		'0,0', 'lag: T2 and T3 still not committed');
}

$locker->query_safe('COMMIT');
$locker->quit;
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'lag_tab');
SKIP:
{
	skip 'stat_subscription, stat_workers and the workers\' activity are the engine\'s', 4
	  unless $engine;
	ok( pa_poll_for($sub,
			"SELECT pending_bytes || ',' || pending_transactions || ',' || apply_lag FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'0,0,00:00:00', 30),
		'lag: caught up: pending_bytes 0, pending_transactions 0, apply_lag 00:00:00');
	ok( pa_poll_for($sub,
			"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply' AND num_nulls(remote_xid, finish_lsn, xact_start, waiting_for, waiting_for_xid, waiting_for_lsn) < 6",
			'0', 20),
		'stat_workers: every worker is idle (no remote transaction, no wait)');
	ok( pa_poll_for($sub, qq{
SELECT string_agg(coalesce(state, '<NULL>') || '/' || coalesce(query, ''), ',' ORDER BY pid) FROM pg_stat_activity WHERE pid IN ($pid2, $pid3)},
			'idle/,idle/', 20),
		'pg_stat_activity: the workers of T2 and T3 are idle, with no query text')
	  or diag(q_sub("SELECT pid, state, query FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker'"));
	ok( pa_poll_for($sub, q{
SELECT count(*) FILTER (WHERE state = 'idle' AND coalesce(query, '') = '') || '/' || count(*)
FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker'}, '4/4', 10),
		'pg_stat_activity: all four workers are idle, with no query text')
	  or diag(q_sub("SELECT pid, state, query FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker'"));
}

# ================================================================ 2. SKIP from the view
$pos = pa_log_pos($sub);
$sub->safe_psql('postgres', "INSERT INTO err_tab VALUES (22, 'sub-local')");
my $e = pub_txn(q{
INSERT INTO err_tab VALUES (21, 'e-a');
INSERT INTO err_tab VALUES (22, 'e-b');
INSERT INTO err_tab VALUES (23, 'e-c')});
$pub->safe_psql('postgres', "INSERT INTO err_tab VALUES (24, 'f')");    # F
ok(pa_wait_log_for($sub, qr/ERROR:  (?:${\ pa_unique_violation_re('err_tab_pkey')})/, $pos, 30),
	'SKIP: E fails on the duplicate key');
my $e_lsn = $e->{lsn} // logged_finish_lsn($pos, $e->{xid}, 10);
note "E: xid $e->{xid}, finish LSN " . ($e_lsn // '?');
my $skip_sql;
SKIP:
{
	skip 'stat_subscription is the engine\'s', 9 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT last_error_lsn IS NOT NULL FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			't', 30),
		'SKIP: stat_subscription.last_error_lsn is set');
	my ($msg, $xid, $lsn, $time_ok, $count) = split /\|/,
	  sstat("last_error, last_error_xid, last_error_lsn, last_error_time BETWEEN '$e->{written}' AND now(), apply_error_count"), -1;
	like($msg, qr/\Aconflict detected on relation "public\./,
		'SKIP: last_error starts with \'conflict detected on relation "public.\'');
	is($msg, 'conflict detected on relation "public.err_tab": conflict=insert_exists',
		'SKIP: last_error is the insert_exists conflict on public.err_tab');
	is($xid, $e->{xid}, 'SKIP: last_error_xid is E\'s xid');
	is($lsn, $e_lsn // '?', 'SKIP: last_error_lsn is E\'s finish LSN (its COMMIT record)');
	ok( pa_poll_for($sub,
			"SELECT string_agg(DISTINCT finish_lsn::text, ',') FROM parallel_apply.conflict_history WHERE remote_xid = '$e->{xid}'::xid",
			$lsn, 10),
		'SKIP: last_error_lsn is conflict_history.finish_lsn of E');
	is($time_ok, 't', 'SKIP: last_error_time is after E was written');
	cmp_ok($count, '>=', 1, "SKIP: apply_error_count >= 1 ($count)");
	$skip_sql = q_sub(
		"SELECT format('ALTER SUBSCRIPTION %I SKIP (lsn = %L)', subname, last_error_lsn) FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
	is($skip_sql, "ALTER SUBSCRIPTION sub SKIP (lsn = '" . ($e_lsn // '?') . "')",
		'SKIP: the statement built from stat_subscription alone names E\'s finish LSN');
	# go on with the LSN from the publisher (or the log) if the view has none
	$skip_sql = undef if $skip_sql !~ /lsn = '$LSN'\)\z/;
}
$skip_sql //= "ALTER SUBSCRIPTION sub SKIP (lsn = '" . ($e_lsn // '0/0') . "')";
note "running: $skip_sql";
is(rows($sub, 'id BETWEEN 21 AND 24'), '(22,sub-local)', 'SKIP: nothing of E or F applied');
$sub->safe_psql('postgres', $skip_sql);
ok( pa_poll_for($sub, 'SELECT string_agg(e::text, \',\' ORDER BY id) FROM err_tab e WHERE id BETWEEN 21 AND 24',
		'(22,sub-local),(24,f)', 30),
	'SKIP: F arrives, exactly E\'s rows are missing');
ok(pa_poll_for($sub, "SELECT subskiplsn FROM pg_subscription WHERE subname = 'sub'", '0/0', 10),
	'SKIP: subskiplsn is cleared');
SKIP:
{
	skip 'stat_subscription is the engine\'s', 1 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT num_nulls(last_error_time, last_error, last_error_xid, last_error_lsn) FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'4', 20),
		'SKIP: the four last_error* columns are NULL once E is skipped')
	  or diag(sstat('*'));
}
# both sides equal again (locally)
$sub->safe_psql('postgres', q{
DELETE FROM err_tab WHERE id = 22;
INSERT INTO err_tab VALUES (21, 'e-a'), (22, 'e-b'), (23, 'e-c');
});
pa_check_equal($pub, $sub, 'err_tab');

# ================================================================ 3. reset
SKIP:
{
	skip 'reset_subscription_stats is the engine\'s', 2 unless $engine;
	cmp_ok(sstat('apply_error_count'), '>=', 1, 'reset: apply_error_count >= 1 before');
	q_sub("SELECT parallel_apply.reset_subscription_stats('sub')");
	is(sstat('apply_error_count'), '0', 'reset: reset_subscription_stats(\'sub\') sets apply_error_count to 0');
}

# ================================================================ 4. privileges
$sub->safe_psql('postgres', q{
CREATE ROLE alice LOGIN;
CREATE ROLE reader LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE nobody LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON lag_tab, err_tab TO alice;
});
pa_set_owner($sub, 'sub', 'alice', 5);
$pub->safe_psql('postgres', "INSERT INTO err_tab VALUES (40, 'before')");
pa_catchup($pub, 'sub');

$pos = pa_log_pos($sub);
$sub->safe_psql('postgres', "INSERT INTO err_tab VALUES (42, 'sub-local')");
my $g = pub_txn("INSERT INTO err_tab VALUES (41, 'g-a'); INSERT INTO err_tab VALUES (42, 'g-b')");
$pub->safe_psql('postgres', "INSERT INTO err_tab VALUES (43, 'h')");    # H
ok(pa_wait_log_for($sub, qr/ERROR:  (?:${\ pa_unique_violation_re('err_tab_pkey')})/, $pos, 30),
	'privileges: G fails on the duplicate key');
my $g_lsn = $g->{lsn} // logged_finish_lsn($pos, $g->{xid}, 10);
SKIP:
{
	skip 'stat_subscription is the engine\'s', 15 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT last_error_xid FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			$g->{xid}, 30),
		'privileges: last_error_xid is G\'s');
	my $msg = 'conflict detected on relation "public.err_tab": conflict=insert_exists';
	my $cols = "last_error, last_error_time IS NOT NULL, last_error_xid, last_error_lsn, apply_error_count >= 1";
	my $rest = "t|$g->{xid}|" . ($g_lsn // '?') . '|t';
	is(sstat($cols), "$msg|$rest", 'privileges: a superuser sees last_error');
	is(sstat($cols, 'reader'), "$msg|$rest", 'privileges: a member of pg_read_all_stats sees last_error');
	is(sstat($cols, 'alice'), "$msg|$rest", 'privileges: the subscription\'s owner sees last_error');
	is(sstat("coalesce(last_error, '<NULL>'), last_error_time IS NOT NULL, last_error_xid, last_error_lsn, apply_error_count >= 1", 'nobody'),
		"<NULL>|$rest",
		'privileges: a plain role gets NULL for last_error but sees its time, xid, LSN and apply_error_count');
	# (the leader may be between two attempts: only that the view is readable)
	is(q_sub("SELECT count(*) >= 0 FROM parallel_apply.stat_workers", 'nobody'),
		't', 'privileges: a plain role may read stat_workers');

	# paused: no leader, the error stays
	q_sub("SELECT parallel_apply.pause('sub')");
	ok(pa_poll_for($sub, "SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'", 'paused', 20),
		'paused: state paused');
	is( sstat('num_nulls(last_msg_send_time, last_msg_receipt_time, latest_end_lsn, latest_end_time, apply_lag, pending_bytes, pending_transactions)'),
		'7', 'paused: the lag columns are NULL while no leader runs');
	my $count = sstat('apply_error_count');
	is(sstat($cols), "$msg|$rest", 'paused: the error columns are still shown');

	# reset: refused for roles that do not own the subscription
	foreach my $role (qw(nobody reader))
	{
		my ($out, $err) = ('', '');
		$sub->psql('postgres',
			"\\set VERBOSITY verbose\nSET ROLE $role;\nSELECT parallel_apply.reset_subscription_stats('sub');",
			stdout => \$out, stderr => \$err);
		like($err, qr/ERROR:  42501: /, "reset: refused for $role (not the owner) with 42501");
	}
	is(sstat('apply_error_count'), $count, "reset: apply_error_count unchanged after the refusals ($count)");
	my ($ret, $out, $err) = (0, '', '');
	$ret = $sub->psql('postgres', "SET ROLE alice;\nSELECT parallel_apply.reset_subscription_stats('sub');",
		stdout => \$out, stderr => \$err);
	is($ret . $err, '0', 'reset: the owner (not a superuser) may reset');
	is(sstat('apply_error_count'), '0', 'reset: apply_error_count is 0');
	is( sstat('last_error, last_error_time IS NOT NULL, last_error_xid, last_error_lsn'),
		"$msg|t|$g->{xid}|" . ($g_lsn // '?'),
		'reset: the last_error* columns are kept');
	# fixed while paused, then resumed
	$sub->safe_psql('postgres', 'DELETE FROM err_tab WHERE id = 42');
	q_sub("SELECT parallel_apply.resume('sub')");
}
$sub->safe_psql('postgres', 'DELETE FROM err_tab WHERE id = 42') unless $engine;
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'lag_tab', 'err_tab');
is(rows($sub, 'id BETWEEN 40 AND 43'), "(40,before),(41,g-a),(42,g-b),(43,h)",
	'privileges: G and H applied after the fix');
SKIP:
{
	skip 'stat_subscription is the engine\'s', 3 unless $engine;
	pa_wait_engine($sub, 'sub');
	ok( pa_poll_for($sub,
			"SELECT num_nulls(last_error_time, last_error, last_error_xid, last_error_lsn) FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'4', 20),
		'privileges: the last_error* columns are NULL once G is applied')
	  or diag(sstat('*'));
	is(sstat('apply_error_count'), '0', 'privileges: no error counted after the fix');
	ok( pa_poll_for($sub,
			"SELECT pending_bytes || ',' || pending_transactions || ',' || apply_lag FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'0,0,00:00:00', 30),
		'privileges: caught up (pending_bytes 0, pending_transactions 0, apply_lag 00:00:00)');
}

# ---------------------------------------------------------------- end
pa_check_log_clean($pub);
pa_check_log_clean($sub);
note sprintf('032_monitoring took %d s', time - $t_start);

$sub->stop;
$pub->stop;
done_testing();
