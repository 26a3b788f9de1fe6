
# Copyright (c) parallel_apply authors
#
# kill -9 of an apply worker while dependent transactions wait for each other.
#
# Hot-row workload: counter has 10 rows; every publisher transaction
# increments two different rows of it (so it depends on the latest writers of
# both: workers wait for each other), and appends one row to txlog numbered
# by a sequence, recording the counter values it produced.  txlog has no key,
# so a transaction applied twice would leave a duplicate row behind instead
# of failing.
#
# Round 1 (forced): a session on the subscriber holds counter row 1 locked,
# so the transaction that updates it stalls and the transactions behind it
# wait (stat_workers.state = 'waiting'); one of the waiting workers is killed
# with SIGKILL.  The postmaster restarts every backend, the launcher restarts
# the engine, which resumes from the subscription's origin.
# Round 2 (natural): same load without the lock; a waiting worker is killed
# if one shows up, an applying one otherwise.
# Load continues across the crash.  Checks: txlog equals the publisher's,
# has no duplicate and no gap (1..N); for every counter row the values
# recorded in txlog are exactly 1..n (nothing lost, nothing applied twice);
# both tables equal on both sides.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PaTest;
use PaSession;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 8;
my $txns_per_client = $ENV{PA_KILL_TXNS} || 800;
my @tables = qw(counter txlog);

# ---------------------------------------------------------------- nodes
my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\n");

pa_both($pub, $sub, q{
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE txlog (n bigint NOT NULL, lo int NOT NULL, nlo bigint NOT NULL,
                    hi int NOT NULL, nhi bigint NOT NULL);
});
$pub->safe_psql('postgres', q{
CREATE SEQUENCE txlog_seq;
INSERT INTO counter SELECT i, 0 FROM generate_series(1, 10) i;
});
pa_subscribe($pub, $sub, 'sub', tables => \@tables);
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');

my $script = $pub->basedir . '/hot.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set r1 random(1, 10)
\set d random(1, 9)
\set r2 (:r1 + :d - 1) % 10 + 1
\set lo least(:r1, :r2)
\set hi greatest(:r1, :r2)
BEGIN;
UPDATE counter SET n = n + 1 WHERE id = :lo RETURNING n AS nlo \gset
UPDATE counter SET n = n + 1 WHERE id = :hi RETURNING n AS nhi \gset
INSERT INTO txlog VALUES (nextval('txlog_seq'), :lo, :nlo, :hi, :nhi);
END;
});

# Every counter row: the values recorded in txlog are exactly 1..n; txlog
# numbers are distinct and 1..count; sum(n) = 2 * count(txlog).
my $consistent = q{SELECT
  (SELECT bool_and(ok) FROM (
     SELECT c.n = count(v.val) AND count(v.val) = count(DISTINCT v.val)
            AND c.n = coalesce(max(v.val), 0) AS ok
     FROM counter c LEFT JOIN (SELECT lo AS id, nlo AS val FROM txlog
                               UNION ALL SELECT hi, nhi FROM txlog) v USING (id)
     GROUP BY c.id, c.n) s)
  AND (SELECT count(*) = count(DISTINCT n) AND count(*) = coalesce(max(n), 0)
              AND coalesce(min(n), 1) = 1 FROM txlog)
  AND (SELECT sum(n) FROM counter) = 2 * (SELECT count(*) FROM txlog)};

