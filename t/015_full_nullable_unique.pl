
# Copyright (c) parallel_apply authors
#
# Differential test: REPLICA IDENTITY FULL tables whose changes claim no key.
#
#   publisher:  t  (a int, b int) REPLICA IDENTITY FULL
#               t0 (a int, b int) REPLICA IDENTITY FULL
#               f  (id int PRIMARY KEY, v int)             -- filler
#   subscriber: t  (a int, b int, UNIQUE (b))   -- no primary key; b nullable
#               t0 (a int, b int)               -- no index at all
#               f  (id int PRIMARY KEY, v int)
#
# On t the tracker's only key is the nullable unique b: a change whose b is
# NULL claims no key (NULLs never conflict), so an UPDATE or DELETE of a
# (k, NULL) row must be a barrier for t (wait for every earlier writer of t),
# or it may run before the INSERT of its row has committed and skip the row
# ("did not find row to be updated/deleted").  On t0 everything is table
# level.  The workload is one-row transactions from one publisher session:
# INSERT of (k, NULL) rows, soon followed by UPDATE t SET a = a + 1000 WHERE
# a = k and DELETE WHERE a = k of the same rows, a few duplicate (k, NULL)
# rows, a few non-NULL b values (given, moved to NULL, freed and reused by
# later rows), and filler updates of f so that dispatch spreads the
# transactions over the workers.  parallel_apply.group_size = 1 and two
# workers: each transaction commits on its own, on whichever worker it is
# given.
#
# Phases: a backlog (the subscription is detached and disabled while the
# publisher runs the workload, then attached: the densest parallelism), the
# same live (attached while the publisher runs it), a second backlog with
# another seed, and forced probes: a session on the subscriber holds a lock
# that stalls a transaction writing a (k, NULL) row (a row lock on it for an
# UPDATE; for an INSERT, a row lock on f, which its transaction updates
# first), and the next publisher transaction updates or deletes that row.
# Once everything is sent and the stalled transaction's apply process waits
# for our lock, no second engine worker may be applying (the dependent
# transaction is queued behind the stalled one): a tracker that misses the
# dependency runs it beside it, where its row is not there yet.
# After each phase: every table equal (ordered md5), no "did not find row"
# line in the subscriber log (log_min_messages = debug1 there), and with the
# engine: no ERROR in the log, serial_retries = 0 (all dependencies here are
# visible to the tracker, so none should be needed), and, in a backlog, more
# than one worker applied transactions.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PaSession;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $txns = $ENV{PA_015_TXNS} || 3000;
my @tables = qw(t t0 f);

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "parallel_apply.group_size = 1\nlog_min_messages = debug1\n");

$pub->safe_psql('postgres', q{
CREATE TABLE t (a int, b int);
ALTER TABLE t REPLICA IDENTITY FULL;
CREATE TABLE t0 (a int, b int);
ALTER TABLE t0 REPLICA IDENTITY FULL;
CREATE TABLE f (id int PRIMARY KEY, v int);
INSERT INTO f SELECT i, 0 FROM generate_series(1, 50) i;
INSERT INTO t VALUES (-1, NULL), (-2, NULL), (-3, -3);
INSERT INTO t0 VALUES (-1, NULL), (-2, NULL), (-3, -3);
});
$sub->safe_psql('postgres', q{
CREATE TABLE t (a int, b int, UNIQUE (b));
CREATE TABLE t0 (a int, b int);
CREATE TABLE f (id int PRIMARY KEY, v int);
});
pa_subscribe($pub, $sub, 'sub', tables => \@tables);
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');

# ---------------------------------------------------------------- workload
# A model of each table (a => [b, ...], undef for NULL) so that every
# generated statement does what it is meant to do on the publisher, non-NULL
# b values stay unique (the publisher does not enforce it, the subscriber's
# UNIQUE (b) does), and freed b values are reused by later rows.
sub new_model
{
	return {
		rows   => { -1 => [undef], -2 => [undef], -3 => [-3] },
		recent => [],
		next_b => 1,
		free_b => []
	};
}
my %model = (t => new_model(), t0 => new_model());
my $next_a = 1;

# an a-value present in the table (and satisfying $pred), preferably one
# touched in the last few transactions of that table
sub pick_a
{
	my ($m, $pred) = @_;
	$pred //= sub { 1 };
	my $ok = sub { exists $m->{rows}{ $_[0] } && $pred->($m->{rows}{ $_[0] }) };
	my @recent = grep { $ok->($_) } @{ $m->{recent} };
	return $recent[ int(rand(@recent)) ] if @recent && rand() < 0.85;
	my @all = grep { $ok->($_) } sort { $a <=> $b } keys %{ $m->{rows} };
	return undef unless @all;
	return $all[ int(rand(@all)) ];
}

sub touch
{
	my ($m, $a) = @_;
	push @{ $m->{recent} }, $a;
	shift @{ $m->{recent} } while @{ $m->{recent} } > 6;
}

sub add_row
{
	my ($m, $a, $b) = @_;
	push @{ $m->{rows}{$a} }, $b;
	touch($m, $a);
}

