
# Copyright (c) parallel_apply authors
#
# binary = true subscription with numeric, float8 and float4 keys (review
# F3).  In binary mode the leader gets each key column in the type's binary
# format, which for these types holds zero bytes (numeric starts with its
# 16-bit digit count; 0, 2.0, -0.0 ... are mostly zero bytes); it must
# hash the value, not a truncated copy of it, and equal values spelled
# differently (numeric 1.0 and 1.00, float -0 and 0) must collide.
#
#  - kn (numeric PK), kf8 (float8 PK), kf4 (float4 PK): per key, in
#    separate transactions, INSERT, UPDATE, UPDATE of the key to an equal
#    value spelled differently, DELETE by that spelling, re-INSERT, UPDATE,
#    DELETE -- the next transaction on a key often depends on the previous
#    one, and runs in parallel with transactions on other keys;
#  - un: REPLICA IDENTITY FULL on the publisher, a unique index on its
#    numeric column n on the subscriber only: n values are freed and taken
#    again, spelled differently;
#  - keys: 0, -0, 1, 1.0/1.00, 1e-300 (1e-30 for float4), NaN, Infinity,
#    -Infinity, large and small values;
#  - 4 workers, parallel_apply.group_size = 1 (every transaction commits on
#    its own, so a missed dependency shows), a backlog applied at full
#    speed, then the same while attached.
# The tables must end equal and the engine must apply everything without
# an error: serial_retries = restarts = 0, no ERROR in the subscriber log,
# no row not found (update_missing, delete_missing) in it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $apply_timeout = 60;

my $pub = pa_publisher('publisher', conf => "synchronous_commit = off\n");
# debug1: PostgreSQL 15's "did not find row" is at DEBUG1 (the engine
# logs update_missing and delete_missing at LOG)
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\nlog_min_messages = debug1\n");

pa_both($pub, $sub, q{
CREATE TABLE kn (k numeric PRIMARY KEY, v int);
CREATE TABLE kf8 (k float8 PRIMARY KEY, v int);
CREATE TABLE kf4 (k float4 PRIMARY KEY, v int);
CREATE TABLE un (id int PRIMARY KEY, n numeric, v int);
});
$pub->safe_psql('postgres', 'ALTER TABLE un REPLICA IDENTITY FULL');
$sub->safe_psql('postgres', 'CREATE UNIQUE INDEX un_n ON un (n)');
# rows that exist before the subscription (copied by the initial sync)
$pub->safe_psql('postgres', q{
INSERT INTO kn VALUES (-7, 0), (0.5, 0);
INSERT INTO kf8 VALUES (-7, 0), (0.25, 0);
INSERT INTO kf4 VALUES (-7, 0), (0.25, 0);
INSERT INTO un VALUES (1000, -7, 0);
});

# [key, the same value spelled differently]
my %keys = (
	kn => [
		[ '0', '0.000' ], [ '1.0', '1.00' ],
		[ '-1', '-1.0' ], [ '1e-300', '0.1e-299' ],
		[ "'NaN'", "'nan'" ], [ "'Infinity'", "'inf'" ],
		[ "'-Infinity'", "'-inf'" ], [ '123456789.123456789', '123456789.1234567890' ],
		[ '256', '256.0' ], [ '0.0001', '0.00010' ]
	],
	kf8 => [
		[ '0', "'-0'" ], [ '1', '1.0' ],
		[ '2', '2.00' ], [ '1e-300', '0.1e-299' ],
		[ "'NaN'", "'nan'" ], [ "'Infinity'", "'inf'" ],
		[ "'-Infinity'", "'-inf'" ], [ '-1', '-1.0' ],
		[ '256', '256.0' ], [ '0.5', '0.50' ]
	],
	kf4 => [
		[ '0', "'-0'" ], [ '1', '1.0' ],
		[ '2', '2.00' ], [ '1e-30', '0.1e-29' ],
		[ "'NaN'", "'nan'" ], [ "'Infinity'", "'inf'" ],
		[ "'-Infinity'", "'-inf'" ], [ '-1', '-1.0' ],
		[ '256', '256.0' ], [ '0.5', '0.50' ]
	]);
my %cast = (kn => 'numeric', kf8 => 'float8', kf4 => 'float4');

