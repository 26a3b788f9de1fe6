# Copyright (c) parallel_apply authors
#
# Adaptive worker use and an open stream: with parallel_apply.adaptive on
# the leader reads about 25 ms of apply ahead per active worker, at least
# 256 transactions (here, with almost nothing applied before, 256).  A
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

my $engine = pa_engine();
my $a = pa_open_stream_on_unique($pub, $sub,
	"CREATE TABLE small (id int PRIMARY KEY, v text);\n");
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	is($sub->safe_psql('postgres',
			"SELECT worker_id || ':' || active FROM parallel_apply.stat_workers WHERE stream_xid IS NOT NULL"),
		'2:false', 'the stream is on worker 2, outside the active set');
}

# queued behind the transaction that waits for the stream: more than the
# read-ahead of one active worker
pa_close_stream_on_unique($pub, $sub, $a, q{
DO $$ BEGIN
	FOR i IN 1 .. 400 LOOP
		INSERT INTO small VALUES (i, 'after');
		COMMIT;
	END LOOP;
END $$;}, 'small');

$sub->stop;
$pub->stop;
done_testing();
