
# Copyright (c) parallel_apply authors
#
# A dependency the tracker cannot see: a unique index that exists only on the
# subscriber, on a column that is not part of the replica identity.
#
#   publisher:  t (id int PRIMARY KEY, email text)
#   subscriber: the same, plus CREATE UNIQUE INDEX t_email_uniq ON t (email),
#               created after the subscription is attached.
#
# The publisher frees an email in one transaction (DELETE of the row, which
# sends only the key; or UPDATE to another email, which sends only the new
# row) and gives the freed email to a new row in the next transaction.  The
# leader sees no common key between the two, so it may apply the INSERT before
# the DELETE/UPDATE has committed.  The worker applying the INSERT finds the
# email taken in the unique index; before it reports a conflict it waits
# until every earlier transaction has committed and looks again
# (src/conflict.c), so it never fails: no unique violation, no conflict, no
# serial retry, and the subscriber ends equal to the publisher.  (Before the
# conflict check the INSERT failed and the engine re-applied the window
# serially; t/017 keeps that path covered with an exclusion constraint.)
#
# Phase 1 races: a single publisher client emits thousands of such pairs,
# first live (1a), then as a backlog (1b), where the race is certain.
# Phase 2 forces the race: a session on the subscriber holds a row lock on the
# row the publisher deletes, so the DELETE's worker stalls while the INSERT is
# applied by another worker; the INSERT must wait, not fail (nothing is
# retried serially), and once the lock is released everything arrives.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pairs = $ENV{PA_HIDDEN_PAIRS} || 2000;
my $rows = 2 * $pairs + 1000;    # phase 1 touches rows 1 .. 2 * $pairs

my $pub = pa_publisher('publisher');
# one transaction per local commit: every intermediate state is visible,
# and consecutive transactions are spread over the workers
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\n");

pa_both($pub, $sub, 'CREATE TABLE t (id int PRIMARY KEY, email text)');
$pub->safe_psql('postgres', qq{
CREATE SEQUENCE pair_seq;
INSERT INTO t SELECT i, 'e' || i FROM generate_series(1, $rows) i;
});
pa_subscribe($pub, $sub, 'sub', tables => ['t']);
pa_attach($sub, 'sub');

# the hidden index: subscriber only, after attach
$sub->safe_psql('postgres', 'CREATE UNIQUE INDEX t_email_uniq ON t (email)');
pa_check_equal($pub, $sub, 't');

sub serial_retries
{
	return 0 unless pa_engine();
	return $sub->safe_psql('postgres',
		"SELECT serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
}

# ---------------------------------------------------------------- phase 1
# Each pgbench transaction of this script is three publisher transactions
# (autocommit): the sequence draw (no change, not replicated), the statement
# that frees email e<i>, and the INSERT that takes it.
my $script = $pub->basedir . '/pairs.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
SELECT nextval('pair_seq') AS i \gset
\if :i % 2 = 0
DELETE FROM t WHERE id = :i;
\else
UPDATE t SET email = 'moved-' || :i WHERE id = :i;
\endif
INSERT INTO t VALUES (:i + 100000, 'e' || :i);
});

# Phase 1a: live, the subscriber follows the publisher client.  Whether the
# race bites depends on timing; the outcome must be equal tables either way.
# Phase 1b: the same pairs committed while the subscriber is down, then
# applied as a backlog: the leader hands DELETE and INSERT of a pair to two
# workers at once, so the INSERT regularly runs first.
my $logpos = pa_log_pos($sub);
my $retries0 = serial_retries();
my $bench = pa_pgbench_bg($pub, '-n', '-c', '1', '-t', $pairs, '-f', $script);
pa_bg_finish($bench);
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't');
is( $pub->safe_psql('postgres', "SELECT count(*) FROM t WHERE id > 100000"),
	$pairs, "phase 1a: publisher made $pairs pairs");
my $log = pa_log_since($sub, $logpos);
my $violation_re = pa_unique_violation_re('t_email_uniq');
my $violations = () = $log =~ /$violation_re/g;
note "phase 1a (live): serial_retries $retries0 -> "
  . serial_retries()
  . ", $violations unique violations in workers";

