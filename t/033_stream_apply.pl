# Copyright (c) parallel_apply authors
#
# Streamed transactions applied while they stream (publisher
# logical_decoding_work_mem = 64kB, subscription streaming = on):
#  1. a stream is applied by a worker while it is open: the worker holds the
#     table's lock and shows the stream's remote xid in stat_workers and
#     pg_stat_activity, a reader on the subscriber sees none of it before
#     its commit and all of it after (never a part), ordinary transactions
#     keep arriving meanwhile;
#  2. sub-transaction aborts at several depths, the abort of a
#     sub-transaction none of whose changes was streamed, and a savepoint
#     per row (past 1000 open savepoints the rest of the stream is spilled);
#  3. ADD COLUMN inside a stream that then aborts;
#  4. the spill path: parallel_apply.max_streams = 1 with two large
#     transactions at once (the second is spilled to a file and applied at
#     its commit);
#  5. the spill path when the stream's worker stops taking changes (its
#     table is locked on the subscriber): after stream_spill_timeout the rest
#     goes to a file, ordinary transactions keep arriving, and the same
#     worker applies the rest at the commit;
#  6. kill -9 of the worker holding an open stream, and of the leader, mid
#     stream: the transaction arrives exactly once;
#  7. a subscriber-only unique index hit by a streamed and an ordinary
#     transaction: the deadlock detector fires, the serial retry re-applies,
#     both sides end equal.
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
	conf => "parallel_apply.queue_memory = 128kB\ndeadlock_timeout = 200ms\n");

my $ddl = q{
CREATE TABLE big (id int PRIMARY KEY, grp int, payload text);
CREATE TABLE big2 (id int PRIMARY KEY, payload text);
CREATE TABLE big3 (id int PRIMARY KEY, payload text);
CREATE TABLE small (id int PRIMARY KEY, v text);
CREATE TABLE uq (id int PRIMARY KEY, u int);
};
$pub->safe_psql('postgres', $ddl);
$sub->safe_psql('postgres', $ddl);
# the subscriber already has the column the publisher adds inside a stream
$sub->safe_psql('postgres', 'ALTER TABLE big3 ADD COLUMN extra int');
# a unique index the publisher does not have
$sub->safe_psql('postgres', 'CREATE UNIQUE INDEX uq_u ON uq (u)');

pa_subscribe($pub, $sub, 'sub', with => 'streaming = on');
pa_attach($sub, 'sub');

my $engine = pa_engine();
my $small_id = 0;

sub small_txn
{
	my ($n) = @_;
	for (1 .. ($n // 1))
	{
		$small_id++;
		$pub->safe_psql('postgres',
			"INSERT INTO small VALUES ($small_id, 'small $small_id')");
	}
	return $small_id;
}

sub sstat
{
	my ($col) = @_;
	return pa_stat($sub, 'sub', $col);
}

# the pid of the worker with an open stream, and the stream's xid
sub stream_worker
{
	return $sub->safe_psql('postgres',
		"SELECT pid || ' ' || stream_xid FROM parallel_apply.stat_workers WHERE stream_xid IS NOT NULL ORDER BY worker_id"
	);
}

# wait until a worker has an open stream and holds a lock on $table (it has
# applied a change of it)
sub wait_stream_applying
{
	my ($table, $what) = @_;
	return pass($what) unless $engine;
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_locks l JOIN parallel_apply.stat_workers w ON w.pid = l.pid
		 WHERE w.stream_xid IS NOT NULL AND l.relation = '$table'::regclass AND l.granted",
		't', $what);
}

# ---------------------------------------------------------------- 1
my $a = $pub->background_psql('postgres', on_error_stop => 1);
$a->set_query_timer_restart;
$a->query_safe('BEGIN');
my $xid_a = $a->query_safe('SELECT txid_current()');
$xid_a =~ s/\s+//g;
$a->query_safe(
	"INSERT INTO big SELECT g, 0, repeat('a', 100) FROM generate_series(1, 5000) g");
wait_stream_applying('big', 'the open stream is applied by a worker');
small_txn(3);
pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
	'ordinary transactions arrive while the stream is open');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM big'),
	'0', 'the open stream is invisible on the subscriber');
