
# Copyright (c) parallel_apply authors
#
# A publisher that goes silent without closing the connection (review F8):
# power loss, a network partition, here a SIGSTOPped walsender.  With
# wal_receiver_timeout = 5s on the subscriber, the apply side must give up
# on the connection after about 5 s of silence, as PostgreSQL's own apply
# worker does ("terminating logical replication worker due to timeout"),
# also while the subscription is idle and its apply workers sleep -- and
# once the walsender runs again, replication must resume and the tables
# end equal.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# wal_receiver_timeout is 5 s; allow for a slow machine, not for "never"
my $detect_timeout = 20;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "wal_receiver_timeout = 5s\n");

pa_both($pub, $sub, 'CREATE TABLE kv (k int PRIMARY KEY, v text)');
$pub->safe_psql('postgres',
	"INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g");
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

# some traffic, then idle: every apply worker has nothing to do
for my $i (1 .. 20)
{
	$pub->safe_psql('postgres', "UPDATE kv SET v = 'u$i' WHERE k = $i");
}
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'kv');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	ok( pa_poll_for(
			$sub,
			"SELECT count(*) FROM parallel_apply.stat_workers WHERE worker_type = 'apply' AND state = 'idle'",
			'4', 30),
		'all 4 apply workers are idle');
}
my $old_leader = pa_stat($sub, 'sub', 'leader_pid');

# the walsender that serves the subscription
my $wpid = $pub->safe_psql('postgres',
	"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sub'");
ok($wpid =~ /^\d+$/, "walsender of the subscription: pid $wpid");

# never leave it stopped, whatever happens below (a stopped walsender
# would also keep the publisher from shutting down)
my $stopped = 0;
END { kill 'CONT', $wpid if $stopped; }

my $logpos = pa_log_pos($sub);
my $re =
  pa_engine()
  ? qr/ERROR:  terminating parallel_apply leader due to timeout/
  : qr/ERROR:  terminating logical replication worker due to timeout/;
kill 'STOP', $wpid or die "could not stop walsender $wpid: $!";
$stopped = 1;
my $t0 = time;
note "walsender $wpid stopped (SIGSTOP)";

my $hit = pa_wait_log_for($sub, $re, $logpos, $detect_timeout);
my $elapsed = time - $t0;
ok(defined $hit,
	"the apply side gave up on the silent publisher within ${detect_timeout}s (wal_receiver_timeout = 5s)"
) or diag("nothing matching $re in the subscriber log after ${elapsed}s; errors:\n"
	  . pa_log_errors($sub, $logpos, 6));
note "timeout logged after about ${elapsed}s" if defined $hit;

kill 'CONT', $wpid;
$stopped = 0;
note "walsender $wpid continued (SIGCONT)";

# replication resumes: the old walsender notices its connection is gone and
# releases the slot, the apply side reconnects
$pub->safe_psql('postgres',
	"INSERT INTO kv SELECT g, 'after' FROM generate_series(101, 200) g; UPDATE kv SET v = 'after' WHERE k <= 50");
pa_check_equal_within($pub, $sub, 60, 'kv');
ok( pa_poll_for($pub,
		"SELECT active_pid IS NOT NULL AND active_pid <> $wpid FROM pg_replication_slots WHERE slot_name = 'sub'",
		't', 30),
	'a new walsender streams for the subscription');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	ok( pa_poll_for(
			$sub,
			"SELECT state = 'streaming' AND leader_pid <> $old_leader FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			't', 30),
		'a new leader streams again');
}

$pub->safe_psql('postgres', "UPDATE kv SET v = 'last' WHERE k > 150");
pa_check_equal_within($pub, $sub, 60, 'kv');

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