sub fresh_b
{
	my ($m) = @_;
	# reuse a freed value most of the time: a dependency through the index
	return shift @{ $m->{free_b} } if @{ $m->{free_b} } && rand() < 0.7;
	return $m->{next_b}++;
}

sub free_b
{
	my ($m, $bs) = @_;
	push @{ $m->{free_b} }, grep { defined } @$bs;
}

my $all_null = sub { !grep { defined } @{ $_[0] } };
my $some_b = sub { grep { defined } @{ $_[0] } };
my $single_null = sub { @{ $_[0] } == 1 && !defined $_[0][0] };

# One statement (one transaction) on table $tab
sub gen_one
{
	my ($tab) = @_;
	my $m = $model{$tab};
	my $r = rand();
	my $a;
	if ($r < 0.38)
	{
		$a = $next_a++;
		add_row($m, $a, undef);
		return "INSERT INTO $tab VALUES ($a, NULL);";
	}
	if ($r < 0.40 && defined($a = pick_a($m, $all_null)))
	{
		# a duplicate of a (k, NULL) row: no key tells them apart
		add_row($m, $a, undef);
		return "INSERT INTO $tab VALUES ($a, NULL);";
	}
	if ($r < 0.65 && defined($a = pick_a($m)))
	{
		my $bs = delete $m->{rows}{$a};
		add_row($m, $a + 1000, $_) for @$bs;
		return "UPDATE $tab SET a = a + 1000 WHERE a = $a;";
	}
	if ($r < 0.90 && defined($a = pick_a($m)))
	{
		free_b($m, delete $m->{rows}{$a});
		return "DELETE FROM $tab WHERE a = $a;";
	}
	if ($r < 0.94)
	{
		# a row with a non-NULL b (often a value an earlier row gave up)
		$a = $next_a++;
		my $b = fresh_b($m);
		add_row($m, $a, $b);
		return "INSERT INTO $tab VALUES ($a, $b);";
	}
	if ($r < 0.97 && defined($a = pick_a($m, $single_null)))
	{
		# a (k, NULL) row gets a b
		my $b = fresh_b($m);
		$m->{rows}{$a} = [$b];
		touch($m, $a);
		return "UPDATE $tab SET b = $b WHERE a = $a;";
	}
	if (defined($a = pick_a($m, $some_b)))
	{
		# rows give their b up (the value is freed for a later row)
		free_b($m, $m->{rows}{$a});
		$m->{rows}{$a} = [ map { undef } @{ $m->{rows}{$a} } ];
		touch($m, $a);
		return "UPDATE $tab SET b = NULL WHERE a = $a;";
	}
	$a = $next_a++;
	add_row($m, $a, undef);
	return "INSERT INTO $tab VALUES ($a, NULL);";
}

sub workload
{
	my ($seed, $n) = @_;
	srand($seed);
	my @sql;
	for (1 .. $n)
	{
		my $r = rand();
		if ($r < 0.45) { push @sql, gen_one('t') }
		elsif ($r < 0.70) { push @sql, gen_one('t0') }
		else
		{
			my $id = 1 + int(rand(50));
			push @sql, "UPDATE f SET v = v + 1 WHERE id = $id;";
		}
	}
	return join("\n", @sql) . "\n";
}

sub model_counts
{
	return join('/',
		map { my $m = $model{$_}; my $n = 0; $n += @$_ for values %{ $m->{rows} }; $n } qw(t t0));
}

# ---------------------------------------------------------------- checks
sub engine_stat
{
	my ($col) = @_;
	return $sub->safe_psql('postgres',
		"SELECT $col FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
}

sub check_phase
{
	my ($label, $logpos, $backlog) = @_;
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, @tables);
	is( $pub->safe_psql('postgres',
			'SELECT (SELECT count(*) FROM t) || \'/\' || (SELECT count(*) FROM t0)'),
		model_counts(), "$label: the publisher holds the rows the workload meant");

	my $log = pa_log_since($sub, $logpos);
	my $missing_re = pa_missing_row_re();
	my @missing = $log =~ /^(.*$missing_re.*)$/mg;
	is(scalar @missing, 0, "$label: no \"did not find row\" in the subscriber log")
	  or diag(join("\n", @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));
	pa_check_log_clean($sub, $logpos, "$label: subscriber");

  SKIP:
	{
		skip 'PA_NO_ENGINE set', 4 unless pa_engine();
		my @errors = $log =~ /^(.*(?:ERROR|FATAL):  .*)$/mg;
		is(scalar @errors, 0, "$label: no ERROR or FATAL in the subscriber log")
		  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
		my ($applied, $waits, $retries) =
		  split /\|/, engine_stat('transactions_applied, dependency_waits, serial_retries');
		note "$label: transactions_applied $applied, dependency_waits $waits, serial_retries $retries";
		is($retries, '0', "$label: no serial retry was needed");
		is(engine_stat('state'), 'streaming', "$label: engine streaming");
		my $busy = $sub->safe_psql('postgres',
			"SELECT count(*) FROM parallel_apply.stat_workers WHERE worker_type = 'apply' AND transactions_applied > 0");
		if ($backlog)
		{
			cmp_ok($busy, '>=', 2, "$label: transactions ran on $busy workers");
		}
		else
		{
			pass("$label: $busy workers applied transactions");
		}
	}
	return;
}