SKIP:
{
	skip 'PA_NO_ENGINE set', 4 unless $engine;
	my ($pid, $xid) = split / /, stream_worker();
	is($xid, $xid_a, 'stat_workers shows the open stream\'s remote xid');
	like(
		$sub->safe_psql('postgres',
			"SELECT query FROM pg_stat_activity WHERE pid = $pid"),
		qr/streamed transaction $xid_a, in progress on the publisher/,
		'pg_stat_activity says the worker applies the streamed transaction');
	is(sstat('streams_open'), '1', 'streams_open counts it');
	is(sstat('streams_spilled'), '0', 'nothing spilled');
}

# a reader that records every count it sees, until it sees them all
$sub->safe_psql('postgres', q{
CREATE FUNCTION watch(expect bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
	seen bigint[] := '{}';
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		SELECT count(*) INTO c FROM big;
		IF NOT c = ANY (seen) THEN
			seen := seen || c;
		END IF;
		EXIT WHEN c = expect OR clock_timestamp() > t0 + interval '60 s';
		PERFORM pg_sleep(0.005);
	END LOOP;
	RETURN array_to_string(seen, ',');
END $$});
my $reader = $sub->background_psql('postgres', on_error_stop => 1);
$reader->query_until(qr/started/, "\\echo started\nSELECT watch(6000);\n");
$a->query_safe(
	"INSERT INTO big SELECT g, 0, repeat('a', 100) FROM generate_series(5001, 6000) g");
$a->query_safe('COMMIT');
pa_catchup($pub, 'sub');
my $seen = $reader->query_safe('SELECT 1');	# waits for watch() to return
$reader->quit;
like($seen, qr/^0,6000$/m,
	'a reader sees none of the streamed transaction, then all of it');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	is(sstat('streams_applied'), '1', 'streams_applied counts the stream');
	is(sstat('streams_open'), '0', 'no stream open after its commit');
}
pa_check_equal($pub, $sub, 'big', 'small');

# ---------------------------------------------------------------- 2
# savepoints nested three deep, rolled back at several depths, with rows
# before and after; a sub-transaction that only locks a row has an xid but
# no change, and its abort reaches the subscriber for nothing it saw
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big2 SELECT g, 'top' FROM generate_series(1, 2000) g");
$a->query_safe('SAVEPOINT a');
$a->query_safe(
	"INSERT INTO big2 SELECT g, 'a' FROM generate_series(2001, 4000) g");
$a->query_safe('SAVEPOINT b');
$a->query_safe(
	"INSERT INTO big2 SELECT g, 'b' FROM generate_series(4001, 6000) g");
$a->query_safe('SAVEPOINT c');
$a->query_safe(
	"INSERT INTO big2 SELECT g, 'c' FROM generate_series(6001, 8000) g");
$a->query_safe("UPDATE big2 SET payload = 'c-upd' WHERE id <= 100");
$a->query_safe('ROLLBACK TO SAVEPOINT b');    # b and c gone
$a->query_safe(
	"INSERT INTO big2 SELECT g, 'b2' FROM generate_series(8001, 9000) g");
$a->query_safe('SAVEPOINT d');
$a->query_safe("DELETE FROM big2 WHERE id BETWEEN 2001 AND 2500");
$a->query_safe('ROLLBACK TO SAVEPOINT d');
$a->query_safe('RELEASE SAVEPOINT a');
$a->query_safe('SAVEPOINT e');
$a->query_safe('SELECT * FROM big2 WHERE id = 1 FOR UPDATE');
$a->query_safe(
	"INSERT INTO big SELECT g, 1, 'flush' FROM generate_series(10001, 12000) g");
$a->query_safe('ROLLBACK TO SAVEPOINT e');
$a->query_safe("UPDATE big2 SET payload = 'top-upd' WHERE id % 100 = 0");
small_txn(2);
$a->query_safe('COMMIT');
pa_catchup($pub, 'sub');
is( $sub->safe_psql('postgres',
		"SELECT string_agg(payload || ':' || n, ',' ORDER BY payload) FROM
		 (SELECT payload, count(*) n FROM big2 GROUP BY payload) s"),
	'a:1980,b2:990,top:1980,top-upd:50',
	'only rows of surviving sub-transactions arrived');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM big WHERE id > 10000'),
	'0', 'rows of the rolled back sub-transaction did not arrive');
pa_check_equal($pub, $sub, 'big', 'big2', 'small');

# a savepoint per row (an exception block per row, every third one rolled
# back): past 1000 savepoints open in its worker, the rest of the stream is
# spilled, and applied at its commit without savepoints
my $spilled2 = $engine ? sstat('streams_spilled') : 0;
$pub->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1..3000 LOOP
		BEGIN
			INSERT INTO big2 VALUES (50000 + i, repeat('s', 50));
			IF i % 3 = 0 THEN
				RAISE EXCEPTION 'roll back row %', i;
			END IF;
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
	END LOOP;
