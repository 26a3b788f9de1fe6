
# Copyright (c) parallel_apply authors
#
# Randomized differential test.
#
# Three tables with a key space of at most 100 keys each, so that dependencies
# between transactions are dense:
#   a (id int PRIMARY KEY, u int NOT NULL UNIQUE, v text)
#   b (id int PRIMARY KEY, u text NOT NULL UNIQUE, v int)
#   c (id int PRIMARY KEY, v int NOT NULL)           -- sum(v) is always 0
# Eight concurrent pgbench clients run a bounded number of transactions made of
# random INSERT ... ON CONFLICT DO NOTHING / UPDATE / DELETE, primary-key
# changes (UPDATE a SET id = y WHERE id = x), swaps of the unique column u
# between two rows inside one transaction (through negative temporary values),
# fresh values for u (which frees the old value: a dependency the tracker
# cannot see, so the engine must fall back to serial re-apply when it bites),
# SAVEPOINT / ROLLBACK TO SAVEPOINT / RELEASE, whole-transaction ROLLBACKs and
# transfers between rows of c.  Four runs with different seeds, alternately
# live (the subscriber follows the load) and backlog (the load is committed
# while the subscriber is down, then applied at full speed).
#
# While the subscriber applies, a reader on it checks in every snapshot that
#   - sum(c.v) = 0 (atomicity: each transfer is one transaction), and
#   - no row of a has a negative u (a negative u exists only inside a swap
#     transaction; seeing one means a partial transaction became visible).
# After each run the subscriber must equal the publisher (ordered md5 per
# table), the engine must have applied transactions and, in a backlog with
# keys this dense, workers must have waited for each other
# (dependency_waits > 0).
#
# The workload never raises an error on the publisher except deadlocks, which
# pgbench (--max-tries) retries: creators of an id (INSERT, primary-key
# change) take a transaction advisory lock on (table, id) first, a key change
# checks with NOT EXISTS under that lock, unique values of u are only created
# by INSERT ... ON CONFLICT DO NOTHING, swaps and a sequence.
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
my $txns_per_client = $ENV{PA_RANDOM_TXNS} || 1000;
my @seeds = split /,/, ($ENV{PA_RANDOM_SEEDS} || '101,202,303,404');
my @tables = qw(a b c);

sub stat_row
{
	my ($node) = @_;
	return (0, 0, 0) unless pa_engine();
	my $r = $node->safe_psql('postgres',
		"SELECT transactions_applied, dependency_waits, serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	);
	return split /\|/, $r;
}

sub write_script
{
	my ($node, $name, $body) = @_;
	my $file = $node->basedir . "/$name.sql";
	PostgreSQL::Test::Utils::append_to_file($file, $body);
	return $file;
}

# ---------------------------------------------------------------- nodes
my $pub = pa_publisher('publisher', conf => "deadlock_timeout = '20ms'\n");
# the smallest queue memory (128kB): the leader also waits for it while
# workers wait for each other's commits
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "deadlock_timeout = '100ms'\nparallel_apply.queue_memory = 128kB\n");

my $schema = q{
CREATE TABLE a (id int PRIMARY KEY, u int NOT NULL UNIQUE, v text);
CREATE TABLE b (id int PRIMARY KEY, u text NOT NULL UNIQUE, v int);
CREATE TABLE c (id int PRIMARY KEY, v int NOT NULL);
};
pa_both($pub, $sub, $schema);
$pub->safe_psql('postgres', q{
CREATE SEQUENCE useq START 100000;
INSERT INTO a SELECT i, i, md5(i::text) FROM generate_series(1, 60) i;
INSERT INTO b SELECT i, 'k' || i, i FROM generate_series(1, 60) i;
INSERT INTO c SELECT i, 0 FROM generate_series(1, 100) i;
});

pa_subscribe($pub, $sub, 'sub', tables => \@tables);
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');

# ---------------------------------------------------------------- workload
# Every script is one transaction.  \set values are drawn once per
# transaction (and reused when pgbench retries it after a deadlock).
my @scripts;

# inserts, updates, deletes over a and b
push @scripts, write_script($pub, 'mix', q{
\set x random(1, 100)
\set y random(1, 100)
\set z random(1, 100)
\set u random(1, 200)
BEGIN;
SELECT pg_advisory_xact_lock(1, :x);
INSERT INTO a VALUES (:x, :u, md5(random()::text)) ON CONFLICT DO NOTHING;
UPDATE a SET v = md5(coalesce(v, '') || :y) WHERE id = :y;
DELETE FROM a WHERE id = :z AND :z % 3 = 0;
SELECT pg_advisory_xact_lock(2, :y);
INSERT INTO b VALUES (:y, 'k' || :u, :x) ON CONFLICT DO NOTHING;
UPDATE b SET v = coalesce(v, 0) + :x WHERE id = :x;
DELETE FROM b WHERE id = :z AND :z % 2 = 0;
END;
}) . '@30';

