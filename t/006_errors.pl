
# Copyright (c) parallel_apply authors
#
# Errors and recovery.
#  - CREATE EXTENSION without the preload fails with a hint;
#  - a subscribed table missing on the subscriber (renamed away): the engine
#    logs the built-in worker's error naming the relation, retries every
#    retry_interval, later transactions wait behind it (commit order), and
#    once the table is back everything arrives, nothing lost;
#  - a table added to the publication but not created on the subscriber:
#    same error until it is created, then (like the built-in worker) its
#    changes are skipped until REFRESH PUBLICATION;
#  - a value that does not convert (text 'abc' into an int column): the error
#    names the column; after the column type is fixed the engine catches up;
#  - a unique violation against a row that exists only on the subscriber:
#    the engine retries until the local row is removed.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# ---------------------------------------------------------------- no preload
SKIP:
{
	skip 'PA_NO_ENGINE set', 3 unless pa_engine();
	my $plain = pa_node_noengine('nopreload');
	my ($out, $err);
	my $ret = $plain->psql('postgres', 'CREATE EXTENSION parallel_apply',
		stdout => \$out, stderr => \$err);
	isnt($ret, 0, 'CREATE EXTENSION without shared_preload_libraries fails');
	like(
		$err,
		qr/ERROR:  parallel_apply must be loaded via shared_preload_libraries\n.*HINT:  Add parallel_apply to shared_preload_libraries in postgresql.conf and restart the server\./s,
		'error and hint');
	is($plain->safe_psql('postgres',
			"SELECT count(*) FROM pg_extension WHERE extname = 'parallel_apply'"),
		'0', 'extension not created');
	$plain->stop;
}

# ---------------------------------------------------------------- pair
my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4);

$pub->safe_psql('postgres', q{
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE TABLE conv (id int PRIMARY KEY, v text);
CREATE TABLE uq (id int PRIMARY KEY, code text UNIQUE);
});
$sub->safe_psql('postgres', q{
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE TABLE conv (id int PRIMARY KEY, v int);
CREATE TABLE uq (id int PRIMARY KEY, code text UNIQUE);
});
$pub->safe_psql('postgres', "INSERT INTO conv VALUES (1, '1'), (2, '22')");

pa_subscribe($pub, $sub, 'sub', tables => [qw(t1 conv uq)]);
pa_attach($sub, 'sub');

# parallel_apply.retry_interval = 1000ms in PaTest (the built-in worker has no
# such guarantee); allow for log timestamp rounding
my $retry_floor = pa_engine() ? 0.9 : 0;

# Wait for three attempts at the first failing transaction and check they are
# at least retry_interval apart (no hot restart loop).
sub assert_retries
{
	my ($logpos, $re, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @t = pa_wait_attempts($sub, $logpos, $re, 3);
	my $min_gap = 1e9;
	for my $i (1 .. $#t)
	{
		my $gap = $t[$i] - $t[ $i - 1 ];
		$min_gap = $gap if $gap < $min_gap;
	}
	note sprintf('%s: attempts at %s; smallest gap %.3fs',
		$label, join(', ', @t), $min_gap);
	return cmp_ok($min_gap, '>=', $retry_floor,
		sprintf('%s: failing transaction retried, attempts at least retry_interval apart (smallest gap %.3fs)',
			$label, $min_gap));
}

my $t1_id = 0;
sub t1_txns
{
	my ($n) = @_;
	for (1 .. $n)
	{
		$t1_id++;
		$pub->safe_psql('postgres', "INSERT INTO t1 VALUES ($t1_id, 't1 $t1_id')");
	}
}

sub stat_errors
{
	return 0 unless pa_engine();
	return $sub->safe_psql('postgres',
		"SELECT restarts + serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
}

t1_txns(5);
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't1', 'conv');

# ---------------------------------------------------------------- missing table
# (a) a subscribed table disappears from the subscriber (renamed away), then
#     comes back: everything queued behind it arrives, its own rows too.
{
	my $errors_before = stat_errors();
	my $logpos = pa_log_pos($sub);
	$sub->safe_psql('postgres', 'ALTER TABLE t1 RENAME TO t1_away');
	t1_txns(3);
	$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO conv VALUES (1000, '1000');
INSERT INTO t1 VALUES (1000, 'same transaction as conv 1000');
COMMIT;
});
	t1_txns(2);
	$pub->safe_psql('postgres', "INSERT INTO conv VALUES (1001, '1001')");

	my $re = qr/logical replication target relation "public.t1" does not exist/;
	assert_retries($logpos, $re, 'missing table t1');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM conv WHERE id >= 1000'),
		'0', 'failing transaction not partially applied, later ones wait');

	$sub->safe_psql('postgres', 'ALTER TABLE t1_away RENAME TO t1');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv');
	SKIP:
	{
		skip 'PA_NO_ENGINE set', 2 unless pa_engine();
		cmp_ok(stat_errors(), '>', $errors_before,
			'stat_subscription counted the restarts/retries');
		is( $sub->safe_psql(
				'postgres',
				"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
			),
			'streaming',
			'streaming again');
	}
}