END $$});
pa_catchup($pub, 'sub');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM big2 WHERE id > 50000'),
	'2000', 'a savepoint per row: only the rows of released ones arrived');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	is(sstat('streams_spilled') - $spilled2, 1,
		'past 1000 savepoints the rest of the stream is spilled');
}
pa_check_equal($pub, $sub, 'big2');

# ---------------------------------------------------------------- 3
# ADD COLUMN inside a stream that aborts; the table goes on replicating
# with its old schema
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big3 SELECT g, 'before' FROM generate_series(1, 2000) g");
$a->query_safe('ALTER TABLE big3 ADD COLUMN extra int');
$a->query_safe(
	"INSERT INTO big3 SELECT g, 'after', g FROM generate_series(2001, 4000) g");
wait_stream_applying('big3', 'the stream with a schema change is applied');
$a->query_safe('ROLLBACK');
$pub->safe_psql('postgres', "INSERT INTO big3 VALUES (1, 'later')");
pa_catchup($pub, 'sub');
is($sub->safe_psql('postgres', 'SELECT count(*) || payload FROM big3 GROUP BY payload'),
	'1later', 'the aborted stream with ADD COLUMN left nothing');
pa_check_equal($pub, $sub, 'big3');

# ---------------------------------------------------------------- 4
# max_streams = 1 and two large transactions at once: the second is
# spilled to a file and applied at its commit, the first while it streams
my ($applied0, $spilled0, $bytes0) = (0, 0, 0);
if ($engine)
{
	$applied0 = sstat('streams_applied');
	$spilled0 = sstat('streams_spilled');
	$bytes0 = sstat('bytes_spilled');
	$sub->safe_psql('postgres', 'ALTER SYSTEM SET parallel_apply.max_streams = 1');
	$sub->reload;
}
my $b = $pub->background_psql('postgres', on_error_stop => 1);
$b->set_query_timer_restart;
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big SELECT g, 4, 'first' FROM generate_series(20001, 24000) g");
wait_stream_applying('big', 'the first stream is applied while it streams');
$b->query_safe('BEGIN');
$b->query_safe(
	"INSERT INTO big2 SELECT g, 'second' FROM generate_series(20001, 24000) g");
$b->query_safe("UPDATE big2 SET payload = 'second-upd' WHERE id % 3 = 0 AND id > 20000");
small_txn(2);
pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
	'ordinary transactions arrive while both streams are open');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	is(sstat('streams_open'), '1', 'only one stream is open in a worker');
	cmp_ok(sstat('bytes_spilled'), '>', $bytes0, 'the second stream is spilled');
}
$b->query_safe('COMMIT');
$a->query_safe('COMMIT');
pa_catchup($pub, 'sub');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	is(sstat('streams_applied') - $applied0, 1, 'one stream applied while it streamed');
	is(sstat('streams_spilled') - $spilled0, 1, 'one stream spilled');
}
pa_check_equal($pub, $sub, 'big', 'big2', 'small');

# ---------------------------------------------------------------- 5
# the stream's worker takes nothing (its table is locked on the subscriber):
# after stream_spill_timeout the rest of the stream goes to a file, ordinary
# transactions keep flowing, and the worker applies the rest at the commit
if ($engine)
{
	$sub->safe_psql('postgres', 'ALTER SYSTEM SET parallel_apply.stream_spill_timeout = 200');
	$sub->reload;
	$applied0 = sstat('streams_applied');
	$spilled0 = sstat('streams_spilled');
}
my $locker = $sub->background_psql('postgres', on_error_stop => 1);
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE big3 IN ACCESS EXCLUSIVE MODE');
$a->query_safe('BEGIN');
$a->query_safe(
	"INSERT INTO big3 SELECT g, 'locked' FROM generate_series(10001, 30000) g");
$a->query_safe('SAVEPOINT s');
$a->query_safe(
	"INSERT INTO big3 SELECT g, 'rolled back' FROM generate_series(30001, 32000) g");