# Kill an apply worker, preferring one whose state is 'waiting'.  Returns
# (pid, state).
sub kill_apply_worker
{
	my ($label, $must_wait) = @_;
	my $s = session_start($sub);
	my ($pid, $state);
	my $deadline = time + ($must_wait ? $PostgreSQL::Test::Utils::timeout_default : 15);
	my $tries = 0;
	while (1)
	{
		$tries++;
		my $r = session_query($s,
			"SELECT w.pid || ' ' || w.state || ' ' || coalesce(a.wait_event_type, '-') FROM parallel_apply.stat_workers w LEFT JOIN pg_stat_activity a USING (pid) WHERE w.subname = 'sub' AND w.worker_type = 'apply' AND (w.state = 'waiting' OR a.wait_event_type = 'Lock') LIMIT 1"
		);
		if ($r ne '')
		{
			my $wait_event_type;
			($pid, $state, $wait_event_type) = split / /, $r;
			note "$label: worker $pid ($state) is waiting (wait_event_type $wait_event_type) after $tries polls";
			$state = 'waiting';	# on a WAIT, or on a lock behind the locked row
			last;
		}
		last if time > $deadline;
	}
	if (!defined $pid)
	{
		my $r = session_query($s,
			"SELECT pid || ' ' || state FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply' ORDER BY state = 'applying' DESC LIMIT 1"
		);
		($pid, $state) = split / /, $r;
		note "$label: no waiting worker seen in $tries polls; killing $state worker $pid";
	}
	session_kill($s);
	ok(defined $pid && $pid > 0, "$label: found an apply worker to kill");
	my $logpos = pa_log_pos($sub);
	kill 'KILL', $pid;
	pa_wait_log($sub, qr/\(PID $pid\) was terminated by signal 9/, $logpos);
	pa_wait_log($sub, qr/all server processes terminated; reinitializing/,
		$logpos);
	pass("$label: $state worker $pid killed with SIGKILL, postmaster reinitialized");
	return ($pid, $state);
}

sub txlog_count
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT count(*) FROM txlog');
}

sub round
{
	my ($label, $forced) = @_;

	my $base = txlog_count($pub);
	my $locker;
	my $engine = pa_engine();
	if ($forced && $engine)
	{
		$locker = session_start($sub);
		session_query($locker, 'BEGIN');
		is(session_query($locker, 'SELECT n FROM counter WHERE id = 1 FOR UPDATE'),
			$sub->safe_psql('postgres', 'SELECT n FROM counter WHERE id = 1'),
			"$label: subscriber session holds counter row 1 locked");
	}

	my $bench = pa_pgbench_bg($pub, '-n', '-c', $clients, '-j', '2', '-t',
		$txns_per_client, '-f', $script);

	# the engine is applying (unless row 1 is blocked right away) and
	# transactions have piled up
	pa_poll($pub, 'SELECT count(*) > ' . ($base + 300) . ' FROM txlog',
		't', "$label: load running");

	my $at_restart = 0;
	if ($engine)
	{
		my ($pid, $state) = kill_apply_worker($label, $forced);
		is($state, 'waiting',
			"$label: the killed worker was waiting for another transaction")
		  if $forced;
		session_kill($locker) if $locker;

		pa_wait_engine($sub, 'sub');
		$at_restart = txlog_count($sub);
		note "$label: subscriber has $at_restart txlog rows after the restart";
	}

	pa_bg_finish($bench);
	my $total = txlog_count($pub);
	cmp_ok($total - $base, '==', $clients * $txns_per_client,
		"$label: all publisher transactions committed");
	# with the row locked the subscriber cannot have caught up at the kill
	cmp_ok($at_restart, '<', $total,
		"$label: the load continued after the crash")
	  if $forced;

	pa_catchup($pub, 'sub');
	is($pub->safe_psql('postgres', $consistent), 't',
		"$label: publisher consistent (sanity)");
	is($sub->safe_psql('postgres', $consistent), 't',
		"$label: subscriber: per row counter values 1..n, txlog 1..N without duplicates"
	);
	pa_check_equal($pub, $sub, @tables);
	is(txlog_count($sub), $total, "$label: subscriber has all $total txlog rows");
	return;
}

# (with PA_NO_ENGINE the rounds run the load and the checks, without kills)
round('round 1 (row lock on the subscriber)', 1);
round('round 2 (no lock)', 0);

pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, @tables);

$sub->stop;
$pub->stop;
done_testing();
