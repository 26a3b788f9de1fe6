# Copyright (c) parallel_apply authors
#
# The one wait the deadlock detector cannot see, through the leader: an
# open stream's worker waits for the leader to read more of the stream; an
# ordinary transaction waits for the stream's insert (a unique index only
# the subscriber has); the transactions queued behind it fill queue memory,
# so the leader cannot read on to the stream's commit, which is what would
# end the wait.  The leader must detect this (deadlock_timeout with no
# commit, the stream starved, a worker waiting for a lock), stop the engine
# and re-apply serially.  Before the fix the subscription hung for good
# (seen in t/037 when the leader read the transactions one at a time; made
# certain here by queue memory of 16 chunks and transactions larger than a
# chunk).
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
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "deadlock_timeout = 200ms\nparallel_apply.queue_memory = 128\n");

my $engine = pa_engine();
my $a = pa_open_stream_on_unique($pub, $sub,
	"CREATE TABLE wide (id int PRIMARY KEY, payload text);\n");

# queued behind the transaction that waits for the stream: 40 transactions
# of more than a chunk each, 2.5 times queue memory
pa_close_stream_on_unique($pub, $sub, $a, q{
DO $$ BEGIN
	FOR i IN 1 .. 40 LOOP
		INSERT INTO wide VALUES (i, repeat(md5(i::text), 250));
		COMMIT;
	END LOOP;
END $$;}, 'wide');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	ok($sub->log_contains(
			qr/ERROR:  parallel_apply leader of subscription "sub" detected a deadlock with streamed transaction \d+\n(?:.*\n){2}.*CONTEXT:  worker \d+ applies remote transaction \d+, finished at [0-9A-F]+\/[0-9A-F]+\n/),
		'the leader logged the deadlock it detected, with the waiting transaction');
}

$sub->stop;
$pub->stop;
done_testing();
