
# Copyright (c) parallel_apply authors
#
# Stopping the engine ends every process of it, whatever it waits for
# (DESIGN.md invariant 7; security issue, item 4).  A session on the
# subscriber holds a row lock in an open transaction; the publisher updates
# that row, so an apply worker waits for the lock.  detach() and then DROP
# SUBSCRIPTION must finish within seconds (PostgreSQL 15's own worker is
# stopped by DROP SUBSCRIPTION in about 0.1 s), leaving no process of the
# engine behind.  Before the leader stopped its workers on every exit, the
# worker slept on in its lock wait and detach failed after 60 s ("could not
# stop parallel_apply ... did not exit within 60 seconds").
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

if (!pa_engine())
{
	plan skip_all => 'stops the engine';
}

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2);

pa_both($pub, $sub, 'CREATE TABLE t (id int PRIMARY KEY, v int)');
$pub->safe_psql('postgres', 'INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g');
pa_subscribe($pub, $sub, 'sub');

# Lock row 1 on the subscriber, make a worker wait for it, and stop the
# engine with $stop_sql; it must take less than $limit seconds.
sub stop_while_locked
{
	my ($stop_sql, $what, $limit) = @_;

	pa_attach($sub, 'sub');
	my $locker = $sub->background_psql('postgres', on_error_stop => 1);
	$locker->query_safe('BEGIN');
	$locker->query_safe('SELECT * FROM t WHERE id = 1 FOR UPDATE');
	$pub->safe_psql('postgres', 'UPDATE t SET v = v + 1 WHERE id = 1');
	pa_poll($sub, q{
SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
WHERE a.backend_type = 'parallel_apply worker' AND NOT l.granted},
		't', 'a worker waits for the row lock');

	my $t0 = time;
	my ($ret, $out, $err) = $sub->psql('postgres', $stop_sql,
		timeout => 90);
	my $took = time - $t0;
	is($ret, 0, "$what succeeds while a worker waits for a row lock")
	  or diag($err);
	cmp_ok($took, '<', $limit, sprintf("%s took %.1f s", $what, $took));
	pa_poll($sub, q{
SELECT count(*) = 0 FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')},
		't', "no process of the engine left after $what");

	$locker->query_safe('COMMIT');
	$locker->quit;
	return;
}

stop_while_locked("SELECT parallel_apply.detach('sub')", 'detach', 10);
# the built-in worker took over and applied the update once the lock went
pa_check_equal($pub, $sub, 't');

# detach re-enabled the subscription; attach again, then drop it
$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
pa_poll($sub,
	"SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
	't', 'built-in worker gone');
stop_while_locked('DROP SUBSCRIPTION sub', 'DROP SUBSCRIPTION', 10);
is($pub->safe_psql('postgres',
	"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sub'"),
	'0', 'DROP SUBSCRIPTION dropped the slot on the publisher');
pa_check_log_clean($sub, 0);

done_testing();
