
# Copyright (c) parallel_apply authors
#
# parallel_apply.pause() and parallel_apply.resume() (item 9).  pause stops
# every process of the engine for an attached subscription and returns only
# once they have exited; the subscription stays attached and disabled (the
# built-in worker does not take it either), nothing is applied or confirmed
# to the publisher, and it stays paused across a server restart, until
# resume, which starts the engine again.  detach of a paused subscription
# hands it to the built-in worker.  Each misuse has its own error: pausing
# twice, resuming what is not paused, a subscription that is not attached, a
# caller that is not the owner, a NULL name.  Before the fix neither
# function existed: the only way to stop applying for a while was detach
# plus DISABLE, which loses the attachment.
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
	plan skip_all => 'pause and resume are parallel_apply functions';
}

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2);

pa_both($pub, $sub, q{
CREATE TABLE tab (id int PRIMARY KEY);
CREATE TABLE tab2 (id int PRIMARY KEY);
});
$sub->safe_psql('postgres', 'CREATE ROLE mallory LOGIN');
pa_subscribe($pub, $sub, 'sub', tables => ['tab']);
pa_subscribe($pub, $sub, 'x', publication => 'pubx', tables => ['tab2']);
pa_attach($sub, 'sub');
$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
pa_check_equal($pub, $sub, 'tab');

# psql, returning (exit code, stdout, stderr) without dying
sub run_sql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $sub->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		timeout => 60);
	return ($ret, $out // '', $err // '');
}

# one test: $sql fails with exactly this ERROR line (a string, or a regexp)
sub fails_with
{
	my ($sql, $error, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = run_sql($sql);
	$error = qr/\Q$error\E/ unless ref $error;
	return ok($ret != 0 && $err =~ /(?:^|: )ERROR:  $error$/m, $what)
	  || diag("<$sql>: exit code $ret, stderr: $err");
}

my $engine_procs_q = q{SELECT count(*) FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')};
my $builtin_q = q{SELECT count(*) FROM pg_stat_subscription
WHERE subname = 'sub' AND pid IS NOT NULL};
my $count_q = 'SELECT count(*) FROM tab';
my $state_q = q{SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'};

fails_with("SET ROLE mallory; SELECT parallel_apply.pause('sub')",
	'must be owner of subscription sub', 'a non-owner cannot pause');
is($sub->safe_psql('postgres', $state_q), 'streaming', 'still streaming');

# pause: returns once every process of the engine has exited
my ($ret, $out, $err) = run_sql("SELECT parallel_apply.pause('sub')");
is($ret, 0, 'pause succeeds') or diag($err);
is($sub->safe_psql('postgres', $engine_procs_q), '0',
	'right after pause no leader or worker is left');
is($sub->safe_psql('postgres', $state_q), 'paused', "stat_subscription says 'paused'");
is($sub->safe_psql('postgres', "SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
	'f', 'the subscription stays disabled');
is($sub->safe_psql('postgres', $builtin_q), '0', 'no built-in apply worker runs for it');

# nothing is applied, nor confirmed to the publisher
my $before = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$pub->safe_psql('postgres', "INSERT INTO tab VALUES ($_)") for 2 .. 6;
# a negative check: poll for 2 s for the rows, and fail as soon as they come
ok(!pa_wait_until(2, sub { $sub->safe_psql('postgres', $count_q) ne '1' }),
	'rows inserted while paused do not arrive (polled for 2 s)');
is($pub->safe_psql('postgres',
	"SELECT confirmed_flush_lsn <= '$before' FROM pg_replication_slots WHERE slot_name = 'sub'"),
	't', "the slot's confirmed_flush_lsn does not pass the inserts");

fails_with("SET ROLE mallory; SELECT parallel_apply.resume('sub')",
	'must be owner of subscription sub', 'a non-owner cannot resume');
is($sub->safe_psql('postgres', $state_q), 'paused', 'still paused');

# a restart keeps it paused
$sub->restart;
ok(pa_poll_for($sub, $state_q, 'paused', 10), "paused after a restart");
# the launcher runs at start-up: it must not start the engine (polled for 2 s)
ok(!pa_wait_until(2, sub {
	$sub->safe_psql('postgres', $count_q) ne '1' ||
	  $sub->safe_psql('postgres', $engine_procs_q) ne '0' }),
	'rows still absent, and no engine process, after the restart');
is($sub->safe_psql('postgres', $engine_procs_q), '0', 'no leader or worker after the restart');
is($sub->safe_psql('postgres', $state_q), 'paused', 'still paused after the restart');

fails_with("SELECT parallel_apply.pause('sub')",
	'subscription "sub" is already paused', 'pause twice');

# resume: the engine streams again and the rows arrive
($ret, $out, $err) = run_sql("SELECT parallel_apply.resume('sub')");
is($ret, 0, 'resume succeeds') or diag($err);
ok(pa_poll_for($sub, $state_q, 'streaming', 30), 'the engine streams again after resume');
is($sub->safe_psql('postgres', $builtin_q), '0', 'no built-in apply worker runs for it');
pa_check_equal_within($pub, $sub, 30, 'tab');

fails_with("SELECT parallel_apply.resume('sub')",
	'subscription "sub" is not paused', 'resume of a subscription that is not paused');
fails_with("SELECT parallel_apply.pause('x')",
	'subscription "x" is not attached to parallel_apply', 'pause of a subscription that is not attached');
fails_with("SELECT parallel_apply.resume('x')",
	qr/subscription "x" is not (?:attached to parallel_apply|paused)/,
	'resume of a subscription that is not attached');
fails_with('SELECT parallel_apply.pause(NULL)',
	'subscription name must not be null', 'pause(NULL)');
is($sub->safe_psql('postgres', $state_q), 'streaming', 'the errors left the engine streaming');

# detach of a paused subscription hands it to the built-in worker
($ret, $out, $err) = run_sql("SELECT parallel_apply.pause('sub')");
is($ret, 0, 'pause again') or diag($err);
$pub->safe_psql('postgres', "INSERT INTO tab VALUES ($_)") for 7 .. 9;
is($sub->safe_psql('postgres', $count_q), '6', 'rows inserted while paused again do not arrive');
($ret, $out, $err) = run_sql("SELECT parallel_apply.detach('sub')");
is($ret, 0, 'detach of a paused subscription succeeds') or diag($err);
is($sub->safe_psql('postgres', "SELECT count(*) FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
	'0', 'stat_subscription has no row for it');
ok( pa_poll_for($sub,
		q{SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL AND relid IS NULL},
		'1', 20),
	'the built-in apply worker runs for it');
pa_check_equal_within($pub, $sub, 30, 'tab');
is($sub->safe_psql('postgres', $engine_procs_q), '0', 'no leader or worker left');

# x was applied by the built-in worker all along
$pub->safe_psql('postgres', 'INSERT INTO tab2 VALUES (1)');
pa_check_equal_within($pub, $sub, 30, 'tab2');
pa_check_log_clean($sub, 0);

done_testing();
