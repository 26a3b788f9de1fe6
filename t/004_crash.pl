
# Copyright (c) parallel_apply authors
#
# Crashes in the middle of a load: nothing lost, nothing applied twice.
#  - kill -9 of an apply worker (the postmaster restarts all backends, the
#    launcher restarts the leader, which resumes from the origin);
#  - kill -9 of the leader;
#  - immediate shutdown of the subscriber and start;
#  - restart of the publisher (the leader reconnects after retry_interval).
# Loads: seq_log (n = 1, 2, 3, ... in commit order; must end as exactly 1..N)
# plus pgbench tpcb-like; the subscription uses the default
# synchronous_commit = off, so honest flush feedback matters: a crash loses
# the subscriber's unflushed commits, which must be fetched again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @tables =
  qw(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history seq_log);

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4);

pa_pgbench_init($pub, $sub);
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

# Start the loads, wait until the engine is applying, run $crash->(), wait
# for the engine to come back, finish the loads and compare.
sub crash_under_load
{
	my ($label, $crash) = @_;

	my $base = $pub->safe_psql('postgres', 'SELECT count(*) FROM seq_log');
	my $seq = pa_seq_load($pub, transactions => 1500, rate => 150);
	my $bench = pa_pgbench_bg($pub, '-n', '-c', '2', '-R', '200', '-T', '10');

	pa_poll($sub, 'SELECT count(*) >= ' . ($base + 300) . ' FROM seq_log',
		't', "$label: engine applying before the crash");

	my $logpos = pa_log_pos($sub);
	$crash->($logpos);

	pa_wait_engine($sub, 'sub');
	pa_poll($sub, 'SELECT count(*) >= ' . ($base + 600) . ' FROM seq_log',
		't', "$label: engine applying after the crash");

	pa_bg_finish($seq);
	pa_bg_finish($bench);
	pa_catchup($pub, 'sub');
	pa_check_seq($pub, $sub);
	pa_check_equal($pub, $sub, @tables);
}

SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();

	# kill -9 the first process of that backend type (between $min_running
	# and $max_running of them must run); the postmaster must notice and
	# reinitialize
	my $kill_one = sub {
		my ($backend_type, $what, $min_running, $max_running, $logpos) = @_;
		my @p = pa_engine_pids($sub, $backend_type);
		ok(@p >= $min_running && @p <= $max_running,
			"$what running: " . join(',', @p));
		kill 'KILL', $p[0];
		pa_wait_log($sub, qr/\(PID $p[0]\) was terminated by signal 9/,
			$logpos);
		pa_wait_log($sub, qr/all server processes terminated; reinitializing/,
			$logpos);
		pass("$what $p[0] killed, postmaster reinitialized");
	};

	crash_under_load('kill -9 apply worker',
		sub { $kill_one->('parallel_apply worker', 'apply worker', 1, 32, @_) });
	crash_under_load('kill -9 leader',
		sub { $kill_one->('parallel_apply leader', 'leader', 1, 1, @_) });
}

crash_under_load(
	'immediate shutdown',
	sub {
		$sub->stop('immediate');
		$sub->start;
		pass('subscriber stopped (immediate) and started');
	});

# Publisher restart: the walsender goes away; the leader must reconnect.
{
	$pub->safe_psql('postgres', 'INSERT INTO seq_log(n) SELECT nextval(\'seq_log_n\')');
	pa_catchup($pub, 'sub');
	my $logpos = pa_log_pos($sub);
	$pub->restart;
	my $seq = pa_seq_load($pub, transactions => 300);
	pa_bg_finish($seq);
	pa_catchup($pub, 'sub');
	pa_check_seq($pub, $sub);
	pa_check_equal($pub, $sub, @tables);
	SKIP:
	{
		skip 'PA_NO_ENGINE set', 1 unless pa_engine();
		my $r = $sub->safe_psql('postgres',
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
		is($r, 'streaming', 'engine streaming again after publisher restart');
	}
}

# Crash while the subscriber is far behind: build a backlog with the
# subscriber down, start it, crash it again in the middle of the catch-up.
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	$sub->stop;
	my $base = $pub->safe_psql('postgres', 'SELECT count(*) FROM seq_log');
	my $seq = pa_seq_load($pub, transactions => 3000);
	my $bench = pa_pgbench_bg($pub, '-n', '-c', '2', '-t', '1500');
	pa_bg_finish($seq);
	pa_bg_finish($bench);
	$sub->start;
	pa_poll($sub, 'SELECT count(*) > ' . ($base + 100) . ' FROM seq_log',
		't', 'catch-up started');
	my $logpos = pa_log_pos($sub);
	my @w = pa_engine_pids($sub, 'parallel_apply worker');
	my @l = pa_engine_pids($sub, 'parallel_apply leader');
	my $victim = @w ? $w[-1] : $l[0];
	ok(defined $victim, 'an engine process to kill during catch-up');
	kill 'KILL', $victim;
	pa_wait_log($sub, qr/all server processes terminated; reinitializing/, $logpos);
	pa_wait_engine($sub, 'sub');
	pa_catchup($pub, 'sub');
	pa_check_seq($pub, $sub);
	pa_check_equal($pub, $sub, @tables);
}

# No apply-side corruption left behind: the subscriber's indexes agree with
# the heap (a duplicate applied twice would have failed the PK, a lost row
# shows in the comparisons above).
is( $sub->safe_psql(
		'postgres',
		"SELECT count(*) FROM seq_log WHERE n NOT IN (SELECT generate_series(1, (SELECT max(n) FROM seq_log)))"
	),
	'0',
	'no stray rows in seq_log');

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
