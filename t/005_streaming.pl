
# Copyright (c) parallel_apply authors
#
# Streamed (in-progress) transactions: publisher logical_decoding_work_mem =
# 64kB, subscription streaming = on.
#  - a big transaction with savepoints, ROLLBACK TO of some sub-transactions
#    (after their rows were already streamed), RELEASE, UPDATE and DELETE of
#    its own rows, and an ALTER TABLE ADD COLUMN inside it; only surviving
#    rows arrive;
#  - small transactions from another session commit while the big one is
#    open: they arrive before it, and the big one stays invisible on the
#    subscriber until it commits;
#  - two big transactions open at once, committed in the opposite order of
#    their start;
#  - a big transaction rolled back entirely: nothing arrives;
#  - a stream interrupted by an immediate stop of the subscriber, and one
#    interrupted by kill -9 of the apply workers.
# The subscriber has the smallest queue memory (128kB, 16 chunks), less than
# one big transaction: the leader runs out of it and must be woken when the
# workers free a quarter of it or go idle.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher',
	conf => "logical_decoding_work_mem = 64kB\n");
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.queue_memory = 128kB\n");

$pub->safe_psql('postgres', q{
CREATE TABLE big (id int PRIMARY KEY, grp int, payload text);
CREATE TABLE big2 (id int PRIMARY KEY, payload text);
CREATE TABLE small (id int PRIMARY KEY, v text);
});
# the subscriber already has the column the publisher adds inside the stream
$sub->safe_psql('postgres', q{
CREATE TABLE big (id int PRIMARY KEY, grp int, payload text, note text);
CREATE TABLE big2 (id int PRIMARY KEY, payload text);
CREATE TABLE small (id int PRIMARY KEY, v text);
});

pa_subscribe($pub, $sub, 'sub', with => 'streaming = on');
pa_attach($sub, 'sub');

my $small_id = 0;
sub small_txn
{
	my ($n) = @_;
	$n //= 1;
	for (1 .. $n)
	{
		$small_id++;
		$pub->safe_psql('postgres',
			"INSERT INTO small VALUES ($small_id, 'small $small_id')");
	}
	return $small_id;
}

sub stream_txns
{
	return $pub->safe_psql('postgres',
		"SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots WHERE slot_name = 'sub'"
	);
}

# ---------------------------------------------------------------- 1
my $a = $pub->background_psql('postgres', on_error_stop => 1);
$a->set_query_timer_restart;
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big SELECT g, 0, repeat('a', 100) FROM generate_series(1, 2000) g");
small_txn(3);
$a->query_safe('SAVEPOINT s1');
$a->query_safe(
	"INSERT INTO big SELECT g, 1, repeat('b', 100) FROM generate_series(2001, 4000) g");
small_txn(2);
$a->query_safe('ROLLBACK TO SAVEPOINT s1');
$a->query_safe('SAVEPOINT s2');
$a->query_safe(
	"INSERT INTO big SELECT g, 2, repeat('c', 100) FROM generate_series(4001, 6000) g");
$a->query_safe('RELEASE SAVEPOINT s2');
small_txn(2);
$a->query_safe('SAVEPOINT s3');
$a->query_safe(
	"INSERT INTO big SELECT g, 3, repeat('d', 100) FROM generate_series(6001, 8000) g");
$a->query_safe('SAVEPOINT s4');
$a->query_safe(
	"UPDATE big SET payload = 'rolled back update' WHERE id % 10 = 0 AND id <= 2000");
$a->query_safe('ROLLBACK TO SAVEPOINT s4');
$a->query_safe('DELETE FROM big WHERE id % 7 = 0');
$a->query_safe('RELEASE SAVEPOINT s3');
$a->query_safe('SAVEPOINT s5');
$a->query_safe('UPDATE big SET grp = 5 WHERE id BETWEEN 4001 AND 4100');
$a->query_safe('ROLLBACK TO SAVEPOINT s5');
$a->query_safe("UPDATE big SET payload = 'kept update' WHERE id % 100 = 1");
# schema change inside the stream: only this transaction sees the new column
$a->query_safe('ALTER TABLE big ADD COLUMN note text');
$a->query_safe(
	"INSERT INTO big SELECT g, 9, repeat('e', 100), 'note ' || g FROM generate_series(9001, 10000) g");
$a->query_safe('SAVEPOINT s6');
$a->query_safe(
	"INSERT INTO big SELECT g, 6, repeat('f', 100), 'gone' FROM generate_series(10001, 12000) g");
$a->query_safe('ROLLBACK TO SAVEPOINT s6');
# the sub-transaction rolled back last had 2000 rows streamed already
small_txn(2);

# the small transactions arrived while the big one is open; the big one is
# not visible on the subscriber
pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
	'small transactions arrive while the big one is open');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM big'),
	'0', 'open streamed transaction is invisible on the subscriber');
cmp_ok(stream_txns(), '>', 0, 'the big transaction was streamed');

$a->query_safe('COMMIT');
small_txn(1);
pa_catchup($pub, 'sub');

