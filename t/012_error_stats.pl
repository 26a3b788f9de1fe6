
# Copyright (c) parallel_apply authors
#
# Apply errors are counted in pg_stat_subscription_stats (review, item 11
# of "Should change"; F21 "no pg_stat_subscription_stats error counters").
# PostgreSQL's own apply worker adds one to apply_error_count for every
# failed attempt to apply a transaction; the engine must do the same for
# the subscriptions it applies.
#
#  - a unique violation against a row that exists only on the subscriber:
#    apply_error_count grows while the transaction keeps failing
#    (sync_error_count does not);
#  - once the local row is removed the subscription recovers, the tables
#    end equal, and apply_error_count equals the number of failed attempts
#    (ERROR lines for the violation in the subscriber log).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2);

pa_both($pub, $sub, q{
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE TABLE uq (id int PRIMARY KEY, code text UNIQUE);
});
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

$pub->safe_psql('postgres', "INSERT INTO t1 VALUES (1, 'one'); INSERT INTO uq VALUES (1, 'a')");
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't1', 'uq');

my $stats_sql =
  "SELECT apply_error_count || ',' || sync_error_count FROM pg_stat_subscription_stats WHERE subname = 'sub'";
is($sub->safe_psql('postgres', $stats_sql), '0,0', 'no errors counted before the conflict');

# ---------------------------------------------------------------- conflict
my $logpos = pa_log_pos($sub);
$sub->safe_psql('postgres', "INSERT INTO uq VALUES (100, 'local only')");
$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO uq VALUES (2, 'local only');
INSERT INTO t1 VALUES (2, 'same transaction');
COMMIT;
INSERT INTO t1 VALUES (3, 'after it');
});

my $violation_re = pa_unique_violation_re('uq_code_key');
my $err_re = qr/ERROR:  (?:$violation_re)/;
ok(defined pa_wait_log_for($sub, $err_re, $logpos, 30),
	'the conflicting transaction fails on the subscriber');
ok( pa_poll_for(
		$sub,
		"SELECT apply_error_count >= 1 AND sync_error_count = 0 FROM pg_stat_subscription_stats WHERE subname = 'sub'",
		't', 30),
	'apply_error_count counts the failure (sync_error_count does not)');
# a few more attempts (retry_interval is 1 s for the engine, the built-in
# worker retries after wal_retrieve_retry_interval = 500ms)
ok( pa_poll_for(
		$sub,
		"SELECT apply_error_count >= 3 FROM pg_stat_subscription_stats WHERE subname = 'sub'",
		't', 30),
	'apply_error_count grows with every failed attempt');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM t1 WHERE id >= 2'),
	'0', 'the failing transaction and the next one are not applied');

# ---------------------------------------------------------------- recovery
$sub->safe_psql('postgres', 'DELETE FROM uq WHERE id = 100');
ok(pa_catchup_within($pub, 'sub', 60), 'the subscription recovers once the local row is gone');
pa_check_equal_within($pub, $sub, 10, 't1', 'uq');

my @attempts = pa_log_since($sub, $logpos) =~ /($err_re)/g;
my $n = scalar @attempts;
note "failed attempts in the log: $n";
ok( pa_poll_for(
		$sub,
		"SELECT apply_error_count = $n AND sync_error_count = 0 FROM pg_stat_subscription_stats WHERE subname = 'sub'",
		't', 30),
	"apply_error_count equals the $n failed attempts logged")
  or diag('pg_stat_subscription_stats: ' . $sub->safe_psql('postgres', $stats_sql));

# no more errors counted once it works again
$pub->safe_psql('postgres', "INSERT INTO t1 VALUES (4, 'fine'); INSERT INTO uq VALUES (4, 'd')");
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't1', 'uq');
is($sub->safe_psql('postgres', $stats_sql), "$n,0",
	'no error counted after the recovery');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
		'streaming',
		'the engine still applies the subscription');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
