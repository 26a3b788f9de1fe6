# Copyright (c) parallel_apply authors
#
# attach() calls that run at the same time see each other's result
# (security issue, items 6 and 10).  attach takes the marker lock (an
# ExclusiveLock on pg_replication_origin, held to commit) before it checks
# anything, so a second attach of the same subscription waits for the
# first and then says "already attached"; before, both went ahead and the
# second failed with "tuple concurrently updated".  For the same reason
# parallel_apply.max_subscriptions holds at commit: attaches of two
# different subscriptions in two sessions cannot both pass a limit of 1
# (before, the count was of slots the launcher had assigned, so both passed
# and the launcher then refused the second with only a WARNING).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

plan skip_all => 'PA_NO_ENGINE set: attach is the engine\'s' unless pa_engine();

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 1,
	conf => "parallel_apply.max_subscriptions = 1\n");

pa_both($pub, $sub, 'CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY)');
pa_subscribe($pub, $sub, 's1', publication => 'p1', tables => ['t1']);
pa_subscribe($pub, $sub, 's2', publication => 'p2', tables => ['t2']);

# Run $sql in a second session while the first holds an attach of s1 open,
# wait until the second session waits for a lock, commit the first, and
# return the second session's stderr.
sub race
{
	my ($sql) = @_;
	my $first = $sub->background_psql('postgres', on_error_stop => 0);
	$first->query_safe('BEGIN');
	$first->query_safe("SELECT parallel_apply.attach('s1')");

	my $second = $sub->background_psql('postgres', on_error_stop => 0);
	$second->query_until(qr/started/, "\\echo started\n$sql;\n");
	pa_poll($sub,
		qq(SELECT count(*) FROM pg_stat_activity
		   WHERE wait_event_type = 'Lock' AND query LIKE '%parallel_apply.attach%'),
		'1', 'second attach waits for the first');
	$first->query_safe('COMMIT');
	$first->quit;
	$second->quit;
	return $second->{stderr};
}

my $err = race("SELECT parallel_apply.attach('s1')");
like($err, qr/ERROR:  subscription "s1" is already attached to parallel_apply/,
	'a concurrent second attach of the same subscription says it is attached already');
unlike($err, qr/tuple concurrently updated/, 'and not "tuple concurrently updated"');
pa_wait_engine($sub, 's1');

# the limit, across sessions
pa_detach($sub, 's1');
$err = race("SELECT parallel_apply.attach('s2')");
like($err,
	qr/ERROR:  cannot attach subscription "s2": 1 subscription is attached already\n.*HINT:  Increase parallel_apply.max_subscriptions./s,
	'an attach in another session counts against max_subscriptions at commit');
is($sub->safe_psql('postgres',
		"SELECT string_agg(subname || '=' || subenabled, ',' ORDER BY subname) FROM pg_subscription"),
	's1=false,s2=true', 's2 stays enabled, applied by the built-in worker');
pa_wait_engine($sub, 's1');

$pub->safe_psql('postgres',
	'INSERT INTO t1 SELECT generate_series(1, 100); INSERT INTO t2 SELECT generate_series(1, 100)');
$pub->wait_for_catchup('s1');
$pub->wait_for_catchup('s2');
pa_check_equal($pub, $sub, 't1', 't2');
pa_check_log_clean($sub);

done_testing();