sub backlog_phase
{
	my ($label, $seed) = @_;
	my $sql = workload($seed, $txns);
	pa_stop_applying($sub, 'sub');
	my $logpos = pa_log_pos($sub);
	$pub->safe_psql('postgres', $sql);
	pa_resume_applying($sub, 'sub');
	check_phase($label, $logpos, 1);
	return;
}

sub live_phase
{
	my ($label, $seed) = @_;
	my $sql = workload($seed, $txns);
	my $logpos = pa_log_pos($sub);
	$pub->safe_psql('postgres', $sql);
	check_phase($label, $logpos, 0);
	return;
}

# ---------------------------------------------------------------- probes
# Forced: a session on the subscriber holds a lock that stalls the first of
# two publisher transactions on the subscriber; the second one changes the
# same (k, NULL) row and claims no key, so it must wait for the first.  Once
# everything is sent and the first transaction's apply process waits for
# our lock, no second engine worker may be applying: the dependent
# transaction is queued behind the first one (or waits for it in state
# 'waiting'), it does not run beside it.  An engine whose tracker misses
# the dependency runs it on another worker, where it does not find its row
# (and skips it, or waits until the first has committed and looks again).
sub probe
{
	my ($label, $lock_sql, @txns) = @_;
	pa_catchup($pub, 'sub');
	my $locker = session_start($sub);
	session_query($locker, 'BEGIN');
	die "$label: the lock query found no row\n"
	  if session_query($locker, $lock_sql) eq '';
	$pub->safe_psql('postgres', $_) foreach @txns;

	# everything sent, and an apply process waits for a lock: twice in a row
	my $lsn = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my $sent = "SELECT coalesce(bool_and(sent_lsn >= '$lsn'), false) FROM pg_stat_replication WHERE application_name = 'sub'";
	my $waiting = q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE backend_type IN ('parallel_apply worker', 'logical replication worker')
	    AND wait_event_type = 'Lock'};
	my $row = 0;
	pa_wait_until($PostgreSQL::Test::Utils::timeout_default, sub {
		my $ok = $pub->safe_psql('postgres', $sent) eq 't'
		  && $sub->safe_psql('postgres', $waiting) eq 't';
		$row = $ok ? $row + 1 : 0;
		return $row >= 2;
	}) or die "$label: no apply process waits for our lock\n";
  SKIP:
	{
		skip 'PA_NO_ENGINE set', 1 unless pa_engine();
		my $busy = $sub->safe_psql('postgres',
			"SELECT string_agg(worker_id || ':' || state, ' ' ORDER BY worker_id) FROM parallel_apply.stat_workers WHERE worker_type = 'apply' AND state = 'applying'");
		my $n = () = $busy =~ /applying/g;
		is($n, 1, "$label: only the stalled transaction's worker is applying")
		  or diag("applying workers: $busy");
	}
	session_query($locker, 'COMMIT');
	session_quit($locker);
	pa_catchup($pub, 'sub');
	return;
}

sub probe_phase
{
	my $logpos = pa_log_pos($sub);
	foreach my $tab (qw(t t0))
	{
		# an UPDATE of a (k, NULL) row, stalled on our row lock, then a
		# DELETE of the row it made
		$pub->safe_psql('postgres', "INSERT INTO $tab VALUES (900001, NULL)");
		probe("probe $tab: update (k, NULL) then delete it",
			"SELECT a FROM $tab WHERE a = 900001 FOR UPDATE",
			"UPDATE $tab SET a = a + 1000 WHERE a = 900001",
			"DELETE FROM $tab WHERE a = 901001");
		# an INSERT of (k, NULL), stalled on our lock of a row of f (its
		# transaction updates f first), then an UPDATE and a DELETE of it
		probe("probe $tab: insert (k, NULL) then update it",
			'SELECT id FROM f WHERE id = 1 FOR UPDATE',
			"BEGIN; UPDATE f SET v = v + 1 WHERE id = 1; INSERT INTO $tab VALUES (900002, NULL); COMMIT;",
			"UPDATE $tab SET a = a + 1000 WHERE a = 900002");
		probe("probe $tab: insert (k, NULL) then delete it",
			'SELECT id FROM f WHERE id = 1 FOR UPDATE',
			"BEGIN; UPDATE f SET v = v + 1 WHERE id = 1; INSERT INTO $tab VALUES (900003, NULL); COMMIT;",
			"DELETE FROM $tab WHERE a = 900003");
	}
	# the probe rows are gone or moved: keep the model in step
	for my $tab (qw(t t0))
	{
		$model{$tab}{rows}{901002} = [undef];
	}
	check_phase('probes', $logpos, 0);
	return;
}

backlog_phase('backlog 1', 15001);
live_phase('live', 15002);
backlog_phase('backlog 2', 15003);
probe_phase();

note 'rows at the end (t/t0): ' . model_counts() . ', log size ' . (-s $sub->logfile);

$sub->stop;
$pub->stop;
done_testing();