$sub->stop;
$logpos = pa_log_pos($sub);
$bench = pa_pgbench_bg($pub, '-n', '-c', '1', '-t', $pairs, '-f', $script);
pa_bg_finish($bench);
$sub->start;
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't');
is( $pub->safe_psql('postgres', "SELECT count(*) FROM t WHERE id > 100000"),
	2 * $pairs, "phase 1b: publisher made $pairs more pairs");

SKIP:
{
	skip 'PA_NO_ENGINE set', 4 unless pa_engine();
	# the counters start from zero with the restarted server
	my $retries = serial_retries();
	$log = pa_log_since($sub, $logpos);
	$violations = () = $log =~ /$violation_re/g;
	my $deadlocks = () = $log =~ /deadlock detected/g;
	note "phase 1b (backlog): serial_retries $retries, "
	  . "$violations unique violations and $deadlocks deadlocks in workers";
	is($retries, 0,
		'phase 1b: nothing was retried serially: the INSERT waited for the transaction freeing its email'
	);
	is($violations, 0, 'phase 1b: no unique violation in the workers');
	is( $sub->safe_psql('postgres',
			"SELECT confl_insert_exists + confl_update_exists + confl_multiple_unique_conflicts FROM parallel_apply.stat_conflicts WHERE subname = 'sub'"),
		'0', 'phase 1b: no conflict counted');
	is( $sub->safe_psql('postgres',
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
		'streaming',
		'phase 1b: engine streaming after the retries');
}

# ---------------------------------------------------------------- phase 2
# Forced: the subscriber holds a row locked that phase 1 did not touch, the
# publisher deletes it and gives its email to a new row.
SKIP:
{
	skip 'PA_NO_ENGINE set', 6 unless pa_engine();

	my $victim = $rows;    # a row phase 1 did not touch
	is($sub->safe_psql('postgres', "SELECT email FROM t WHERE id = $victim"),
		"e$victim", "phase 2: row $victim is there with email e$victim");

	$logpos = pa_log_pos($sub);
	$retries0 = serial_retries();
	my $locker = $sub->background_psql('postgres');
	$locker->query_safe("BEGIN; SELECT id FROM t WHERE id = $victim FOR UPDATE");

	$pub->safe_psql('postgres', "DELETE FROM t WHERE id = $victim");
	$pub->safe_psql('postgres',
		"INSERT INTO t VALUES ($victim + 200000, 'e$victim')");
	# some independent transactions behind them
	$pub->safe_psql('postgres',
		"INSERT INTO t SELECT i, 'late' || i FROM generate_series(300001, 300020) i"
	);
	$pub->safe_psql('postgres', 'UPDATE t SET email = email || \'!\' WHERE id BETWEEN 1 AND 50');

	# the DELETE waits for our row lock; the INSERT finds the email taken by
	# the still-present row and waits for the DELETE's commit, not failing
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker' AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')",
		't', 'phase 2: the DELETE waits for the locked row');
	is($sub->safe_psql('postgres', "SELECT count(*) FROM t WHERE id = $victim + 200000"),
		'0', 'phase 2: the INSERT is not visible while the DELETE waits (commit order)');

	$locker->query_safe('COMMIT');
	$locker->quit;

	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 't');
	is(serial_retries(), $retries0, 'phase 2: nothing was retried serially');
	my $phase2 = pa_log_since($sub, $logpos);
	my $phase2_violations = () = $phase2 =~ /$violation_re/g;
	is($phase2_violations, 0, 'phase 2: no unique violation or conflict logged');
}

pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't');

# after all of this, ordinary traffic still flows
$pub->safe_psql('postgres', "INSERT INTO t VALUES (400000, 'final')");
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't');
is($sub->safe_psql('postgres',
		"SELECT count(*) FROM t WHERE email = 'final'"), '1', 'final row replicated');

$sub->stop;
$pub->stop;
done_testing();
