
# Copyright (c) parallel_apply authors
#
# Commit order as readers on the subscriber see it.
#
# pgbench -i on the publisher, empty pgbench tables on the subscriber
# (filled by the subscription's initial copy), plus seq_log: one publisher
# client inserts n = 1, 2, 3, ... one row per transaction, so the publisher
# commits them in that order while eight tpcb-like clients commit
# transactions on the pgbench tables.
#
# A reader on the subscriber evaluates, each time in a single statement (one
# snapshot), while the engine applies with 4 workers:
#   - sum(abalance) = sum(bbalance) = sum(tbalance) = sum(history.delta)
#     (every tpcb-like transaction is visible whole or not at all);
#   - count(seq_log) = max(seq_log.n) (seq_log is a prefix 1..k: a later
#     transaction never becomes visible before an earlier one, although the
#     seq_log transactions have no key in common and run on any worker).
# A failed check is a state the publisher never had.
#
# Phase A: a backlog of ~20000 tpcb-like transactions is committed while the
# subscriber is down; the reader checks all along the catch-up.
# Phase B: the same load runs live while the reader checks.
# Each phase ends with both sides equal.
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

my $backlog_txns = $ENV{PA_ORDER_TXNS} || 20000;
my @tables =
  qw(pgbench_accounts pgbench_branches pgbench_tellers pgbench_history seq_log);

# ---------------------------------------------------------------- nodes
my $pub = pa_publisher('publisher');
# one transaction per local commit: every intermediate state is visible,
# and consecutive transactions are spread over the workers
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\n");

pa_pgbench_init($pub, $sub);
pa_subscribe($pub, $sub, 'sub');
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');

my $reader_sql = q{SELECT
  ((SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)
   AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers)
   AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history))::text
  || ' ' || (SELECT (count(*) = coalesce(max(n), 0))::text || ' ' || count(*) FROM seq_log)
  || ' ' || (SELECT count(*) FROM pgbench_history)};

my $history_count = q{SELECT count(*) FROM pgbench_history};

# Check on the subscriber, again and again, until the background loads
# ($bench, $seqload; undef when already finished) are done and the subscriber
# has caught up with the publisher.  Returns the counts of checks, failed
# checks, checks that saw a state between $base_history and the final
# history count, and distinct states seen.
sub read_until_caught_up
{
	my ($label, $bench, $seqload, $base_history) = @_;
	my $reader = session_start($sub);
	my %r = (checks => 0, tpcb_bad => 0, order_bad => 0, in_progress => 0);
	my %states;
	my $target;
	my $deadline = time + 3 * $PostgreSQL::Test::Utils::timeout_default;
	my $final_history;
	while (1)
	{
		my ($tpcb_ok, $order_ok, $seq_count, $hist) =
		  split / /, session_query($reader, $reader_sql);
		$r{checks}++;
		if ($tpcb_ok ne 'true')
		{
			$r{tpcb_bad}++;
			diag "$label: check $r{checks}: TPC-B sums disagree (history rows $hist)"
			  if $r{tpcb_bad} <= 3;
		}
		if ($order_ok ne 'true')
		{
			$r{order_bad}++;
			diag "$label: check $r{checks}: seq_log is not a prefix 1..k ($seq_count rows)"
			  if $r{order_bad} <= 3;
		}
		$states{"$hist/$seq_count"} = 1;
		$r{in_progress}++
		  if $hist > $base_history
		  && (!defined $final_history || $hist < $final_history);
		next if $r{checks} % 10;

		if (!defined $target)
		{
			# (pa_bg_running must not be asked again once it said no)
			$bench = undef if $bench && !pa_bg_running($bench);
			$seqload = undef if $seqload && !pa_bg_running($seqload);
			next if $bench || $seqload;
			$target = $pub->lsn('insert');
			$final_history = $pub->safe_psql('postgres', $history_count);
		}
		last if pa_replayed($pub, 'sub', $target);
		die "$label: subscriber did not catch up" if time > $deadline;
	}
	session_quit($reader);
	$r{states} = scalar keys %states;
	$r{final_history} = $final_history;
	return \%r;
}

# ---------------------------------------------------------------- phase A
# backlog committed while the subscriber is down
my $base_history = $pub->safe_psql('postgres', $history_count);
$sub->stop;
my $clients = 8;
my $per_client = int($backlog_txns / $clients);
my $seq = pa_seq_load($pub, transactions => 4000);
my $bench = pa_pgbench_bg($pub, '-n', '-b', 'tpcb-like', '-c', $clients,
	'-j', '2', '-t', $per_client);
pa_bg_finish($bench);
pa_bg_finish($seq);
$sub->start;

my $r = read_until_caught_up('phase A (backlog)', undef, undef, $base_history);
note "phase A: $r->{checks} checks, $r->{in_progress} during the catch-up, "
  . "$r->{states} distinct states";
is($r->{tpcb_bad}, 0,
	"phase A: TPC-B sums agreed in all $r->{checks} snapshots on the subscriber");
is($r->{order_bad}, 0,
	"phase A: seq_log was a prefix 1..k in all $r->{checks} snapshots");
cmp_ok($r->{in_progress}, '>=', 50,
	"phase A: the reader checked in the middle of the catch-up ($r->{in_progress} times)"
);
cmp_ok($r->{states}, '>=', 20,
	"phase A: the reader saw many different states ($r->{states})");
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, @tables);
pa_check_seq($pub, $sub);

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	my ($applied, $waits) = split /\|/,
	  $sub->safe_psql('postgres',
		"SELECT transactions_applied, dependency_waits FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	  );
	note "phase A: transactions_applied $applied, dependency_waits $waits";
	cmp_ok($applied, '>=', $per_client * $clients,
		'phase A: the engine applied the backlog');
	my $busy = $sub->safe_psql('postgres',
		"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply' AND transactions_applied > 0"
	);
	cmp_ok($busy, '>=', 2, "phase A: several workers applied ($busy)");
}

# ---------------------------------------------------------------- phase B
# the same load, live
$base_history = $pub->safe_psql('postgres', $history_count);
$seq = pa_seq_load($pub, transactions => 2000, rate => 400);
$bench = pa_pgbench_bg($pub, '-n', '-b', 'tpcb-like', '-c', $clients, '-j',
	'2', '-t', int($per_client / 2));
$r = read_until_caught_up('phase B (live)', $bench, $seq, $base_history);
pa_bg_finish($bench);
pa_bg_finish($seq);
note "phase B: $r->{checks} checks, $r->{in_progress} while applying, "
  . "$r->{states} distinct states";
is($r->{tpcb_bad}, 0,
	"phase B: TPC-B sums agreed in all $r->{checks} snapshots on the subscriber");
is($r->{order_bad}, 0,
	"phase B: seq_log was a prefix 1..k in all $r->{checks} snapshots");
cmp_ok($r->{in_progress}, '>=', 50,
	"phase B: the reader checked while the load was applied ($r->{in_progress} times)"
);
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, @tables);
pa_check_seq($pub, $sub);

$sub->stop;
$pub->stop;
done_testing();
