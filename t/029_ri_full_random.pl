
# Copyright (c) parallel_apply authors
#
# Randomized differential test of REPLICA IDENTITY FULL tables without a
# primary key: rows found through a non-unique index or by a scan, and the
# leader's dependency tracking by row image.  Before, the engine tracked a
# FULL table without a unique index at table level (every UPDATE or DELETE
# waited for every earlier writer of the table) and found its rows by a
# sequential scan; now it keys each change by a hash of the whole row image
# (the old row for UPDATE and DELETE, the new row for INSERT and UPDATE) and
# finds rows through the best usable index, so a wrong hash or a wrong
# comparison shows here as a row changed twice, a copy too many or too few,
# or a row not found.
#
#   r1 (id int, g int, v int)        index on g (non-unique), duplicates
#   r2 (k int, s text, n int)        no index at all
#   r3 (k int, j json, t text)       index on k, duplicates, json compared by
#                                    datum image (jsonb with PA_NO_ENGINE:
#                                    PostgreSQL 15 cannot UPDATE or DELETE
#                                    rows with a json column)
#
# All FULL on the publisher, nothing on the subscriber but those indexes.
# For each seed (at least 3: PA_SEED="s1,s2,s3", or PA_SEED=s for s, s+1,
# s+2; random and printed otherwise; t/run.sh passes PA_SEED on) Perl draws 12 pgbench scripts, each one
# transaction of 1-5 changes: an INSERT first (so no transaction is empty),
# then random INSERTs, exact duplicates of existing rows, UPDATEs and
# DELETEs of one copy (by ctid), of all copies, of the indexed column (to
# and from NULL), no-op UPDATEs (SET v = v) and json spelled with and
# without whitespace, over a key space of 40 values.  3 pgbench clients run
# 250 transactions each (pgbench draws the values, --random-seed = seed;
# deadlocks between them are retried).  Runs alternate backlog (the
# subscription stopped while pgbench runs, then attached: the densest
# parallelism) and live; 4 workers; backlogs alternate
# parallel_apply.group_size 32 (the default: runs of consecutive
# transactions on one worker, WAITs for dependencies on other workers) and
# 1 (every transaction placed on its own: behind its latest dependency, or
# on the least-loaded worker).
#
# After each run: the three tables equal on both sides (ordered md5, so
# duplicate counts included), and with the engine: transactions_applied
# grew by exactly the transactions pgbench committed, serial_retries = 0,
# rows_not_found = 0 in stat_relations (every row an UPDATE or DELETE names
# exists when it is applied in order: a lookup that misses means a
# dependency was not seen), no "concurrent update, retrying" (two workers
# on one row), no ERROR in the log, dependency_waits within bounds
# (reported), and in a group_size 1 backlog more than one worker applied
# transactions (a loose check: the probes below are the precise one).
# Last, with group_size = 1, a forced probe per table: a session on the
# subscriber locks row A; the publisher updates A, then updates another row B, then
# deletes A's new version.  With the engine the worker applying B must have
# updated B (its old version is locked: SELECT ... FOR UPDATE SKIP LOCKED
# skips it) while A's worker waits for our lock, i.e. B does not wait for
# A (it would at table level); the DELETE of A's new row must wait for A
# (rows_not_found stays 0).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PaSession;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $t_start = time;
my $clients = 3;
my $txns = $ENV{PA_029_TXNS} || 250;
my @seeds;
if (defined $ENV{PA_SEED} && $ENV{PA_SEED} =~ /,/)
{
	@seeds = split /,/, $ENV{PA_SEED};
}
elsif (defined $ENV{PA_SEED} && $ENV{PA_SEED} ne '')
{
	@seeds = map { $ENV{PA_SEED} + $_ } 0 .. 2;
}
else
{
	my $base = (time() ^ ($$ << 8)) % 1000000;
	@seeds = map { $base + $_ } 0 .. 2;
}
diag("seeds @seeds (PA_SEED=" . join(',', @seeds) . ' repeats them)');

