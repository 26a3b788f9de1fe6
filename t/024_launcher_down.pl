
# Copyright (c) parallel_apply authors
#
# attach refuses when no launcher can run (item 7).  With
# parallel_apply.database naming a database that does not exist, the
# launcher cannot connect (its FATAL says which setting named the database),
# so nothing would ever start a leader.  attach must fail with "the
# parallel_apply launcher is not running", say why and what to do, and
# leave the subscription enabled and applied by PostgreSQL's built-in worker.
# Before the fix attach succeeded: it disabled the subscription and created
# the marker, and then nothing applied it; the launcher's FATAL did not say
# where the database name came from.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "parallel_apply.database = 'nosuchdb'\n");

pa_both($pub, $sub, 'CREATE TABLE tab (id int PRIMARY KEY)');
$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (1)');
pa_subscribe($pub, $sub, 'sub');
pa_check_equal($pub, $sub, 'tab');

SKIP:
{
	skip 'engine only', 6 unless pa_engine();

	# the launcher has tried (and failed) by now; it says why
	my $fatal;
	pa_wait_until(30, sub {
		($fatal) = grep {
			$_->{level} eq 'FATAL' && $_->{msg} eq 'database "nosuchdb" does not exist'
		} pa_log_messages($sub, 0);
		defined $fatal;
	});
	ok(defined $fatal, 'the launcher logged FATAL:  database "nosuchdb" does not exist');
	is($fatal ? $fatal->{context} : undef,
		'parallel_apply launcher connecting to database "nosuchdb" named by parallel_apply.database',
		'its CONTEXT names the launcher and parallel_apply.database')
	  or diag($fatal ? $fatal->{text} : pa_log_errors($sub, 0));

	my ($ret, $out, $err) = pa_attach_sql($sub, 'sub');
	isnt($ret, 0, 'attach fails while the launcher cannot run');
	like($err, qr/ERROR:  the parallel_apply launcher is not running$/m,
		'attach: ERROR the parallel_apply launcher is not running');
	like($err,
		qr/DETAIL:  It could not connect to database "nosuchdb" named by parallel_apply\.database\.$/m,
		'attach: DETAIL names the database and the setting');
	like($err,
		qr/HINT:  Create that database, or set parallel_apply\.database to an existing one and restart the server\.$/m,
		'attach: HINT says what to do')
	  or diag("attach stderr: $err");
}

is($sub->safe_psql('postgres', "SELECT subenabled FROM pg_subscription WHERE subname = 'sub'"),
	't', 'the subscription stays enabled');
if (pa_engine())
{
	is($sub->safe_psql('postgres',
		"SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'parallel_apply_attached_%'"),
		'0', 'no attach marker was created');
}
$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (2)');
ok(pa_poll_for($sub, 'SELECT count(*) FROM tab', '2', 20),
	'an insert arrives: the built-in worker still applies it');
ok( pa_poll_for($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL",
		'1', 10),
	'the built-in apply worker runs for it');
is(pa_engine_procs($sub), '0', 'no leader or worker of parallel_apply runs');
pa_check_log_clean($sub, 0);

done_testing();
