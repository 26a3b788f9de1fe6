
# Copyright (c) parallel_apply authors
#
# pgbench workloads through parallel_apply with 1 and with 4 apply workers.
#
# While the engine applies, a reader on the subscriber checks in every
# snapshot that
#  - seq_log is a prefix 1..k (commit order: the publisher commits seq_log
#    rows in order from one client, so a gap means a later transaction became
#    visible before an earlier one), and
#  - the TPC-B sums agree (atomicity: sum(abalance) = sum(bbalance) =
#    sum(tbalance) = sum(delta)).
# Every phase ends with the subscriber equal to the publisher.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $load_seconds = $ENV{PA_LOAD_SECONDS} || 8;

my @pgbench_tables =
  qw(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history);

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 1);

# pgbench schema + data on the publisher, empty schema with keys on the subscriber
pa_pgbench_init($pub, $sub);

pa_subscribe($pub, $sub, 'sub');
pa_check_equal($pub, $sub, @pgbench_tables, 'seq_log');

pa_attach($sub, 'sub');

my $tpcb_ok = qq{(SELECT count(*) = coalesce(max(n), 0) FROM seq_log)
  AND (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)
  AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers)
  AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)};
my $seq_ok = q{(SELECT count(*) = coalesce(max(n), 0) FROM seq_log)};

SKIP:
{
	skip 'PA_NO_ENGINE set', 9 unless pa_engine();

	is( $sub->safe_psql('postgres',
			"SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
		'f',
		'attached subscription is disabled for the built-in worker');
	is( $sub->safe_psql(
			'postgres',
			"SELECT s.oid = a.subid, a.workers, a.state FROM parallel_apply.stat_subscription a JOIN pg_subscription s ON s.subname = a.subname"
		),
		't|1|streaming',
		'stat_subscription: one row, 1 worker, streaming');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply launcher'"
		),
		'1',
		'one launcher in pg_stat_activity');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply leader'"
		),
		'1',
		'one leader in pg_stat_activity');
	is( $sub->safe_psql(
			'postgres',
			"SELECT leader_pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'parallel_apply leader') FROM parallel_apply.stat_subscription"
		),
		't',
		'stat_subscription.leader_pid is the leader process');
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker'",
		'1', 'one apply worker');
	pa_poll(
		$sub,
		"SELECT string_agg(worker_type || ':' || worker_id, ',' ORDER BY worker_type DESC, worker_id) FROM parallel_apply.stat_workers WHERE subname = 'sub'",
		'leader:0,apply:1',
		'stat_workers lists the leader and one apply worker');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM parallel_apply.stat_workers w JOIN pg_stat_activity a ON a.pid = w.pid"
		),
		'2',
		'stat_workers pids are live processes');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_replication_origin WHERE roname = (SELECT 'pg_' || oid FROM pg_subscription WHERE subname = 'sub')"
		),
		'1',
		'the subscription origin exists');
}

# Run tpcb-like + the ordered seq_log client on the publisher while a reader
# checks invariants on the subscriber.
sub run_phase
{
	my ($label, $builtin, $cond) = @_;

	my $seq_before =
	  $pub->safe_psql('postgres', 'SELECT count(*) FROM seq_log');
	my $checker = pa_checker_bg($sub, $load_seconds + 2, $cond);
	my $bench = pa_pgbench_bg($pub, '-n', '-b', $builtin, '-c', '4', '-j',
		'2', '-T', $load_seconds);
	my $seq =
	  pa_seq_load($pub, transactions => 100 * $load_seconds, rate => 100);

	# the engine must be applying while the load runs
	pa_poll($sub, "SELECT count(*) > $seq_before + 50 FROM seq_log",
		't', "$label: subscriber applying during load");

	pa_bg_finish($bench);
	pa_bg_finish($seq);
	pa_catchup($pub, 'sub');
	pa_bg_finish($checker);
	my $checks = PaTest::pa_checker_count($checker);
	note "$label: $checks invariant checks on the subscriber";
	cmp_ok($checks, '>', 10,
		"$label: reader checked invariants on the subscriber ($checks times)");

	pa_check_equal($pub, $sub, @pgbench_tables, 'seq_log');
	pa_check_seq($pub, $sub);
}

run_phase('workers=1 tpcb-like', 'tpcb-like', $tpcb_ok);

my $applied_1 = 0;
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	$applied_1 = $sub->safe_psql('postgres',
		"SELECT transactions_applied FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
	cmp_ok($applied_1, '>', 100 * $load_seconds,
		'transactions_applied counts applied transactions');
}

# 4 workers (restart: also proves the attachment survives a restart)
$sub->append_conf('postgresql.conf', 'parallel_apply.workers = 4');
$sub->restart;
pa_wait_engine($sub, 'sub');

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT workers FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
		),
		'4',
		'stat_subscription shows 4 workers after restart');
	is( $sub->safe_psql('postgres',
			"SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
		'f',
		'still attached after restart');
}

run_phase('workers=4 tpcb-like', 'tpcb-like', $tpcb_ok);

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	pa_poll(
		$sub,
		"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply'",
		'4', 'stat_workers lists 4 apply workers');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker'"
		),
		'4',
		'4 apply worker processes');
	cmp_ok(
		$sub->safe_psql(
			'postgres',
			"SELECT transactions_applied FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
		),
		'>', 0,
		'transactions_applied > 0 with 4 workers');
}

# simple-update: independent transactions (random accounts), so the engine
# can really apply in parallel; only the seq_log prefix invariant applies.
run_phase('workers=4 simple-update', 'simple-update', $seq_ok);

# Catch-up of a backlog: stop the subscriber, build a backlog of independent
# transactions, start it again; the engine must resume from the origin and
# spread the backlog over its workers.
$sub->stop;
$pub->command_ok(
	[
		'pgbench', '-n', '-b', 'simple-update', '-c', '4', '-j', '2', '-t',
		'1000', 'postgres'
	],
	'backlog built while the subscriber is down');
my $seq = pa_seq_load($pub, transactions => 500);
pa_bg_finish($seq);
$sub->start;
pa_wait_engine($sub, 'sub');
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, @pgbench_tables, 'seq_log');
pa_check_seq($pub, $sub);

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	my $busy = $sub->safe_psql(
		'postgres',
		"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply' AND transactions_applied > 0"
	);
	cmp_ok($busy, '>=', 2,
		"backlog of independent transactions was applied by several workers ($busy)"
	);
	my $sum = $sub->safe_psql(
		'postgres',
		"SELECT (SELECT sum(transactions_applied) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply') >= 4500"
	);
	is($sum, 't', 'apply workers applied the whole backlog (>= 4500 transactions)');
}

# And back to the built-in worker: still no gap.
pa_detach($sub, 'sub');
$seq = pa_seq_load($pub, transactions => 300);
pa_bg_finish($seq);
pa_catchup($pub, 'sub');
pa_check_seq($pub, $sub);
pa_check_equal($pub, $sub, @pgbench_tables, 'seq_log');

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
