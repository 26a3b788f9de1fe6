
# Copyright (c) parallel_apply authors
#
# A transaction that depends on two earlier ones, one in its own worker's
# open group and one still queued on another worker, must wait for the
# second.  Found by t/029 (seed 219607: rows_not_found = r3:1 with tables
# equal): the leader reduced a transaction's dependencies to their maximum
# and sent one WAIT for it, and a worker skips a WAIT for a transaction of
# its own open group (it is applied already, in the same local
# transaction); so when the maximum was in the group, the earlier
# dependency on the other worker was not waited for.  The change then ran
# before the row it needs was written: an UPDATE found no row (the safety
# net of DESIGN.md invariant 4 looked again after the predecessors
# committed, so only rows_not_found showed it), an INSERT hit the row an
# uncommitted DELETE was about to remove (a duplicate-key error and a serial
# retry).
#
# Two workers, parallel_apply.group_size = 2, so placement is known:
#   T1  UPDATE tl (row 1 locked by our session): worker 1, blocked
#   T2  writes tc: behind T1 in worker 1's run (run of 2)
#   T3  INSERT td: the run is full, T3 is independent: worker 2
#   T4  writes td (depends on T3, worker 2's own group) and THEN tc (depends
#       on T2, worker 1): placed behind T3 in worker 2's run.
# The four are a backlog, so that T4's BEGIN is queued when worker 2 ends
# T3 and joins its group.  T4 must wait for T2's commit before its change
# of tc.  Round 1: T2 inserts tc 100, T4 updates it: without the WAIT the
# lookup misses (rows_not_found = 1; this check failed before the fix).
# Round 2: T2 deletes tc 50, T4 inserts tc 50: without the WAIT the insert
# meets the row; the conflict check's own wait for the predecessors (an
# insert_exists is reported only once they have committed) also saves this
# one, so round 2 guards both: no error, no serial retry, the row there.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PaSession;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "parallel_apply.group_size = 2\n");

my $ddl = 'CREATE TABLE tl (id int PRIMARY KEY, v int);
	CREATE TABLE tc (id int PRIMARY KEY, v int);
	CREATE TABLE td (id int PRIMARY KEY, v int);';
$pub->safe_psql('postgres', $ddl);
$sub->safe_psql('postgres', $ddl);
$pub->safe_psql('postgres', 'INSERT INTO tl VALUES (1, 0); INSERT INTO tc VALUES (50, 0)');
pa_subscribe($pub, $sub, 'sub', tables => [qw(tl tc td)]);
pa_attach($sub, 'sub');
pa_catchup($pub, 'sub');
my $logpos = pa_log_pos($sub);

# both workers wait on a heavyweight lock: worker 1 for our row lock (T1),
# worker 2 for T2's commit (T4)
my $both_wait = q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'parallel_apply worker' AND wait_event_type = 'Lock'};

sub round
{
	my ($label, $t2, $t3, $t4) = @_;
	pa_catchup($pub, 'sub');

	# a backlog, so that T4's BEGIN is queued when worker 2 ends T3 (it
	# then joins T3's group)
	pa_stop_applying($sub, 'sub');
	$pub->safe_psql('postgres', 'UPDATE tl SET v = v + 1 WHERE id = 1');
	$pub->safe_psql('postgres', $t2);
	$pub->safe_psql('postgres', $t3);
	$pub->safe_psql('postgres', "BEGIN; $t4; COMMIT");
	my $locker = session_start($sub);
	session_query($locker, 'BEGIN');
	session_query($locker, 'SELECT 1 FROM tl WHERE id = 1 FOR UPDATE');
	pa_resume_applying($sub, 'sub');
  SKIP:
	{
		skip 'PA_NO_ENGINE set: one worker applies in order', 1 unless pa_engine();
		ok(pa_poll_for($sub, $both_wait, '2', 60),
			"$label: T1 waits for our lock, T4 for T2's commit") or pa_diag($sub);
	}
	session_query($locker, 'COMMIT');
	session_quit($locker);
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, qw(tl tc td));
	return;
}

round('round 1 (UPDATE of a row an earlier transaction inserts)',
	'INSERT INTO tc VALUES (100, 0)',
	'INSERT INTO td VALUES (100, 0)',
	'UPDATE td SET v = 1 WHERE id = 100; UPDATE tc SET v = 1 WHERE id = 100');
SKIP:
{
	skip 'PA_NO_ENGINE set: engine counters', 1 unless pa_engine();
	is(pa_rel_stat($sub, 'sub', 'tc', 'rows_not_found'), '0',
		'round 1: the UPDATE found its row at the first lookup (rows_not_found = 0)');
}

round('round 2 (INSERT of a key an earlier transaction deletes)',
	'DELETE FROM tc WHERE id = 50',
	'INSERT INTO td VALUES (200, 0)',
	'UPDATE td SET v = 1 WHERE id = 200; INSERT INTO tc VALUES (50, 9)');
SKIP:
{
	skip 'PA_NO_ENGINE set: engine counters', 2 unless pa_engine();
	is(pa_stat($sub, 'sub', 'serial_retries'), '0', 'round 2: no serial retry');
	is(pa_stat($sub, 'sub', 'apply_error_count'), '0', 'round 2: no apply error');
}
my @errors = grep { $_->{level} eq 'ERROR' } pa_log_messages($sub, $logpos);
is(scalar @errors, 0, 'no ERROR in the subscriber log')
  or diag(join("\n", map { $_->{text} } @errors));
is($sub->safe_psql('postgres', 'SELECT v FROM tc WHERE id = 50'), '9',
	'round 2: the row T4 inserted is there');

$sub->stop;
$pub->stop;
done_testing();
