
# Copyright (c) parallel_apply authors
#
# Schema changes inside a replicated transaction (review F4).
#
# pgoutput sends a new RELATION message in the middle of a transaction when
# the table's schema changes in it.  Changes before it are encoded against
# the old description, changes after it against the new one; the subscriber
# must map each change with the description it was sent with, as
# PostgreSQL's own apply worker does.
#
#  - ADD COLUMN (the subscriber has the column already, as PostgreSQL
#    requires): BEGIN; INSERT; ALTER TABLE t ADD COLUMN c; INSERT (with c);
#    UPDATE t SET c; COMMIT must replicate and the tables end equal;
#  - DROP COLUMN b, ADD COLUMN c in one ALTER (same column count, other
#    names), with the subscriber holding a, b, c: the row inserted before
#    the ALTER gets b = 'x', c NULL, the row after it b NULL, c = 'y'
#    (what PostgreSQL's own worker writes);
#  - each of them as a small transaction (buffered by the leader, < 64 kB),
#    a large one (> 64 kB before the ALTER, so it is handed to its worker
#    before COMMIT) and a streamed one (streaming = on,
#    logical_decoding_work_mem = 64kB on the publisher; the ALTER comes
#    early, the transaction is spooled and replayed at STREAM COMMIT).
#
# Each case runs on its own table and subscription, so a case that leaves
# the engine stuck does not hide the others.  The engine must apply every
# case without an error (serial_retries = restarts = 0).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# how long a case may take to replicate (at most a few thousand rows; each
# takes about a second when it works)
my $case_timeout = 30;

my $pub = pa_publisher('publisher', conf => "logical_decoding_work_mem = 64kB\n");
my $sub = pa_subscriber('subscriber', workers => 2);

# rows before the ALTER: small stays well under 64 kB of pgoutput messages,
# large is about 230 kB (2000 rows of ~115 bytes)
my %prefix = (
	small => '',
	large => "INSERT INTO %t SELECT g, repeat('x', 100) FROM generate_series(10000, 11999) g;\n",
	stream => '');
# rows after the ALTER: the streamed case gets its bulk there, so that the
# ALTER sits early in the spooled transaction
my %suffix_add = (
	small => '',
	large => '',
	stream => "INSERT INTO %t SELECT g, repeat('x', 100), 'c' || g FROM generate_series(10000, 12999) g;\n");
my %suffix_swap = (
	small => '',
	large => '',
	stream => "INSERT INTO %t SELECT g, repeat('y', 100) FROM generate_series(10000, 12999) g;\n");

sub run_case
{
	my ($kind, $size, $sql, $check) = @_;
	my $t = "${kind}_$size";
	my $subname = "sub_$t";
	my $label = "$kind, $size transaction";

	$pub->safe_psql('postgres', "CREATE TABLE $t (a int PRIMARY KEY, b text);
		INSERT INTO $t VALUES (1001, 'before'), (1002, 'before');
		CREATE PUBLICATION pub_$t FOR TABLE $t");
	$sub->safe_psql('postgres',
		"CREATE TABLE $t (a int PRIMARY KEY, b text, c text)");
	pa_subscribe($pub, $sub, $subname,
		publication => "pub_$t",
		create_publication => 0,
		with => ($size eq 'stream' ? 'streaming = on' : 'streaming = off'));
	pa_attach($sub, $subname);
	# a first transaction on the table, so the engine knows its relation
	$pub->safe_psql('postgres', "INSERT INTO $t VALUES (1003, 'before')");
	pa_check_equal_within($pub, $sub, $case_timeout, $t);

	my $logpos = pa_log_pos($sub);
	(my $run = $sql) =~ s/%t/$t/g;
	note "$label:\n$run";
	$pub->safe_psql('postgres', $run);

	if ($size eq 'stream')
	{
		ok( pa_poll_for(
				$pub,
				"SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = '$subname'",
				't', 30),
			"$label: the publisher streamed it (pg_stat_replication_slots.stream_txns)");
	}

	ok(pa_catchup_within($pub, $subname, $case_timeout),
		"$label: the subscriber confirms it within ${case_timeout}s");
	my $equal = pa_check_equal_within($pub, $sub, 10, $t);
	$check->($t, $label);

	my @mismatch = pa_log_since($sub, $logpos) =~
	  /(remote tuple has \d+ columns, relation description has \d+)/g;
	is(scalar(@mismatch), 0,
		"$label: no column-count mismatch in the subscriber log"
		  . (@mismatch ? " (first: $mismatch[0])" : ''));
	SKIP:
	{
		skip 'PA_NO_ENGINE set', 1 unless pa_engine();
		is( $sub->safe_psql(
				'postgres',
				"SELECT serial_retries || ',' || restarts FROM parallel_apply.stat_subscription WHERE subname = '$subname'"
			),
			'0,0',
			"$label: applied without an error (serial_retries, restarts)");
	}
	diag("$label: errors in the subscriber log:\n" . pa_log_errors($sub, $logpos, 6))
	  unless $equal;

	$sub->safe_psql('postgres', "DROP SUBSCRIPTION $subname");
	return;
}

# ---------------------------------------------------------------- ADD COLUMN
foreach my $size (qw(small large stream))
{
	my $sql = "BEGIN;
INSERT INTO %t VALUES (1, 'one'), (2, 'two');
$prefix{$size}ALTER TABLE %t ADD COLUMN c text;
INSERT INTO %t VALUES (3, 'three', 'c3');
$suffix_add{$size}UPDATE %t SET c = 'u' || a WHERE a < 10 OR a BETWEEN 1001 AND 1003;
COMMIT;";
	run_case(
		'add', $size, $sql,
		sub {
			my ($t, $label) = @_;
			is( $sub->safe_psql(
					'postgres',
					"SELECT string_agg(a || ':' || b || ':' || coalesce(c, 'NULL'), ',' ORDER BY a) FROM $t WHERE a < 10 OR a BETWEEN 1001 AND 1003"
				),
				'1:one:u1,2:two:u2,3:three:u3,1001:before:u1001,1002:before:u1002,1003:before:u1003',
				"$label: rows before and after the ALTER, and the UPDATE of c");
		});
}

# ---------------------------------------------------------------- DROP b, ADD c
foreach my $size (qw(small large stream))
{
	my $sql = "BEGIN;
INSERT INTO %t VALUES (1, 'x');
$prefix{$size}ALTER TABLE %t DROP COLUMN b, ADD COLUMN c text;
INSERT INTO %t VALUES (2, 'y');
$suffix_swap{$size}COMMIT;";
	run_case(
		'swap', $size, $sql,
		sub {
			my ($t, $label) = @_;
			is( $sub->safe_psql(
					'postgres',
					"SELECT string_agg(a || ':' || coalesce(b, 'NULL') || ':' || coalesce(c, 'NULL'), ',' ORDER BY a) FROM $t WHERE a < 10"
				),
				'1:x:NULL,2:NULL:y',
				"$label: row 1 (sent before the ALTER) has b = 'x', c NULL; row 2 has c = 'y'");
			if ($size eq 'large')
			{
				is( $sub->safe_psql(
						'postgres',
						"SELECT count(*) FROM $t WHERE a BETWEEN 10000 AND 11999 AND b = repeat('x', 100) AND c IS NULL"
					),
					'2000',
					"$label: the 2000 rows before the ALTER have b, not c");
			}
		});
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
