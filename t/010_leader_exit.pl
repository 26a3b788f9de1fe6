
# Copyright (c) parallel_apply authors
#
# A leader that stops cleanly in the middle of a catch-up must not leave
# apply workers behind (review F2).  With the smallest queue memory
# (128kB) the leader of a lagging subscription spends most of its time
# waiting for queue memory, in the middle of writing frames; a setting
# change (ALTER SUBSCRIPTION ... SET (binary = ...)) makes it stop there and
# the engine restart with the new setting.  Every worker of the old engine
# must be gone within 15 s and the engine must stream again, round after
# round; detach during a catch-up must succeed; the tables end equal.
#
# The backlog (pgbench, 2 random row updates and a history insert per
# transaction) is built while the subscription is not applying.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rounds = 20;
my $round_timeout = 15;       # old engine gone, new one streaming
my $total_budget = 100;       # seconds for all rounds together, rebuilds included
my $backlog = 50000;          # transactions per backlog

my $pub = pa_publisher('publisher', conf => "synchronous_commit = off\n");
my $sub = pa_subscriber(
	'subscriber',
	workers => 4,
	conf => "parallel_apply.queue_memory = 128kB\n");

pa_both($pub, $sub, q{
CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL DEFAULT 0);
CREATE TABLE hist (id bigserial PRIMARY KEY, a int, b int, at timestamptz DEFAULT now());
});
$pub->safe_psql('postgres',
	'INSERT INTO kv SELECT g, 0 FROM generate_series(1, 1000) g');

my $script = $pub->basedir . '/kv_hist.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set a random(1, 1000)
\set b random(1, 1000)
BEGIN;
UPDATE kv SET v = v + 1 WHERE k = :a;
UPDATE kv SET v = v - 1 WHERE k = :b;
INSERT INTO hist (a, b) VALUES (:a, :b);
COMMIT;
});

pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');
pa_check_equal($pub, $sub, 'kv', 'hist');

# stop applying (detach, disable), build a backlog of $n transactions,
# start applying again (attach, or enable without the engine)
sub backlog_then_apply
{
	my ($n) = @_;
	pa_detach($sub, 'sub');
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
		'0', 'built-in worker gone');
	my $t0 = time;
	my $h = pa_pgbench_bg($pub, '-n', '-c', '4', '-t', int($n / 4), '-f', $script);
	pa_bg_finish($h);
	note sprintf('backlog of %d transactions built in %ds', $n, time - $t0);
	my $target = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	if (pa_engine())
	{
		pa_attach($sub, 'sub');
	}
	else
	{
		$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub ENABLE');
	}
	return $target;
}

sub applied
{
	return pa_engine()
	  ? $sub->safe_psql('postgres',
		"SELECT transactions_applied FROM parallel_apply.stat_subscription WHERE subname = 'sub'")
	  : $sub->safe_psql('postgres', 'SELECT count(*) FROM hist');
}

# Wait (at most 30 s) until $more transactions more than $from were applied
# (returns 'progress') or the backlog up to $target is applied ('caught');
# '' on a timeout.
sub wait_progress
{
	my ($from, $more, $target) = @_;
	my $want = $from + $more;
	my $sql = pa_engine()
	  ? "SELECT coalesce(max(transactions_applied), 0) >= $want FROM parallel_apply.stat_subscription WHERE subname = 'sub' AND state = 'streaming'"
	  : "SELECT count(*) >= $want FROM hist";
	my $result = '';
	return $result if pa_wait_until(30, sub {
		$result = 'caught' if pa_replayed($pub, 'sub', $target);
		$result = 'progress'
		  if $result eq '' && $sub->safe_psql('postgres', $sql) eq 't';
		return $result ne '';
	});
	diag("no progress within 30s: $sql");
	return '';
}

sub pids_list
{
	my ($type) = @_;
	return join(',', pa_engine_pids($sub, $type));
}