# ---------------------------------------------------------------- conversion
{
	my $logpos = pa_log_pos($sub);
	$pub->safe_psql('postgres', "INSERT INTO conv VALUES (3, '333')");
	$pub->safe_psql('postgres', "INSERT INTO conv VALUES (4, 'abc')");
	t1_txns(3);
	my $before = $sub->safe_psql('postgres', 'SELECT count(*) FROM t1');

	assert_retries($logpos, qr/invalid input syntax for type integer: "abc"/,
		'conversion error');
	my $log = pa_log_since($sub, $logpos);
	like(
		$log,
		qr/invalid input syntax for type integer: "abc"\n[^\n]*CONTEXT:[^\n]*"public.conv" column "v"/,
		'conversion error names the relation and the column');
	pa_poll($sub, 'SELECT count(*) FROM conv WHERE id = 3', '1',
		'rows before the bad one applied');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM conv WHERE id = 4'),
		'0', 'the bad row is not applied');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM t1'),
		$before, 'later transactions wait behind the failing one');

	$sub->safe_psql('postgres', 'ALTER TABLE conv ALTER COLUMN v TYPE text');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv');
}

# ---------------------------------------------------------------- unique conflict
{
	my $logpos = pa_log_pos($sub);
	$sub->safe_psql('postgres', "INSERT INTO uq VALUES (100, 'local only')");
	$pub->safe_psql('postgres', "INSERT INTO uq VALUES (1, 'a'), (2, 'local only')");
	t1_txns(2);
	assert_retries($logpos,
		pa_unique_violation_re('uq_code_key'),
		'unique violation');
	is($sub->safe_psql('postgres', "SELECT count(*) FROM uq WHERE id IN (1, 2)"),
		'0', 'conflicting transaction not applied');
	$sub->safe_psql('postgres', 'DELETE FROM uq WHERE id = 100');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv', 'uq');
}

# ---------------------------------------------------------------- SKIP
# ALTER SUBSCRIPTION ... SKIP (lsn = <finish LSN of the failing transaction>)
# skips exactly that transaction, like the built-in worker, and clears
# subskiplsn.
{
	my $logpos = pa_log_pos($sub);
	$sub->safe_psql('postgres', "INSERT INTO uq VALUES (200, 'skip me')");
	$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO uq VALUES (3, 'skip me');
INSERT INTO t1 VALUES (3000, 'skipped with the uq row');
COMMIT;
});
	t1_txns(2);
	my $re = pa_unique_violation_re('uq_code_key');
	pa_wait_attempts($sub, $logpos, $re, 1);
	my $log = pa_log_since($sub, $logpos);
	my ($lsn) = $log =~
	  /ERROR:  (?:$re)[^\n]*\n(?:[^\n]*\n){0,3}?[^\n]*CONTEXT:[^\n]* finished at ([0-9A-F]+\/[0-9A-F]+)/;
	ok(defined $lsn, 'finish LSN of the failing transaction is in the error context: ' . ($lsn // 'none'));
	$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SKIP (lsn = '$lsn')");
	pa_catchup($pub, 'sub');
	pa_poll($sub, "SELECT subskiplsn = '0/0' FROM pg_subscription WHERE subname = 'sub'",
		't', 'subskiplsn cleared after skipping');
	is($sub->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM uq WHERE code = 'skip me'"),
		'200', 'skipped transaction not applied, local row kept');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM t1 WHERE id = 3000'),
		'0', 'the whole skipped transaction is not applied');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM t1'),
		$pub->safe_psql('postgres', 'SELECT count(*) - 1 FROM t1'),
		'transactions after the skipped one applied');
	pa_check_equal($pub, $sub, 'conv');
	my $logs = pa_log_since($sub, $logpos);
	like($logs, qr/(?:logical replication|parallel_apply)[^\n]*(?:skip|finished skipping)[^\n]*/i,
		'skipping is logged');

	# make both sides equal again: the skipped rows are deleted on the
	# publisher (a delete of a missing row is not an error), the local row
	# on the subscriber
	$pub->safe_psql('postgres', 'DELETE FROM t1 WHERE id = 3000; DELETE FROM uq WHERE id = 3');
	$sub->safe_psql('postgres', 'DELETE FROM uq WHERE id = 200');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv', 'uq');
}

# ---------------------------------------------------------------- missing (b)
# (b) a table added to the publication while attached, not yet created on the
#     subscriber.  Like the built-in worker, the engine fails on it until the
#     table exists, then skips its changes (the table is not part of the
#     subscription until REFRESH PUBLICATION); the refresh (done detached,
#     since table synchronization is the built-in's job) copies its rows.
{
	my $logpos = pa_log_pos($sub);
	$pub->safe_psql('postgres', q{
CREATE TABLE missing (id int PRIMARY KEY, v text);
ALTER PUBLICATION pub ADD TABLE missing;
});
	t1_txns(3);
	$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO t1 VALUES (2000, 'same transaction as missing');
INSERT INTO missing VALUES (1, 'one'), (2, 'two');
COMMIT;
});
	my $before = $sub->safe_psql('postgres', 'SELECT count(*) FROM t1');
	t1_txns(5);

	my $re = qr/logical replication target relation "public.missing" does not exist/;
	assert_retries($logpos, $re, 'table missing on the subscriber');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM t1 WHERE id = 2000'),
		'0', 'failing transaction not partially applied');

	$sub->safe_psql('postgres', 'CREATE TABLE missing (id int PRIMARY KEY, v text)');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM missing'),
		'0', 'changes of a table not yet in the subscription are skipped');

	pa_detach($sub, 'sub');
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub REFRESH PUBLICATION');
	pa_wait_sync($pub, $sub, 'sub');
	pa_attach($sub, 'sub');
	$pub->safe_psql('postgres', "INSERT INTO missing VALUES (3, 'three')");
	t1_txns(2);
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't1', 'conv', 'missing');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

# the subscription ends healthy and the engine still owns it
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT s.subenabled, a.state FROM pg_subscription s JOIN parallel_apply.stat_subscription a ON a.subid = s.oid"
		),
		'f|streaming',
		'still attached and streaming after the errors');
}

$sub->stop;
$pub->stop;
done_testing();