$a->query_safe('ROLLBACK TO SAVEPOINT s');
small_txn(2);
pa_poll($sub, 'SELECT count(*) FROM small', $small_id,
	'ordinary transactions arrive while the stream\'s worker is blocked');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	pa_poll($sub,
		"SELECT streams_spilled > $spilled0 FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
		't', 'the rest of the blocked stream is spilled');
}
$locker->query_safe('COMMIT');
$locker->quit;
$a->query_safe("UPDATE big3 SET payload = 'updated' WHERE id % 1000 = 0");
$a->query_safe('COMMIT');
pa_catchup($pub, 'sub');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	is(sstat('streams_applied') - $applied0, 1,
		'the partly spilled stream is applied by its worker')
	  or diag($sub->safe_psql('postgres', 'SELECT * FROM parallel_apply.stat_subscription'));
}
pa_check_equal($pub, $sub, 'big3', 'small');
if ($engine)
{
	$sub->safe_psql('postgres', 'ALTER SYSTEM RESET parallel_apply.max_streams');
	$sub->safe_psql('postgres', 'ALTER SYSTEM RESET parallel_apply.stream_spill_timeout');
	$sub->reload;
}

# ---------------------------------------------------------------- 6
# kill -9 of the worker with the open stream, then of the leader, mid
# stream: the postmaster restarts everything and the publisher sends the
# transaction again from the origin: exactly once
SKIP:
{
	skip 'PA_NO_ENGINE set', 6 unless $engine;
	foreach my $victim ('worker', 'leader')
	{
		my $base = $victim eq 'worker' ? 100000 : 200000;
		$a->query_safe('BEGIN');
		$a->query_safe(
			"INSERT INTO big2 SELECT g, '$victim' FROM generate_series($base + 1, $base + 4000) g");
		wait_stream_applying('big2', "stream open before kill -9 of the $victim");
		my ($pid) = split / /, stream_worker();
		($pid) = pa_engine_pids($sub, 'parallel_apply leader') if $victim eq 'leader';
		my $logpos = pa_log_pos($sub);
		kill 'KILL', $pid;
		pa_wait_log($sub, qr/all server processes terminated; reinitializing/, $logpos);
		$a->query_safe(
			"INSERT INTO big2 SELECT g, '$victim' FROM generate_series($base + 4001, $base + 6000) g");
		$a->query_safe("DELETE FROM big2 WHERE id BETWEEN $base + 1 AND $base + 500");
		$a->query_safe('COMMIT');
		pa_wait_engine($sub, 'sub');
		pa_catchup($pub, 'sub');
		is($sub->safe_psql('postgres',
				"SELECT count(*) FROM big2 WHERE payload = '$victim'"),
			'5500', "stream interrupted by kill -9 of the $victim arrives exactly once");
		pa_check_equal($pub, $sub, 'big2');
	}
}

# ---------------------------------------------------------------- 7
# The stream inserts u = 7 into uq (the subscriber has a unique index on u,
# the publisher does not) and stays open; an ordinary transaction inserts
# u = 7 and moves it to 9 before it commits, before the stream does.  In
# commit order there is no conflict, but applied in parallel the ordinary
# transaction waits for the stream's insert while the stream waits for its
# commit turn: the deadlock detector breaks the cycle, the engine re-applies
# serially, and both sides end equal.
my ($retries0, $logpos7) = (0, pa_log_pos($sub));
$retries0 = sstat('serial_retries') if $engine;
$a->query_safe('BEGIN');
$a->query_safe('INSERT INTO uq VALUES (1, 7)');
$a->query_safe(
	"INSERT INTO big SELECT g, 7, repeat('u', 100) FROM generate_series(300001, 303000) g");
wait_stream_applying('uq', 'the stream inserted u = 7 on the subscriber');
$pub->safe_psql('postgres',
	'BEGIN; INSERT INTO uq VALUES (2, 7); UPDATE uq SET u = 9 WHERE id = 2; COMMIT');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_locks l JOIN parallel_apply.stat_workers w ON w.pid = l.pid
		 WHERE NOT l.granted AND l.locktype = 'transactionid'",
		't', 'the ordinary transaction waits for the stream\'s insert');
}
$a->query_safe('COMMIT');
pa_catchup($pub, 'sub');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	like(pa_log_since($sub, $logpos7), qr/ERROR:  deadlock detected/,
		'the deadlock detector broke the cycle');
	cmp_ok(sstat('serial_retries'), '>', $retries0, 'the window was re-applied serially');
}
pa_check_equal($pub, $sub, 'uq', 'big');

$a->quit;
$b->quit;

cmp_ok(
	$pub->safe_psql('postgres',
		"SELECT coalesce(sum(stream_txns), 0) FROM pg_stat_replication_slots WHERE slot_name = 'sub'"),
	'>=', 6, 'the large transactions were streamed');
pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
