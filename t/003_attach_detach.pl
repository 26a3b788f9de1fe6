
# Copyright (c) parallel_apply authors
#
# attach / detach: the engine and the built-in apply worker hand the
# subscription over to each other through its replication origin without
# losing or repeating a transaction.
#  - seq_log(n) gets n = 1, 2, 3, ... in commit order from one client; the
#    subscriber must end with exactly 1..N, and a reader checks in every
#    snapshot that seq_log is a prefix (commit order);
#  - attach -> load -> detach -> load -> attach -> load, then the same
#    switches while the load runs;
#  - a backlog made while the subscription was disabled is read in paced
#    batches (stat_subscription.paced_reads), and not with receive_batch = 0;
#  - refusal to attach while tables are not synchronized, and for an
#    already attached subscription;
#  - ALTER SUBSCRIPTION ... ENABLE by hand while attached: the engine steps
#    aside (its leader exits and says so in the log), the built-in worker
#    continues, and detach/attach work again afterwards;
#  - DROP SUBSCRIPTION of an attached subscription stops the engine and
#    drops the slot.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4);

pa_seq_setup($pub, $sub);
pa_both($pub, $sub,
	'CREATE TABLE kv (k int PRIMARY KEY, v int NOT NULL DEFAULT 0, u int UNIQUE)');
$pub->safe_psql('postgres',
	'INSERT INTO kv SELECT g, 0, g FROM generate_series(1, 100) g');

# updates on a small key space (dense dependencies) plus unique-key swaps
my $kv_script = $pub->basedir . '/kv.sql';
PostgreSQL::Test::Utils::append_to_file(
	$kv_script, q{
\set a random(1, 100)
\set b random(1, 100)
BEGIN;
UPDATE kv SET v = v + 1 WHERE k = :a;
UPDATE kv SET v = v - 1 WHERE k = :b;
COMMIT;
});

pa_subscribe($pub, $sub, 'sub');
pa_check_equal($pub, $sub, 'seq_log', 'kv');

my $prefix_ok = 'SELECT count(*) = coalesce(max(n), 0) FROM seq_log';

# --- sequential: attach -> load -> detach -> load -> attach -> load
sub load_and_check
{
	my ($label, $n) = @_;
	my $seq = pa_seq_load($pub, transactions => $n);
	my $kv = pa_pgbench_bg($pub, '-n', '-c', '2', '-t', $n / 2, '-f', $kv_script);
	pa_bg_finish($seq);
	pa_bg_finish($kv);
	pa_catchup($pub, 'sub');
	pa_check_seq($pub, $sub);
	pa_check_equal($pub, $sub, 'seq_log', 'kv');
}

pa_attach($sub, 'sub');
load_and_check('attached', 1000);
pa_detach($sub, 'sub');
SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	is( $sub->safe_psql('postgres',
			"SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
		't',
		'detach re-enables the subscription');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')"
		),
		'0',
		'no leader or apply worker after detach');
}
load_and_check('detached', 1000);
pa_attach($sub, 'sub');
load_and_check('attached again', 1000);

# --- paced reads: a backlog that committed on the publisher while the
# subscription was disabled is read in paced batches (stat_subscription
# counts the pauses); parallel_apply.receive_batch = 0 turns pacing off.
sub backlog_paced_reads
{
	my ($label) = @_;
	pa_detach($sub, 'sub');
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
		'0', "$label: built-in worker gone");
	my $kv = pa_pgbench_bg($pub, '-n', '-c', '2', '-t', '4000', '-f', $kv_script);
	pa_bg_finish($kv);
	pa_attach($sub, 'sub');
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, 'seq_log', 'kv');
	return $sub->safe_psql('postgres',
		"SELECT paced_reads FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
}

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	my $paced = backlog_paced_reads('paced');
	note "paced_reads after a backlog of 8000 transactions: $paced";
	cmp_ok($paced, '>', 1,
		'a backlog of 8000 transactions is read in paced batches');
	$sub->safe_psql('postgres',
		'ALTER SYSTEM SET parallel_apply.receive_batch = 0');
	$sub->reload;
	is(backlog_paced_reads('not paced'), '0',
		'receive_batch = 0: no paced reads');
	$sub->safe_psql('postgres', 'ALTER SYSTEM RESET parallel_apply.receive_batch');
	$sub->reload;
}

# --- refusals
SKIP:
{
	skip 'PA_NO_ENGINE set', 6 unless pa_engine();

	my ($ret, $out, $err) = pa_attach_sql($sub, 'sub');
	isnt($ret, 0, 'attach of an attached subscription fails');
	like(
		$err,
		qr/ERROR:  subscription "sub" is already attached to parallel_apply/,
		'already attached: error message');

	# a second subscription whose table is not synchronized yet (state 'i')
	pa_both($pub, $sub, 'CREATE TABLE notsync (id int PRIMARY KEY)');
	$pub->safe_psql('postgres',
		'CREATE PUBLICATION pub_ns FOR TABLE notsync; INSERT INTO notsync VALUES (1)');
	(my $connstr = $pub->connstr('postgres')) =~ s/'/''/g;
	$sub->safe_psql('postgres',
		"CREATE SUBSCRIPTION sub_ns CONNECTION '$connstr' PUBLICATION pub_ns WITH (enabled = false)"
	);
	($ret, $out, $err) = pa_attach_sql($sub, 'sub_ns');
	isnt($ret, 0, 'attach before the initial sync fails');
	like(
		$err,
		qr/ERROR:  cannot attach subscription "sub_ns" before all its tables are synchronized\n.*DETAIL:  Table "public.notsync" is in state "i"\.\n.*HINT:  Wait until every row of pg_subscription_rel for the subscription has srsubstate = 'r'\./s,
		'not synchronized: error, detail and hint');
	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FROM parallel_apply.stat_subscription WHERE subname = 'sub_ns'"
		),
		'0',
		'refused subscription is not attached');
	$sub->safe_psql('postgres', 'DROP SUBSCRIPTION sub_ns');
	is( $pub->safe_psql(
			'postgres',
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sub_ns'"),
		'0',
		'its slot is gone');
}