my $expect = $pub->safe_psql(
	'postgres', q{
SELECT count(*) || ',' || sum(grp) || ',' || count(*) FILTER (WHERE payload = 'kept update')
       || ',' || count(*) FILTER (WHERE payload = 'rolled back update') || ',' || count(note)
FROM big});
# 1..2000, 4001..6000, 6001..8000 minus multiples of 7, plus 9001..10000
is($expect, '6144,17573,52,0,1000', 'publisher has the surviving rows');
is( $sub->safe_psql(
		'postgres', q{
SELECT count(*) || ',' || sum(grp) || ',' || count(*) FILTER (WHERE payload = 'kept update')
       || ',' || count(*) FILTER (WHERE payload = 'rolled back update') || ',' || count(note)
FROM big}),
	$expect,
	'subscriber has exactly the surviving rows of the streamed transaction');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM big WHERE grp IN (1, 5, 6)'),
	'0', 'rows of rolled back sub-transactions did not arrive');
pa_check_equal($pub, $sub, 'big', 'small');

# ---------------------------------------------------------------- 2
# Two streamed transactions open at once; the one started second commits
# first.  Small transactions interleave.  Then the rows of both are updated
# by later small transactions (dependencies on streamed transactions).
my $b = $pub->background_psql('postgres', on_error_stop => 1);
$b->set_query_timer_restart;
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big2 SELECT g, repeat('A', 200) FROM generate_series(1, 3000) g");
$b->query_safe('BEGIN');
$b->query_safe(
	"INSERT INTO big2 SELECT g, repeat('B', 200) FROM generate_series(3001, 6000) g");
small_txn(2);
$a->query_safe(
	"UPDATE big2 SET payload = 'A2' WHERE id <= 1500");
$b->query_safe(
	"DELETE FROM big2 WHERE id BETWEEN 3001 AND 3500");
small_txn(2);
$b->query_safe('COMMIT');
pa_poll($sub, 'SELECT count(*) FROM big2', '2500',
	'second transaction visible after its commit, first one still open');
$a->query_safe('COMMIT');
$pub->safe_psql('postgres', "UPDATE big2 SET payload = 'later' WHERE id % 500 = 0");
$pub->safe_psql('postgres', "DELETE FROM big2 WHERE id % 1000 = 1");
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'big2', 'small');

# ---------------------------------------------------------------- 3
# entirely rolled back big transaction
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big2 SELECT g, repeat('R', 200) FROM generate_series(100001, 104000) g");
$a->query_safe("UPDATE big2 SET payload = 'rolled back' WHERE id < 100");
small_txn(2);
$a->query_safe('ROLLBACK');
small_txn(1);
pa_catchup($pub, 'sub');
is($sub->safe_psql('postgres',
		"SELECT count(*) FROM big2 WHERE id > 100000 OR payload = 'rolled back'"),
	'0', 'aborted streamed transaction left nothing');
pa_check_equal($pub, $sub, 'big2', 'small');

# ---------------------------------------------------------------- 4
# subscriber stops (immediate) while a stream is open and partly applied;
# the transaction is streamed again from the origin after the restart
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big SELECT g, 7, repeat('g', 100) FROM generate_series(20001, 23000) g");
small_txn(2);
pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
	'small transactions applied before the restart');
$sub->stop('immediate');
$sub->start;
pa_wait_engine($sub, 'sub');
$a->query_safe('SAVEPOINT x');
$a->query_safe(
	"INSERT INTO big SELECT g, 8, repeat('h', 100) FROM generate_series(23001, 26000) g");
$a->query_safe('ROLLBACK TO SAVEPOINT x');
$a->query_safe("UPDATE big SET grp = 77 WHERE id BETWEEN 20001 AND 20100");
$a->query_safe('COMMIT');
small_txn(1);
pa_catchup($pub, 'sub');
is($sub->safe_psql('postgres',
		'SELECT count(*) || \',\' || sum(grp) FROM big WHERE id > 20000'),
	'3000,28000', 'stream interrupted by a restart arrives exactly once');
pa_check_equal($pub, $sub, 'big', 'big2', 'small');

# ---------------------------------------------------------------- 5
# kill -9 of the apply workers while a streamed transaction is open and its
# chunks are being applied; the postmaster restarts everything and the
# stream is applied exactly once.
SKIP:
{
	skip 'PA_NO_ENGINE set', 4 unless pa_engine();
	$a->query_safe('BEGIN');
	$a->query_safe(
		"INSERT INTO big2 SELECT g, repeat('K', 200) FROM generate_series(200001, 203000) g");
	small_txn(2);
	pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
		'small transactions applied while the stream is open');
	my $logpos = pa_log_pos($sub);
	my @w = pa_engine_pids($sub, 'parallel_apply worker');
	ok(@w >= 1, 'apply workers to kill: ' . join(',', @w));
	kill 'KILL', @w;
	pa_wait_log($sub, qr/all server processes terminated; reinitializing/, $logpos);
	$a->query_safe(
		"INSERT INTO big2 SELECT g, repeat('L', 200) FROM generate_series(203001, 206000) g");
	$a->query_safe("DELETE FROM big2 WHERE id BETWEEN 200001 AND 200500");
	$a->query_safe('COMMIT');
	small_txn(1);
	pa_wait_engine($sub, 'sub');
	pa_catchup($pub, 'sub');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM big2 WHERE id > 200000'),
		'5500', 'stream interrupted by kill -9 of the workers arrives exactly once');
	pa_check_equal($pub, $sub, 'big', 'big2', 'small');
}

$a->quit;
$b->quit;

SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
		'streaming',
		'engine still streaming');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