my @tables = qw(r1 r2 r3);
my $jtype = pa_engine() ? 'json' : 'jsonb';

my $pub = pa_publisher('publisher', conf => "deadlock_timeout = '20ms'\n");
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "deadlock_timeout = '100ms'\n");

my %cols = (r1 => 'id int, g int, v int', r2 => 'k int, s text, n int', r3 => "k int, j $jtype, t text");
foreach my $t (@tables)
{
	$pub->safe_psql('postgres', "CREATE TABLE $t ($cols{$t}); ALTER TABLE $t REPLICA IDENTITY FULL");
	$sub->safe_psql('postgres', "CREATE TABLE $t ($cols{$t})");
}
$sub->safe_psql('postgres', 'CREATE INDEX r1_g ON r1 (g); CREATE INDEX r3_k ON r3 (k)');
$pub->safe_psql('postgres', qq{
INSERT INTO r1 SELECT i % 40 + 1, i % 10, i FROM generate_series(1, 100) i;
INSERT INTO r2 SELECT i % 40 + 1, 's' || (i % 10), i FROM generate_series(1, 60) i;
INSERT INTO r3 SELECT i % 40 + 1, json_build_object('a', i % 10)::$jtype, 't' FROM generate_series(1, 60) i;
});
pa_subscribe($pub, $sub, 'sub', tables => \@tables);
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');
my $logpos0 = pa_log_pos($sub);

# ---------------------------------------------------------------- workload
# One change; A is a key (1..40), B a small value (1..10), C a value.
my %ops = (
	r1 => [
		[ 15, 'INSERT INTO r1 VALUES (:A, :B, :C);' ],
		[ 5,  'INSERT INTO r1 SELECT * FROM r1 WHERE id = :A LIMIT 1;' ],
		[ 12, 'UPDATE r1 SET v = v + 1 WHERE ctid = (SELECT ctid FROM r1 WHERE id = :A LIMIT 1);' ],
		[ 8,  'UPDATE r1 SET g = :B WHERE ctid = (SELECT ctid FROM r1 WHERE id = :A LIMIT 1);' ],
		[ 6,  'UPDATE r1 SET g = CASE WHEN g IS NULL THEN :B END WHERE ctid = (SELECT ctid FROM r1 WHERE id = :A LIMIT 1);' ],
		[ 6,  'UPDATE r1 SET v = v + 1 WHERE id = :A;' ],
		[ 4,  'UPDATE r1 SET v = v WHERE ctid = (SELECT ctid FROM r1 WHERE g = :B LIMIT 1);' ],
		[ 25, 'DELETE FROM r1 WHERE ctid = (SELECT ctid FROM r1 WHERE id = :A LIMIT 1);' ],
		[ 4,  'DELETE FROM r1 WHERE id = :A AND g = :B;' ],
	],
	r2 => [
		[ 12, "INSERT INTO r2 VALUES (:A, 's' || :B, :C);" ],
		[ 4,  'INSERT INTO r2 VALUES (:A, NULL, NULL);' ],
		[ 4,  'INSERT INTO r2 SELECT * FROM r2 WHERE k = :A LIMIT 1;' ],
		[ 12, 'UPDATE r2 SET n = coalesce(n, 0) + 1 WHERE ctid = (SELECT ctid FROM r2 WHERE k = :A LIMIT 1);' ],
		[ 8,  "UPDATE r2 SET s = CASE WHEN s IS NULL THEN 's' || :B END WHERE ctid = (SELECT ctid FROM r2 WHERE k = :A LIMIT 1);" ],
		[ 6,  'UPDATE r2 SET n = :C WHERE k = :A;' ],
		[ 6,  'UPDATE r2 SET k = :B * 4 WHERE ctid = (SELECT ctid FROM r2 WHERE k = :A LIMIT 1);' ],
		[ 28, 'DELETE FROM r2 WHERE ctid = (SELECT ctid FROM r2 WHERE k = :A LIMIT 1);' ],
	],
	r3 => [
		[ 10, "INSERT INTO r3 VALUES (:A, json_build_object('a', :B, 'c', :C)::$jtype, 't');" ],
		[ 6,  "INSERT INTO r3 VALUES (:A, ('{\"a\":' || :B || '}')::$jtype, 'w');" ],
		[ 5,  'INSERT INTO r3 SELECT * FROM r3 WHERE k = :A LIMIT 1;' ],
		[ 10, "UPDATE r3 SET j = json_build_object('a', :B, 'u', :C)::$jtype WHERE ctid = (SELECT ctid FROM r3 WHERE k = :A LIMIT 1);" ],
		[ 8,  "UPDATE r3 SET t = 't' || :C WHERE ctid = (SELECT ctid FROM r3 WHERE k = :A LIMIT 1);" ],
		[ 6,  'UPDATE r3 SET k = :B * 4 WHERE ctid = (SELECT ctid FROM r3 WHERE k = :A LIMIT 1);' ],
		[ 4,  'UPDATE r3 SET j = NULL WHERE ctid = (SELECT ctid FROM r3 WHERE k = :A LIMIT 1);' ],
		[ 25, 'DELETE FROM r3 WHERE ctid = (SELECT ctid FROM r3 WHERE k = :A LIMIT 1);' ],
		[ 4,  "DELETE FROM r3 WHERE k = :A AND t = 'w';" ],
	],
);

