# Copyright (c) parallel_apply authors
#
# A transaction that waits for an open stream the publisher sends no more
# of: the stream inserted u = 7 (a unique index only the subscriber has)
# and its session on the publisher stays idle in transaction; an ordinary
# transaction inserting u = 7 commits on the publisher and waits on the
# subscriber for the stream's insert.  The stream can commit only after it
# (commit order), so the wait can end only when the publisher's session
# does, and every later transaction waits with it.  The built-in worker,
# which applies a stream at its commit, applies the ordinary transaction at
# once.  The leader must see the wait (no commit for deadlock_timeout, the
# stream starved, a worker waiting for the stream's lock) although it waits
# for nothing itself, and re-apply serially.  Before the fix the
# subscription stood still for as long as the publisher's session stayed
# open.  Then the same with a lock a user session on the subscriber holds:
# that wait is left alone, as the built-in worker's would be.
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
	conf => "deadlock_timeout = 200ms\n");

my $engine = pa_engine();
my $session = pa_open_stream_on_unique($pub, $sub);

# Does the subscriber return $expected for $query within $secs seconds?
# (poll_query_until with a shorter timeout than the suite's default)
sub shows_within
{
	my ($query, $expected, $secs) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $secs;
	return $sub->poll_query_until('postgres', $query, $expected);
}

my $waiter = $pub->safe_psql('postgres',
	'BEGIN; INSERT INTO uq VALUES (2, 7); UPDATE uq SET u = 9 WHERE id = 2; SELECT txid_current(); COMMIT');
$pub->safe_psql('postgres', 'INSERT INTO uq VALUES (3, 3)');
ok(shows_within(q{SELECT string_agg(id || ':' || u, ',' ORDER BY id) FROM uq},
		'2:9,3:3', 60),
	'transactions committed after the stream opened are applied while it stays open')
  or pa_diag($sub);
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless $engine;
	ok($sub->log_contains(
			qr/ERROR:  parallel_apply leader of subscription "sub" detected a deadlock with streamed transaction \d+\n.*DETAIL:  Worker 1 waits for a lock held by the stream open in worker 2, which can commit only after it, once the publisher has sent the rest of the stream\.\n.*HINT:  .*\n.*CONTEXT:  worker 1 applies remote transaction $waiter, finished at [0-9A-F]+\/[0-9A-F]+\n/),
		'the leader logged the wait it broke, why, and the waiting transaction');
	cmp_ok(pa_stat($sub, 'sub', 'serial_retries'), '>', 0,
		'the wait was broken by a serial re-apply');
}

# the stream commits (spooled by the serial re-apply, applied at its commit)
$session->query_safe('COMMIT');
$session->quit;
ok(pa_catchup_within($pub, 'sub', 120), 'the subscription catches up')
  or pa_diag($sub);
pa_check_equal($pub, $sub, 'uq', 'big');

# A transaction that waits for a lock a user session on the subscriber holds
# while a stream is open is left to wait, as the built-in worker would: the
# leader stops the engine only for a lock the stream's worker holds.
my $retries = $engine ? pa_stat($sub, 'sub', 'serial_retries') : 0;
# the first ordinary transaction past the serial window ends it (until then
# a new stream is spilled)
$pub->safe_psql('postgres', 'INSERT INTO uq VALUES (4, 40)');
pa_catchup($pub, 'sub');
my $locker = $sub->background_psql('postgres', on_error_stop => 1);
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT * FROM uq WHERE id = 3 FOR UPDATE');
my $stream = $pub->background_psql('postgres', on_error_stop => 1);
$stream->query_safe('BEGIN');
$stream->query_safe(
	"INSERT INTO big SELECT g, repeat('t', 100) FROM generate_series(10001, 13000) g");
ok(shows_within(
		'SELECT count(*) > 0 FROM parallel_apply.stat_workers WHERE stream_xid IS NOT NULL',
		't', 60),
	'the second stream is open on a worker')
  or pa_diag($sub)
  if $engine;
$pub->safe_psql('postgres', 'UPDATE uq SET u = 4 WHERE id = 3');
pa_poll($sub,
	q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	  WHERE NOT l.granted AND now() - l.waitstart > interval '1 s'
	    AND a.backend_type IN ('parallel_apply worker', 'logical replication worker')},
	't', 'a worker has waited 1 s for the user session (5 times deadlock_timeout)');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	is(pa_stat($sub, 'sub', 'serial_retries'), $retries,
		'a wait for a user session with a stream open does not stop the engine');
}
$locker->query_safe('COMMIT');
$locker->quit;
ok(shows_within('SELECT u FROM uq WHERE id = 3', '4', 60),
	'the transaction is applied once the user session ends')
  or pa_diag($sub);
$stream->query_safe('COMMIT');
$stream->quit;
ok(pa_catchup_within($pub, 'sub', 120), 'the subscription catches up again')
  or pa_diag($sub);
pa_check_equal($pub, $sub, 'uq', 'big');

$sub->stop;
$pub->stop;
done_testing();