# One statement per transaction (psql runs a script in autocommit mode).
# Key-major, so consecutive transactions on one key are only a few
# transactions apart; with $keep, the last round leaves the rows in place.
sub workload
{
	my ($rounds, $idbase, $keep) = @_;
	my @sql;
	for my $r (1 .. $rounds)
	{
		my $last = $keep && $r == $rounds;
		for my $i (0 .. 9)
		{
			my @ops;
			for my $t (qw(kn kf8 kf4))
			{
				my ($k, $k2) = @{ $keys{$t}[$i] };
				my $c = $cast{$t};
				push @{ $ops[0] }, "INSERT INTO $t VALUES (${k}::$c, $r)";
				push @{ $ops[1] }, "UPDATE $t SET v = v + 1 WHERE k = ${k}::$c";
				push @{ $ops[2] }, "UPDATE $t SET k = ${k2}::$c, v = v + 10 WHERE k = ${k}::$c";
				push @{ $ops[3] }, "DELETE FROM $t WHERE k = ${k2}::$c";
				push @{ $ops[4] }, "INSERT INTO $t VALUES (${k2}::$c, 100 + $r)";
				push @{ $ops[5] }, "UPDATE $t SET v = v * 2 WHERE k = ${k}::$c";
				push @{ $ops[6] }, $last ? "UPDATE $t SET v = -v WHERE k = ${k2}::$c" : "DELETE FROM $t WHERE k = ${k}::$c";
			}
			# un: n is taken, respelled, freed and taken again by another id
			my ($n, $n2) = @{ $keys{kn}[$i] };
			my $id = $idbase + $r * 100 + $i;
			push @{ $ops[0] }, "INSERT INTO un VALUES ($id, ${n}::numeric, $r)";
			push @{ $ops[1] }, "UPDATE un SET v = v + 1 WHERE id = $id";
			push @{ $ops[2] }, "UPDATE un SET n = ${n2}::numeric WHERE id = $id";
			push @{ $ops[3] }, "DELETE FROM un WHERE id = $id";
			push @{ $ops[4] }, "INSERT INTO un VALUES ($id + 50, ${n2}::numeric, $r)";
			push @{ $ops[5] }, "UPDATE un SET v = v * 2 WHERE n = ${n}::numeric";
			push @{ $ops[6] }, $last ? "UPDATE un SET v = -v WHERE id = $id + 50" : "DELETE FROM un WHERE n = ${n}::numeric";
			push @sql, map { @$_ } @ops;
		}
	}
	return join(";\n", @sql) . ";\n";
}

# two subscriptions, so that a stuck numeric key does not hide what
# happens to the float keys
my %subs = (sub_num => [qw(kn un)], sub_flt => [qw(kf8 kf4)]);
my @subnames = sort keys %subs;
$pub->safe_psql('postgres', 'CREATE PUBLICATION pub_num FOR TABLE kn, un');
$pub->safe_psql('postgres', 'CREATE PUBLICATION pub_flt FOR TABLE kf8, kf4');
for my $s (@subnames)
{
	(my $p = $s) =~ s/^sub_/pub_/;
	pa_subscribe($pub, $sub, $s, publication => $p, create_publication => 0,
		with => 'binary = true');
	pa_attach($sub, $s);
}
pa_check_equal($pub, $sub, qw(kn kf8 kf4 un));
my $logpos = pa_log_pos($sub);

sub check_clean
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	for my $s (@subnames)
	{
		ok(pa_catchup_within($pub, $s, $apply_timeout),
			"$label: $s applied within ${apply_timeout}s");
		pa_check_equal_within($pub, $sub, 10, @{ $subs{$s} });
		SKIP:
		{
			skip 'PA_NO_ENGINE set', 1 unless pa_engine();
			is( $sub->safe_psql(
					'postgres',
					"SELECT serial_retries || ',' || restarts FROM parallel_apply.stat_subscription WHERE subname = '$s'"
				),
				'0,0',
				"$label: $s: no error in the engine (serial_retries, restarts)");
		}
	}
	my $errors = pa_log_errors($sub, $logpos, 8);
	is($errors, '', "$label: no ERROR or FATAL in the subscriber log");
	my $missing_re = pa_missing_row_re();
	my @missed = pa_log_since($sub, $logpos) =~ /($missing_re[^\n]*)/g;
	is(scalar(@missed), 0,
		"$label: every UPDATE and DELETE found its row"
		  . (@missed ? " (first miss: $missed[0])" : ''));
	return;
}

# ---------------------------------------------------------------- backlog
# built while the subscriptions do not apply, then applied at full speed
for my $s (@subnames)
{
	pa_detach($sub, $s);
	$sub->safe_psql('postgres', "ALTER SUBSCRIPTION $s DISABLE");
}
pa_poll($sub,
	"SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL",
	'0', 'built-in workers gone');
$logpos = pa_log_pos($sub);
$pub->safe_psql('postgres', workload(6, 0, 0));
for my $s (@subnames)
{
	# not pa_attach: it would wait (unbounded) for an engine that may fail
	# at once; check_clean bounds the wait
	$sub->safe_psql('postgres',
		pa_engine()
		? "SELECT parallel_apply.attach('$s')"
		: "ALTER SUBSCRIPTION $s ENABLE");
}
check_clean('backlog');

# ---------------------------------------------------------------- live
$pub->safe_psql('postgres', workload(6, 10000, 1));
check_clean('while attached');

is( $sub->safe_psql('postgres',
		"SELECT count(*) FROM kf8 WHERE k = 0 AND k::text = '-0'"),
	'1', 'kf8 holds -0 (binary copy of the respelled key)');
is( $sub->safe_psql('postgres',
		"SELECT k::text FROM kn WHERE k = 1"),
	'1.00', 'kn holds 1.00 as the publisher spelled it');

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