# primary-key changes (the old key is sent, the new row claims the new key)
push @scripts, write_script($pub, 'move', q{
\set x random(1, 100)
\set y random(1, 100)
BEGIN;
SELECT pg_advisory_xact_lock(1, :y);
UPDATE a SET id = :y WHERE id = :x AND NOT EXISTS (SELECT 1 FROM a WHERE id = :y);
SELECT pg_advisory_xact_lock(2, :x);
UPDATE b SET id = :x, v = coalesce(v, 0) + 1 WHERE id = :y AND NOT EXISTS (SELECT 1 FROM b WHERE id = :x);
END;
}) . '@15';

# swap u between two rows of a through negative temporaries (the second
# statement touches only the rows the first one negated: a row created
# concurrently in between is left alone); give a row of b
# (and sometimes of a) a fresh u, which frees its old value for later inserts
push @scripts, write_script($pub, 'swap', q{
\set x random(1, 100)
\set y random(1, 100)
\set r random(1, 4)
BEGIN;
UPDATE a SET u = -u WHERE id IN (:x, :y);
UPDATE a SET u = CASE WHEN id = :x THEN coalesce((SELECT -u FROM a WHERE id = :y AND u < 0), -u) ELSE coalesce((SELECT -u FROM a WHERE id = :x AND u < 0), -u) END WHERE id IN (:x, :y) AND u < 0;
UPDATE b SET u = 'n' || nextval('useq') WHERE id = :y AND :r = 1;
UPDATE a SET u = nextval('useq') WHERE id = :x AND :r = 2;
END;
}) . '@20';

# savepoints: work rolled back to a savepoint, released savepoints
push @scripts, write_script($pub, 'savepoint', q{
\set x random(1, 100)
\set y random(1, 100)
\set z random(1, 100)
\set u random(1, 200)
BEGIN;
UPDATE a SET v = 'sp-' || :x WHERE id = :x;
SAVEPOINT s1;
SELECT pg_advisory_xact_lock(1, :y);
INSERT INTO a VALUES (:y, :u, 'rolled back') ON CONFLICT DO NOTHING;
DELETE FROM a WHERE id = :z;
UPDATE b SET v = -1 WHERE id = :z;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
DELETE FROM b WHERE id = :z;
SELECT pg_advisory_xact_lock(2, :y);
INSERT INTO b VALUES (:y, 'k' || :u, :z) ON CONFLICT DO NOTHING;
RELEASE SAVEPOINT s2;
SAVEPOINT s3;
UPDATE a SET u = -u WHERE id = :y;
UPDATE a SET u = -u WHERE id = :y AND u < 0;
SAVEPOINT s4;
UPDATE c SET v = v + 1000 WHERE id = :x;
ROLLBACK TO SAVEPOINT s4;
RELEASE SAVEPOINT s3;
END;
}) . '@15';

# whole transactions rolled back
push @scripts, write_script($pub, 'rollback', q{
\set x random(1, 100)
\set y random(1, 100)
\set u random(1, 200)
BEGIN;
INSERT INTO a VALUES (:x, :u, 'never') ON CONFLICT DO NOTHING;
UPDATE a SET v = 'never' WHERE id = :y;
DELETE FROM b WHERE id = :x;
UPDATE c SET v = v + 7 WHERE id = :y;
ROLLBACK;
}) . '@5';

# transfers between rows of c (both rows locked first: sum(v) stays 0)
push @scripts, write_script($pub, 'transfer', q{
\set x random(1, 100)
\set y random(1, 100)
\set amount random(1, 50)
BEGIN;
SELECT count(*) AS cn FROM (SELECT 1 FROM c WHERE id IN (:x, :y) ORDER BY id FOR UPDATE) s \gset
\if :cn = 2
UPDATE c SET v = v - :amount WHERE id = :x;
UPDATE c SET v = v + :amount WHERE id = :y;
\endif
END;
}) . '@20';

# rows of c come and go (only rows with v = 0) and change keys
push @scripts, write_script($pub, 'crows', q{
\set x random(1, 100)
\set y random(1, 100)
\set z random(1, 100)
BEGIN;
SELECT pg_advisory_xact_lock(3, :x);
INSERT INTO c VALUES (:x, 0) ON CONFLICT DO NOTHING;
DELETE FROM c WHERE id = :y AND v = 0;
SELECT pg_advisory_xact_lock(3, :z);
UPDATE c SET id = :z WHERE id = :y AND NOT EXISTS (SELECT 1 FROM c WHERE id = :z);
END;
}) . '@10';

