# Copyright (c) parallel_apply authors
#
# Adaptive worker use and an open stream: with parallel_apply.adaptive on
# the leader reads at most 256 transactions ahead per active worker.  A
# stream opens on the last idle worker (outside the active set of one); an
# ordinary transaction on the active worker waits for the stream's insert
# (a unique index only the subscriber has), and more than 256 transactions
# queue up behind it.  The leader must keep reading while a stream is open:
# the stream's commit, which it has not read yet, is what ends the wait (the
# stream then waits for its commit turn, the deadlock detector breaks the
# cycle and the engine re-applies serially).  Before the fix the leader
# stopped reading and the subscription hung.
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
my $sub = pa_subscriber('subscriber', workers => 2, adaptive => 1,
	conf => "deadlock_timeout = 200ms\n");

my $ddl = q{
CREATE TABLE big (id int PRIMARY KEY, payload text);
CREATE TABLE small (id int PRIMARY KEY, v text);
CREATE TABLE uq (id int PRIMARY KEY, u int);
};
$pub->safe_psql('postgres', $ddl);
$sub->safe_psql('postgres', $ddl);
# a unique index the publisher does not have
$sub->safe_psql('postgres', 'CREATE UNIQUE INDEX uq_u ON uq (u)');

pa_subscribe($pub, $sub, 'sub', with => 'streaming = on');
pa_attach($sub, 'sub');
my $engine = pa_engine();

my $a = $pub->background_psql('postgres', on_error_stop => 1);
$a->query_safe('BEGIN');
$a->query_safe('INSERT INTO uq VALUES (1, 7)');
$a->query_safe(
	"INSERT INTO big SELECT g, repeat('s', 100) FROM generate_series(1, 3000) g");
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_locks l JOIN parallel_apply.stat_workers w ON w.pid = l.pid
		 WHERE w.stream_xid IS NOT NULL AND l.relation = 'uq'::regclass AND l.granted",
		't', 'the stream inserted u = 7 on the subscriber');
	is($sub->safe_psql('postgres',
			"SELECT worker_id || ':' || active FROM parallel_apply.stat_workers WHERE stream_xid IS NOT NULL"),
		'2:false', 'the stream is on worker 2, outside the active set');
}

# commits before the stream on the publisher; waits for its insert here
$pub->safe_psql('postgres',
	'BEGIN; INSERT INTO uq VALUES (2, 7); UPDATE uq SET u = 9 WHERE id = 2; COMMIT');
# more than the read-ahead of one active worker, queued behind it
$pub->safe_psql('postgres', q{
DO $$ BEGIN
	FOR i IN 1 .. 400 LOOP
		INSERT INTO small VALUES (i, 'after');
		COMMIT;
	END LOOP;
END $$;});
$a->query_safe('COMMIT');
$a->quit;

ok(pa_catchup_within($pub, 'sub', 120),
	'the subscription catches up: the leader read the stream\'s commit')
  or pa_diag($sub);
pa_check_equal($pub, $sub, 'uq', 'big', 'small');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	cmp_ok(pa_stat($sub, 'sub', 'serial_retries'), '>', 0,
		'the cycle was broken and re-applied serially');
}

$sub->stop;
$pub->stop;
done_testing();