sub pick_weighted
{
	my ($list) = @_;
	my $total = 0;
	$total += $_->[0] foreach @$list;
	my $r = rand($total);
	foreach my $e (@$list)
	{
		return $e->[1] if ($r -= $e->[0]) < 0;
	}
	return $list->[-1][1];
}

# 12 scripts for a seed, each one transaction of 1-5 changes, an INSERT first
sub scripts_for
{
	my ($seed) = @_;
	srand($seed);
	my @files;
	for my $s (1 .. 12)
	{
		my $n = 1 + int(rand(5));
		my ($vars, $body) = ('', '');
		for my $i (1 .. $n)
		{
			my $t = $tables[ int(rand(@tables)) ];
			my $sql = $i == 1 ? $ops{$t}[0][1] : pick_weighted($ops{$t});
			$vars .= "\\set a$i random(1, 40)\n\\set b$i random(1, 10)\n\\set c$i random(1, 1000)\n";
			$sql =~ s/:A\b/:a$i/g;
			$sql =~ s/:B\b/:b$i/g;
			$sql =~ s/:C\b/:c$i/g;
			$body .= "$sql\n";
		}
		my $file = $pub->basedir . "/r_${seed}_$s.sql";
		unlink $file;
		append_to_file($file, "$vars" . "BEGIN;\n$body" . "END;\n");
		push @files, $file;
	}
	return @files;
}

# ---------------------------------------------------------------- checks
sub stat_sub
{
	return (0, 0, 0) unless pa_engine();
	return split /\|/, pa_stat($sub, 'sub', 'transactions_applied, dependency_waits, serial_retries');
}

# worker_id => transactions_applied of the apply workers
sub worker_counts
{
	return () unless pa_engine();
	return map { split /\|/ } split /\n/, $sub->safe_psql('postgres',
		q{SELECT worker_id, transactions_applied FROM parallel_apply.stat_workers WHERE worker_type = 'apply'});
}

sub not_found
{
	return $sub->safe_psql('postgres',
		q{SELECT coalesce(string_agg(relid::text || ':' || rows_not_found, ' ' ORDER BY relid::text), '') FROM parallel_apply.stat_relations WHERE subname = 'sub' AND rows_not_found <> 0});
}

# parallel_apply.group_size for the next start of the engine (the
# postmaster has it once a new session shows it)
sub set_group_size
{
	my ($gs) = @_;
	return unless pa_engine();
	$sub->safe_psql('postgres', "ALTER SYSTEM SET parallel_apply.group_size = $gs");
	$sub->safe_psql('postgres', 'SELECT pg_reload_conf()');
	pa_poll($sub, 'SHOW parallel_apply.group_size', $gs, "group_size $gs reloaded");
	return;
}

