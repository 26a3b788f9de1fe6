
# Copyright (c) parallel_apply authors
#
# TRUNCATE inside a transaction that is handed to its worker before COMMIT
# (review F1).  The worker that applies the TRUNCATE holds an
# AccessExclusiveLock on the table until its commit; the leader, which is
# still reading and dispatching the rest of that transaction, must never
# wait for a lock on that table (the deadlock detector cannot see the
# worker waiting for the leader's next frames, so such a wait is a hang).
#
#  A. right after the engine starts -- (1) after attach, (2) after a
#     restart of the subscriber -- the publisher runs
#       BEGIN; TRUNCATE a; INSERT INTO b ... (> 64 kB); INSERT INTO a ...; COMMIT;
#     It must be applied within a bounded time and the tables end equal.
#  B. truncate-and-reload of about 25 MB in one transaction,
#       BEGIN; TRUNCATE t; INSERT INTO t SELECT ...; COMMIT;
#     while ANALYZE of an unrelated subscriber-only table runs in a loop on
#     the subscriber (relcache invalidations during the reload).
#
# Every wait here is bounded ($progress_timeout); on a timeout the locks
# and the engine's processes are printed, and the subscription is handed
# to the built-in worker (detach) so that the next case starts clean.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $progress_timeout = 60;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4);

pa_both($pub, $sub, q{
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (id int PRIMARY KEY, v text);
CREATE TABLE t (id int PRIMARY KEY, v text);
});
$sub->safe_psql('postgres', q{
CREATE TABLE other (id int, v text);
INSERT INTO other SELECT g, 'other ' || g FROM generate_series(1, 1000) g;
});
$pub->safe_psql('postgres', q{
INSERT INTO a SELECT g, 'a ' || g FROM generate_series(1, 100) g;
INSERT INTO b SELECT g, 'b ' || g FROM generate_series(1, 100) g;
INSERT INTO t SELECT g, 't ' || g FROM generate_series(1, 100) g;
});

pa_subscribe($pub, $sub, 'sub');
pa_check_equal($pub, $sub, 'a', 'b', 't');

sub lock_diag
{
	my ($label) = @_;
	my ($ret, $out, $err) = $sub->psql(
		'postgres', q{
SELECT l.pid, a.backend_type, l.relation::regclass, l.mode, l.granted, a.wait_event_type, a.wait_event
FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'relation' AND l.relation IN ('a'::regclass, 'b'::regclass, 't'::regclass)
ORDER BY l.relation, l.granted, l.pid},
		extra_params => [ '-P', 'pager=off' ]);
	diag("$label: relation locks on a, b, t:\n" . ($out // '') . ($err // ''));
	pa_diag($sub) if pa_engine();
	return;
}

# Wait for the subscriber to confirm everything; on a timeout, print the
# locks and hand the subscription to the built-in worker so that the next
# case starts from equal tables.  One test.
sub wait_applied
{
	my ($label, $logpos) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $t0 = time;
	my $ok = pa_catchup_within($pub, 'sub', $progress_timeout);
	ok($ok, "$label: applied within ${progress_timeout}s")
	  and note sprintf('%s: applied in about %ds', $label, time - $t0);
	return 1 if $ok;
	lock_diag($label);
	diag("$label: errors in the subscriber log:\n" . pa_log_errors($sub, $logpos, 6));
	if (pa_engine())
	{
		note "$label: detaching so that the built-in worker applies the transaction";
		pa_detach($sub, 'sub');
		pa_catchup($pub, 'sub');
		pa_attach($sub, 'sub');
	}
	return 0;
}

my $next_b = 1000;

sub truncate_a_then_b_then_a
{
	my ($label) = @_;
	my $logpos = pa_log_pos($sub);
	my $from = $next_b;
	my $to = $from + 1999;    # 2000 rows of ~115 bytes in pgoutput: ~230 kB
	$next_b = $to + 1;
	$pub->safe_psql(
		'postgres', qq{
BEGIN;
TRUNCATE a;
INSERT INTO b SELECT g, repeat('b', 100) FROM generate_series($from, $to) g;
INSERT INTO a VALUES ($from, 'after the truncate');
COMMIT;
});
	wait_applied($label, $logpos);
	pa_check_equal_within($pub, $sub, 10, 'a', 'b');
	is($sub->safe_psql('postgres', 'SELECT string_agg(id::text, \',\') FROM a'),
		"$from", "$label: a holds only the row inserted after the TRUNCATE");
	return;
}

# ---------------------------------------------------------------- A1: attach
pa_attach($sub, 'sub');
truncate_a_then_b_then_a('A1, first transaction after attach');

# ---------------------------------------------------------------- A2: restart
$sub->restart;
pa_wait_engine($sub, 'sub');
truncate_a_then_b_then_a('A2, first transaction after a subscriber restart');

# ---------------------------------------------------------------- B: reload
{
	my $label = 'B, 25 MB truncate-and-reload during ANALYZE of another table';

	# the engine has seen t already: only invalidations make it look again
	$pub->safe_psql('postgres', "INSERT INTO t VALUES (100000, 'seen')");
	pa_check_equal_within($pub, $sub, $progress_timeout, 't');

	# ANALYZE changes pg_class (reltuples) only when the statistics change,
	# and only then sends a relcache invalidation: add a row each time
	my $analyze = $sub->basedir . '/analyze_other.sql';
	PostgreSQL::Test::Utils::append_to_file($analyze,
		"INSERT INTO other VALUES (0, 'more');\nANALYZE other;\n");
	# bounded: at most 120 s, stopped as soon as the reload is applied
	my $bg = pa_pgbench_bg($sub, '-n', '-c', '1', '-R', '50', '-T', '120', '-f', $analyze);
	pa_poll_for($sub,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'ANALYZE other%'",
		't', 30);

	my $logpos = pa_log_pos($sub);
	my $t0 = time;
	$pub->safe_psql(
		'postgres', q{
BEGIN;
TRUNCATE t;
INSERT INTO t SELECT g, repeat('t', 100) FROM generate_series(1, 200000) g;
COMMIT;
});
	note sprintf('publisher committed the reload in %ds', time - $t0);
	wait_applied($label, $logpos);

	ok(pa_bg_running($bg), "$label: ANALYZE loop still running at the end");
	$bg->{run}->signal('INT');
	pa_bg_finish($bg, no_test => 1);
	note 'ANALYZE other ran '
	  . $sub->safe_psql('postgres', "SELECT count(*) FROM other WHERE v = 'more'")
	  . ' times';

	pa_check_equal_within($pub, $sub, 10, 't');
}

pa_check_equal($pub, $sub, 'a', 'b', 't');
pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