# ---------------------------------------------------------------- rounds
# Each round: the engine catches up (at least 100 more transactions applied
# since the last round), then its settings change.  When the backlog is
# used up before $rounds rounds, another one is built, within
# $total_budget seconds for all rounds.
my $target = backlog_then_apply($backlog);
my $t_start = time;
my $done = 0;
my $stuck = 0;
my $backlogs = 1;
my $binary = 'true';
for my $round (1 .. $rounds)
{
	if (time - $t_start > $total_budget)
	{
		note "time budget of ${total_budget}s used up after $done rounds";
		last;
	}
	my $from = applied();
	my $p = wait_progress($from, 100, $target);
	unless ($p)
	{
		fail("round $round: the engine makes progress before the change");
		$stuck = 1;
		last;
	}
	if ($p eq 'caught' || pa_replayed($pub, 'sub', $target))
	{
		note "backlog $backlogs applied after $done rounds";
		$target = backlog_then_apply($backlog);
		$backlogs++;
		redo;
	}

	my $old_leader = pa_engine() ? pa_stat($sub, 'sub', 'leader_pid') : '';
	my $old_workers = pids_list('parallel_apply worker');
	my $old = join(',', grep { $_ ne '' } $old_leader, $old_workers);
	$old = '0' if $old eq '';
	$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SET (binary = $binary)");
	$binary = $binary eq 'true' ? 'false' : 'true';
	$done++;
	next unless pa_engine();

	my $gone = pa_poll_for($sub,
		"SELECT count(*) FROM pg_stat_activity WHERE pid IN ($old)",
		'0', $round_timeout);
	ok($gone,
		"round $round: leader and workers of the old engine ($old) gone within ${round_timeout}s"
	);
	unless ($gone)
	{
		my ($r, $out, $err) = $sub->psql('postgres',
			"SELECT pid, backend_type, wait_event_type, wait_event, backend_xid, state FROM pg_stat_activity WHERE pid IN ($old)",
			extra_params => [ '-P', 'pager=off' ]);
		diag("round $round: processes of the old engine still there:\n$out$err");
		pa_diag($sub);
		$stuck = 1;
		last;
	}
	ok( pa_poll_for(
			$sub,
			"SELECT count(*) = 1 FROM parallel_apply.stat_subscription WHERE subname = 'sub' AND state = 'streaming' AND leader_pid IS NOT NULL AND leader_pid <> $old_leader",
			't', $round_timeout),
		"round $round: a new engine streams within ${round_timeout}s")
	  or do { pa_diag($sub); $stuck = 1; last; };
}
note sprintf('%d rounds of ALTER SUBSCRIPTION ... SET (binary) in %ds, %d backlog(s) of %d transactions',
	$done, time - $t_start, $backlogs, $backlog);
cmp_ok($done, '>=', 10, 'at least 10 rounds ran during catch-ups') unless $stuck;

if ($stuck && pa_engine())
{
	# let the rest of the test run: end whatever the old engine left behind
	note 'terminating the processes left behind';
	$sub->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')");
}
ok(pa_catchup_within($pub, 'sub', 120), 'the backlog is applied')
  or pa_diag($sub);
pa_check_equal_within($pub, $sub, 30, 'kv', 'hist');

# ---------------------------------------------------------------- detach
{
	$target = backlog_then_apply(20000);
	my $from = applied();
	is(wait_progress($from, 300, $target), 'progress', 'catching up again before the detach');
	ok(!pa_replayed($pub, 'sub', $target), 'still catching up at the detach');
	my $old = join(',',
		pids_list('parallel_apply leader'),
		pids_list('parallel_apply worker'));
	$old = '0' if $old eq '' || $old eq ',';
	SKIP:
	{
		skip 'PA_NO_ENGINE set', 3 unless pa_engine();
		my ($out, $err) = ('', '');
		my $t0 = time;
		my $ret = $sub->psql('postgres', "SELECT parallel_apply.detach('sub')",
			stdout => \$out, stderr => \$err, timeout => 90);
		my $took = time - $t0;
		is($ret, 0, "detach during the catch-up succeeds (took ${took}s)")
		  or diag("detach: $err");
		is( $sub->safe_psql(
				'postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE pid IN ($old)"),
			'0',
			'no process of the engine left after detach');
		ok( pa_poll_for(
				$sub,
				"SELECT count(*) > 0 FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL AND relid IS NULL",
				't', 30),
			'the built-in worker took over');
	}
	ok(pa_catchup_within($pub, 'sub', 120), 'the backlog is applied after detach');
	pa_check_equal_within($pub, $sub, 30, 'kv', 'hist');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
