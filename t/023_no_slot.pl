
# Copyright (c) parallel_apply authors
#
# A subscription whose slot is unset while it is attached (item 5).
# ALTER SUBSCRIPTION ... SET (slot_name = NONE) is allowed, since an
# attached subscription is disabled.  The engine must stop once and stay
# stopped, saying once why ("parallel_apply cannot start subscription ...:
# it has no replication slot"), until a slot is set again; then it streams
# again.  PostgreSQL's recipe for dropping such a subscription (slot_name =
# NONE, then DROP SUBSCRIPTION) must work and leave the publisher's slot
# alone.  Before the fix the leader stepped aside with restart_now set, the
# launcher restarted it at once, and the new leader stepped aside again: about
# 130 "is stopping" lines per second, for as long as the slot was unset.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2);

pa_both($pub, $sub, 'CREATE TABLE tab (id int PRIMARY KEY)');
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');
$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
pa_check_equal($pub, $sub, 'tab');

if (!pa_engine())
{
	# PostgreSQL refuses slot_name = NONE on an enabled subscription
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
		'0', 'built-in apply worker gone');
}

# unset the slot; watch the log for 5 s
my $pos = pa_log_pos($sub);
my $t0 = time;
$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub SET (slot_name = NONE)');
my $cannot_re = qr/LOG:  parallel_apply cannot start subscription "sub": it has no replication slot/;
if (pa_engine())
{
	pa_wait_log_for($sub, $cannot_re, $pos, 5);
}
# a negative check over the rest of the 5 s window: fail as soon as a second
# leader start shows up (before the fix: about 130 a second)
my $left = 5 - (time - $t0);
pa_wait_until($left, sub {
	my $n = () = pa_log_since($sub, $pos) =~ /parallel_apply leader for subscription "sub" has started/g;
	return $n > 1;
}) if $left > 0 && pa_engine();
my $log = pa_log_since($sub, $pos);
my $started = () = $log =~ /parallel_apply leader for subscription "sub" has started/g;
my $stopping = () = $log =~ /parallel_apply leader for subscription "sub" is stopping/g;
my $cannot = () = $log =~ /$cannot_re/g;
note "in the 5 s after slot_name = NONE: $started started, $stopping stopping, $cannot cannot-start lines";

SKIP:
{
	skip 'engine only', 5 unless pa_engine();
	cmp_ok($started, '<=', 1, "at most 1 'has started' line in 5 s ($started)");
	cmp_ok($stopping, '<=', 1, "at most 1 'is stopping' line in 5 s ($stopping)");
	is($cannot, 1, 'exactly one "cannot start subscription "sub": it has no replication slot" line');
	is(pa_stat($sub, 'sub', 'state'), 'stopped', "stat_subscription says 'stopped'");
	is(pa_engine_procs($sub), '0', 'no leader or worker runs');
}

# a slot again: it streams again
$pos = pa_log_pos($sub);
$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SET (slot_name = 'sub')");
if (pa_engine())
{
	ok( pa_poll_for($sub,
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'streaming', 30),
		'the engine streams again once the slot is set');
}
else
{
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub ENABLE');
}
$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (2)');
ok(pa_poll_for($sub, 'SELECT count(*) FROM tab', '2', 30),
	'a publisher insert arrives');

# drop it the way PostgreSQL documents for a subscription without a slot
if (!pa_engine())
{
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub DISABLE');
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
		'0', 'built-in apply worker gone');
}
$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub SET (slot_name = NONE)');
$t0 = time;
my ($out, $err);
my $timed_out = 0;
my $ret = $sub->psql('postgres', 'DROP SUBSCRIPTION sub',
	stdout => \$out, stderr => \$err, timeout => 20, timed_out => \$timed_out);
my $took = time - $t0;
ok(!$timed_out && $ret == 0, 'DROP SUBSCRIPTION of a subscription without slot succeeds')
  or diag("ret=$ret timed_out=$timed_out stderr: $err");
cmp_ok($took, '<', 10, sprintf('DROP SUBSCRIPTION took %.1f s', $took));
ok(pa_wait_no_engine_procs($sub, 10), 'no leader or worker left');
is($sub->safe_psql('postgres', "SELECT count(*) FROM pg_subscription WHERE subname = 'sub'"),
	'0', 'the subscription is gone');
is($pub->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sub'"),
	'1', 'the publisher still has the slot');
pa_poll($pub, "SELECT active FROM pg_replication_slots WHERE slot_name = 'sub'",
	'f', 'the slot is released on the publisher');
$pub->safe_psql('postgres', "SELECT pg_drop_replication_slot('sub')");
pa_check_log_clean($sub, 0);

done_testing();