sub run
{
	my ($label, $seed, $backlog, $gs) = @_;
	my @files = scripts_for($seed);
	note "$label: script $_:\n" . slurp_file($files[$_]) foreach 0 .. 1;
	my @args = ('-n', '-c', $clients, '-j', $clients, '-t', $txns,
		"--random-seed=$seed", '--max-tries=100', map { ('-f', $_) } @files);

	my %before = worker_counts();
	pa_stop_applying($sub, 'sub') if $backlog;
	set_group_size($gs) if $backlog;
	my $logpos = pa_log_pos($sub);
	my ($applied0, $waits0, $retries0) = $backlog ? (0, 0, 0) : stat_sub();
	my $bench = pa_pgbench_bg($pub, @args);
	my ($ok, $out) = pa_bg_finish($bench);
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	$processed //= -1;
	pa_resume_applying($sub, 'sub') if $backlog;
	pa_catchup($pub, 'sub');

	my $counts = join('/', map { $pub->safe_psql('postgres', "SELECT count(*) FROM $_") } @tables);
	note "$label: pgbench committed $processed transactions; rows r1/r2/r3 now $counts";
	pa_check_equal($pub, $sub, @tables);

  SKIP:
	{
		skip 'PA_NO_ENGINE set: engine counters', 5 unless pa_engine();
		my ($applied, $waits, $retries) = stat_sub();
		# per worker, what it applied in this run (stat_workers counts
		# may or may not start afresh at attach: take whichever fits)
		my %after = worker_counts();
		my ($sa, $sb) = (0, 0);
		$sa += $_ foreach values %after;
		$sb += $before{$_} // 0 foreach keys %after;
		my $cumulative = $sa - $sb == $applied - $applied0;
		my $busy = join('/', map { $after{$_} - ($cumulative ? $before{$_} // 0 : 0) } sort { $a <=> $b } keys %after);
		note "$label: transactions_applied $applied0 -> $applied, dependency_waits $waits0 -> $waits, serial_retries $retries0 -> $retries, per worker $busy";
		note "$label: stat_relations:\n" . pa_rel_stats_all($sub, 'sub');
		is($applied - $applied0, $processed, "$label: transactions_applied grew by the $processed committed transactions");
		ok($waits >= $waits0 && $waits - $waits0 <= 20 * $processed,
			"$label: dependency_waits sane (" . ($waits - $waits0) . " for $processed transactions)");
		is($retries - $retries0, 0, "$label: no serial retry");
		is(not_found(), '', "$label: every row an UPDATE or DELETE named was found (rows_not_found = 0)");
		# with group_size 1 a backlog spreads over the workers unless
		# every transaction depends on the one before (runs of 32 may
		# legitimately gather on one or two workers)
		if ($backlog && $gs == 1)
		{
			my $n = grep { $_ > 0 } split m{/}, $busy;
			cmp_ok($n, '>=', 2, "$label: not serial: $n workers applied transactions ($busy)");
		}
		my @retry = grep { $_->{msg} =~ /^(?:concurrent (?:update|delete), retrying|tuple to be locked was already moved)/ }
		  pa_log_messages($sub, $logpos);
		is(scalar @retry, 0,
			"$label: no worker found its row being changed by another (\"concurrent update, retrying\")");
		my @errors = grep { $_->{level} eq 'ERROR' } pa_log_messages($sub, $logpos);
		is(scalar @errors, 0, "$label: no ERROR in the subscriber log")
		  or diag(join("\n", map { $_->{text} } @errors[ 0 .. ($#errors < 4 ? $#errors : 4) ]));
	}
	return;
}

my $i = 0;
foreach my $seed (@seeds)
{
	my $backlog = $i % 2 == 0;
	my $gs = $i % 4 == 0 ? 32 : 1;
	run('run ' . ($i + 1) . ($backlog ? " (backlog, group_size $gs" : ' (live')
		  . ", seed $seed)", $seed, $backlog, $gs);
	$i++;
}

# ---------------------------------------------------------------- probes
# Row A locked on the subscriber; the publisher updates A, updates another
# row B of the same table, deletes A's new version.  B must not wait for A.
sub probe
{
	my ($t, $key, $insert_a, $insert_b, $upd) = @_;
	$pub->safe_psql('postgres', "$insert_a; $insert_b");
	pa_catchup($pub, 'sub');
	my $locker = session_start($sub);
	session_query($locker, 'BEGIN');
	die "probe $t: lock query found no row\n"
	  if session_query($locker, "SELECT 1 FROM $t WHERE $key = 90001 FOR UPDATE") eq '';
	$pub->safe_psql('postgres', "UPDATE $t SET $upd WHERE $key = 90001");
	$pub->safe_psql('postgres', "UPDATE $t SET $upd WHERE $key = 90002");
	$pub->safe_psql('postgres', "DELETE FROM $t WHERE $key = 90001");
	# B's old version is locked by an uncommitted update, and an engine
	# worker (A's) waits for a lock
	my $locked_b = qq{SELECT (SELECT count(*) FROM (SELECT 1 FROM $t WHERE $key = 90002 FOR UPDATE SKIP LOCKED) s) = 0
		  AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel_apply worker' AND wait_event_type = 'Lock') > 0};
	$sub->safe_psql('postgres', $locked_b);    # valid SQL in either mode
  SKIP:
	{
		skip 'PA_NO_ENGINE set: the built-in worker applies one transaction at a time', 1
		  unless pa_engine();
		ok(pa_poll_for($sub, $locked_b, 't', 30),
			"probe $t: the update of row B is applied while row A's transaction waits for our lock")
		  or pa_diag($sub);
	}
	session_query($locker, 'COMMIT');
	session_quit($locker);
	pa_catchup($pub, 'sub');
	return;
}

# group_size = 1, so that row B's transaction, independent of A's, is not
# simply queued behind it as the next of a group
pa_stop_applying($sub, 'sub');
set_group_size(1);
pa_resume_applying($sub, 'sub');
# group_size = 1, so that row B's transaction, independent of A's, is not
# simply queued behind it as the next of a group
pa_stop_applying($sub, 'sub');
set_group_size(1);
pa_resume_applying($sub, 'sub');
probe('r1', 'id', 'INSERT INTO r1 VALUES (90001, 9001, 0)', 'INSERT INTO r1 VALUES (90002, 9002, 0)',
	'v = v + 1');
probe('r2', 'k', q{INSERT INTO r2 VALUES (90001, 'a', 0)}, q{INSERT INTO r2 VALUES (90002, 'b', 0)},
	'n = n + 1');
probe('r3', 'k', qq{INSERT INTO r3 VALUES (90001, '{"p": 1}'::$jtype, 'a')},
	qq{INSERT INTO r3 VALUES (90002, '{"p": 2}'::$jtype, 'b')}, qq{j = '{"p": 3}'::$jtype});
pa_check_equal($pub, $sub, @tables);
SKIP:
{
	skip 'PA_NO_ENGINE set: engine counters', 3 unless pa_engine();
	is(not_found(), '', 'probes: the DELETE of row A\'s new version waited for A (rows_not_found = 0)');
	is(pa_stat($sub, 'sub', 'serial_retries'), '0', 'probes: no serial retry');
	is(pa_stat($sub, 'sub', 'state'), 'streaming', 'engine streaming at the end');
}
my @errors = grep { $_->{level} eq 'ERROR' } pa_log_messages($sub, $logpos0);
is(scalar @errors, 0, 'no ERROR in the subscriber log since the first attach')
  or diag(join("\n", map { $_->{text} } @errors[ 0 .. ($#errors < 4 ? $#errors : 4) ]));
pa_check_log_clean($sub, $logpos0);
note 'elapsed ' . (time - $t_start) . ' s';

$sub->stop;
$pub->stop;
done_testing();