my $reader_ok = q{(SELECT coalesce(sum(v), 0) = 0 FROM c) AND NOT EXISTS (SELECT 1 FROM a WHERE u < 0)};
my $reader_sql = "SELECT ($reader_ok)::text || ' ' || (SELECT md5(coalesce(string_agg(id || ':' || v, ',' ORDER BY id), '')) FROM c)";

my ($total_waits, $total_retries) = (0, 0);

# One run: start pgbench (or take it already finished when $backlog), read on
# the subscriber until it has caught up, then compare.
sub run
{
	my ($label, $seed, $backlog) = @_;

	my @args = (
		'-n', '-c', $clients, '-j', '2', '-t', $txns_per_client,
		"--random-seed=$seed", '--max-tries=100',
		map { ('-f', $_) } @scripts);

	if ($backlog)
	{
		$sub->stop;
		my $b = pa_pgbench_bg($pub, @args);
		pa_bg_finish($b);
		$sub->start;
	}
	# after the restart of a backlog run the counters start from zero (the
	# engine may already be applying when we would read them)
	my ($applied0, $waits0, $retries0) =
	  $backlog ? (0, 0, 0) : stat_row($sub);
	my $bench = $backlog ? undef : pa_pgbench_bg($pub, @args);

	my $reader = session_start($sub);
	my ($checks, $changes, $violations) = (0, 0, 0);
	my $prev = '';
	my $target;
	my $deadline = time + 3 * $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		my ($ok, $state) = split / /, session_query($reader, $reader_sql);
		$checks++;
		if ($ok ne 'true')
		{
			$violations++;
			diag "$label: reader saw a state the publisher never had (check $checks)"
			  if $violations <= 3;
		}
		$changes++ if $prev ne '' && $state ne $prev;
		$prev = $state;
		next if $checks % 10;

		if (!defined $target)
		{
			next if $bench && pa_bg_running($bench);
			$target = $pub->lsn('insert');
		}
		last if pa_replayed($pub, 'sub', $target);
		die "$label: subscriber did not catch up" if time > $deadline;
	}
	session_quit($reader);
	if ($bench)
	{
		my ($ok, $out) = pa_bg_finish($bench);
		like($out, qr/number of transactions actually processed: \d+/,
			"$label: pgbench ran");
	}
	pa_catchup($pub, 'sub');

	is($violations, 0,
		"$label: reader saw sum(c.v) = 0 and no negative u in all $checks snapshots"
	);
	cmp_ok($changes, '>', 0,
		"$label: reader overlapped the apply ($changes state changes seen)");
	note "$label: $checks reader checks, $changes changes of c seen";

	pa_check_equal($pub, $sub, @tables);

	is($pub->safe_psql('postgres', 'SELECT count(*) FROM a WHERE u < 0'),
		'0', "$label: the workload left no negative u on the publisher");
	my $counts = $pub->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM a) || \'/\' || (SELECT count(*) FROM b) || \'/\' || (SELECT count(*) FROM c)'
	);
	note "$label: publisher rows a/b/c = $counts";

  SKIP:
	{
		skip 'PA_NO_ENGINE set', ($backlog ? 2 : 1) unless pa_engine();
		my ($applied, $waits, $retries) = stat_row($sub);
		note "$label: transactions_applied $applied0 -> $applied, "
		  . "dependency_waits $waits0 -> $waits, serial_retries $retries0 -> $retries";
		cmp_ok($applied - $applied0, '>=', $clients * $txns_per_client / 2,
			"$label: transactions_applied increased by at least half the committed transactions"
		);
		# a live run may keep up without ever waiting; a backlog must wait
		cmp_ok($waits - $waits0, '>', 0,
			"$label: workers waited for each other (dependency_waits)")
		  if $backlog;
		$total_waits += $waits - $waits0;
		$total_retries += $retries - $retries0;
	}
	return;
}

# Live runs (the subscriber follows the load) alternate with backlog runs
# (the load is committed while the subscriber is down, then applied at full
# speed: that is where workers have to wait for each other).
for my $i (0 .. $#seeds)
{
	my $backlog = $i % 2;
	run('run ' . ($i + 1) . ($backlog ? ' (backlog' : ' (live') . ", seed $seeds[$i])",
		$seeds[$i], $backlog);
}

note "total dependency_waits $total_waits, serial_retries $total_retries";

SKIP:
{
	skip 'PA_NO_ENGINE set', 2 unless pa_engine();
	cmp_ok($total_waits, '>', 0, "dependency waits over all runs: $total_waits");
	is( $sub->safe_psql('postgres',
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
		'streaming',
		'engine still streaming at the end');
}

$sub->stop;
$pub->stop;
done_testing();