# --- attach and detach while the load runs, with a reader checking order
sub wait_progress
{
	my ($label, $min_more, $cap) = @_;
	my $have = $sub->safe_psql('postgres', 'SELECT count(*) FROM seq_log');
	my $target = $have + $min_more;
	$target = $cap if $target > $cap;
	pa_poll($sub, "SELECT count(*) >= $target FROM seq_log",
		't', "$label: subscriber reaches $target rows");
}

{
	my $base = $pub->safe_psql('postgres', 'SELECT count(*) FROM seq_log');
	my $n = 2400;
	my $cap = $base + $n;
	my $checker = pa_checker_bg($sub, 14, $prefix_ok);
	my $seq = pa_seq_load($pub, transactions => $n, rate => 200);
	my $kv = pa_pgbench_bg($pub, '-n', '-c', '2', '-R', '100', '-t', '600',
		'-f', $kv_script);

	wait_progress('attached under load', 200, $cap);
	pa_detach($sub, 'sub');
	wait_progress('detached under load', 200, $cap);
	pa_attach($sub, 'sub');
	wait_progress('re-attached under load', 200, $cap);
	pa_detach($sub, 'sub');
	pa_attach($sub, 'sub');

	pa_bg_finish($seq);
	pa_bg_finish($kv);
	pa_catchup($pub, 'sub');
	pa_bg_finish($checker);
	cmp_ok(PaTest::pa_checker_count($checker),
		'>', 10, 'reader checked seq_log prefix during switches');
	pa_check_seq($pub, $sub);
	pa_check_equal($pub, $sub, 'seq_log', 'kv');
}

# --- enabling the subscription by hand while attached
SKIP:
{
	skip 'PA_NO_ENGINE set', 16 unless pa_engine();

	my $logpos = pa_log_pos($sub);
	my $leader = $sub->safe_psql('postgres',
		"SELECT leader_pid FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
	ok($leader =~ /^\d+$/, "leader pid $leader");

	my $seq = pa_seq_load($pub, transactions => 800, rate => 200);
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub ENABLE');

	pa_poll(
		$sub,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply leader'",
		'0', 'engine leader exits once the subscription is enabled by hand');
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL AND relid IS NULL",
		't', 'built-in apply worker took over');
	pass('engine stepped aside, built-in worker running');

	# The leader says why it stopped, and what hands the subscription back:
	# a plain DISABLE (the attach marker is still there).
	my $log = pa_log_since($sub, $logpos);
	like($log,
		qr/parallel_apply leader for subscription "sub" is stopping: the subscription was enabled, so the built-in apply worker applies it; ALTER SUBSCRIPTION ... DISABLE hands it back to parallel_apply/,
		'leader logged that it steps aside because the subscription was enabled');

	pa_bg_finish($seq);
	pa_catchup($pub, 'sub');
	pa_check_seq($pub, $sub);

	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
	pa_wait_engine($sub, 'sub');
	pass('DISABLE handed the subscription back to the engine');
	load_and_check('handed back by DISABLE', 300);

	# detach must work (or say it is no longer attached), attach again must work
	my ($out, $err);
	my $ret = $sub->psql('postgres', "SELECT parallel_apply.detach('sub')",
		stdout => \$out, stderr => \$err);
	ok($ret == 0 || $err =~ /is not attached to parallel_apply/,
		"detach after stepping aside: ret=$ret $err");
	pa_wait_builtin($sub, 'sub');
	pa_attach($sub, 'sub');
	is( $sub->safe_psql('postgres',
			"SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
		'f',
		'attached again after stepping aside');
	load_and_check('attached after stepping aside', 600);

	# the workers' counts start at attach, as the subscription's does
	is( $sub->safe_psql('postgres', q{
SELECT (SELECT sum(transactions_applied) FROM parallel_apply.stat_workers
        WHERE subname = 'sub' AND worker_type = 'apply') =
       (SELECT transactions_applied FROM parallel_apply.stat_subscription
        WHERE subname = 'sub')}),
		't', 'stat_workers counts since attach, as stat_subscription does');
}

# --- DROP SUBSCRIPTION of an attached subscription
{
	my $seq = pa_seq_load($pub, transactions => 400, rate => 200);
	wait_progress('before drop', 50, 1 << 40);
	$sub->safe_psql('postgres', 'DROP SUBSCRIPTION sub');
	pass('DROP SUBSCRIPTION of an attached subscription succeeded');
	pa_bg_finish($seq);
	is($pub->safe_psql('postgres',
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sub'"),
		'0', 'slot dropped on the publisher');
	SKIP:
	{
		skip 'PA_NO_ENGINE set', 2 unless pa_engine();
		pa_poll(
			$sub,
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')",
			'0', 'engine processes gone after DROP SUBSCRIPTION');
		is( $sub->safe_psql(
				'postgres', 'SELECT count(*) FROM parallel_apply.stat_subscription'),
			'0',
			'stat_subscription empty after DROP SUBSCRIPTION');
		is( $sub->safe_psql(
				'postgres',
				"SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'pg_%'"),
			'0',
			'origin dropped');
	}
	# the launcher keeps running and the server stays healthy
	$sub->restart;
	is($sub->safe_psql('postgres', 'SELECT 1'), '1', 'subscriber restarts fine after the drop');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
