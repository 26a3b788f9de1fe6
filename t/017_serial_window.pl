
# Copyright (c) parallel_apply authors
#
# The serial re-apply window reaches the transaction that failed, even when
# that transaction was given to its worker before its COMMIT was read
# (review F9).  A transaction larger than the leader's 64 kB buffer is sent
# on as it arrives; if its worker fails early, the leader has received only
# part of it.  Before the fix the window ended at the last position received,
# which is before that transaction's finish LSN: the restart applied the
# earlier transactions serially but dispatched the failed one in parallel
# again, where the same hidden dependency failed it again, round after round.
#
# The hidden dependency: the subscriber has an exclusion constraint on t.u
# (u WITH =) that the publisher does not have.  T1 deletes the row holding
# u = 5 (a DELETE sends only the replica identity key), T2 inserts another
# row with u = 5 and then 20 MB into another table.  A session on the
# subscriber holds a row lock that T1 needs, so T1's worker stalls while
# T2's worker inserts u = 5 and fails with an exclusion violation.  The
# restart must apply T1 and T2 serially: its log names a window that ends at
# or after T2's finish LSN, T2 waits behind T1 instead of failing again, and
# once the lock is released both arrive, after exactly one failure.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

if (!pa_engine())
{
	plan skip_all => 'checks the engine serial retry';
}

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "parallel_apply.group_size = 1\n");

pa_both($pub, $sub, q{
CREATE TABLE t (id int PRIMARY KEY, u int);
CREATE TABLE lockme (id int PRIMARY KEY, v int);
CREATE TABLE filler (id int PRIMARY KEY, pad text);
});
$pub->safe_psql('postgres', q{
INSERT INTO t VALUES (1, 5);
INSERT INTO lockme VALUES (1, 0);
});
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');
# An exclusion constraint, not a unique index: the engine's conflict check,
# which makes a worker that finds a unique key taken wait for the earlier
# transactions (src/conflict.c), covers unique indexes only, as PostgreSQL
# 18's does, so this one still fails the parallel attempt.
$sub->safe_psql('postgres',
	'ALTER TABLE t ADD CONSTRAINT t_u EXCLUDE USING btree (u WITH =)');
pa_check_equal($pub, $sub, 't', 'lockme');

# the row lock that stalls T1 on the subscriber
my $locker = $sub->background_psql('postgres', on_error_stop => 1);
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT * FROM lockme WHERE id = 1 FOR UPDATE');

my $pos = pa_log_pos($sub);

# T1, then T2 (larger than the leader's buffer and than queue memory)
$pub->safe_psql('postgres', q{
BEGIN;
UPDATE lockme SET v = v + 1 WHERE id = 1;
DELETE FROM t WHERE id = 1;
COMMIT;
});
my $t2 = $pub->background_psql('postgres', on_error_stop => 1);
$t2->query_safe('BEGIN');
$t2->query_safe('INSERT INTO t VALUES (2, 5)');
$t2->query_safe(
	"INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g");
my $before_commit = $t2->query_safe('SELECT pg_current_wal_lsn()');
chomp $before_commit;
$t2->query_safe('COMMIT');
$t2->quit;

# T2's worker fails on the hidden exclusion constraint
pa_wait_log($sub, qr/conflicting key value violates exclusion constraint "t_u"/, $pos);

# the restart applies serially, up to T2's finish LSN at least
pa_wait_log($sub,
	qr/applies serially up to [0-9A-F]+\/[0-9A-F]+ after a failure/, $pos);
my ($until) = pa_log_since($sub, $pos)
  =~ /applies serially up to ([0-9A-F]+\/[0-9A-F]+) after a failure/;
note "serial window up to $until, T2 commits after $before_commit";
is($pub->safe_psql('postgres', "SELECT '$until'::pg_lsn > '$before_commit'::pg_lsn"),
	't', 'the serial window reaches the finish LSN of the transaction that failed');

# T1 stalls on the lock again, serially; T2 waits behind it
pa_poll($sub, q{
SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE a.backend_type = 'parallel_apply worker' AND NOT l.granted},
	't', 'T1 waits for the row lock in the serial window');

$locker->query_safe('COMMIT');
$locker->quit;

pa_check_equal($pub, $sub, 't', 'lockme', 'filler');
is($sub->safe_psql('postgres',
	"SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'sub'"),
	'1', 'exactly one failure: the serial re-apply did not fail again');
my @failures = (pa_log_since($sub, $pos) =~ /conflicting key value violates exclusion constraint "t_u"/g);
is(scalar(@failures), 1, 'one exclusion violation in the log');

done_testing();
