
# Copyright (c) parallel_apply authors
#
# Data types and table shapes through parallel_apply, in text mode
# (subscription sub_txt) and binary mode (sub_bin), both attached at once:
#  - a wide set of column types, edge values and NULLs;
#  - a different column order on the subscriber plus extra subscriber
#    columns with defaults; a column added and one dropped on the publisher
#    while attached;
#  - a TOASTed value left unchanged by UPDATEs of other columns (sent as
#    "unchanged"), including an UPDATE that changes the key;
#  - REPLICA IDENTITY FULL with duplicate rows;
#  - a partitioned target (plain table on the publisher), with UPDATEs that
#    move rows between partitions and a partition with its own column order;
#  - TRUNCATE, including TRUNCATE ... CASCADE over two tables with an FK.
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

my $types_sql = q{
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
};
pa_both($pub, $sub, $types_sql);

my @type_cols = (
	[ c_int2     => 'int2' ],
	[ c_int4     => 'int4' ],
	[ c_int8     => 'int8' ],
	[ c_num      => 'numeric' ],
	[ c_num2     => 'numeric(12,3)' ],
	[ c_f4       => 'float4' ],
	[ c_f8       => 'float8' ],
	[ c_text     => 'text' ],
	[ c_vc       => 'varchar(20)' ],
	[ c_char     => 'char(5)' ],
	[ c_bytea    => 'bytea' ],
	[ c_bool     => 'bool' ],
	[ c_date     => 'date' ],
	[ c_time     => 'time' ],
	[ c_ts       => 'timestamp' ],
	[ c_tstz     => 'timestamptz' ],
	[ c_interval => 'interval' ],
	[ c_uuid     => 'uuid' ],
	[ c_json     => 'json' ],
	[ c_jsonb    => 'jsonb' ],
	[ c_int_arr  => 'int[]' ],
	[ c_text_arr => 'text[]' ],
	[ c_num_arr  => 'numeric[]' ],
	[ c_inet     => 'inet' ],
	[ c_cidr     => 'cidr' ],
	[ c_macaddr  => 'macaddr' ],
	[ c_mood     => 'mood' ],
	[ c_pair     => 'pair' ],
	[ c_point    => 'point' ],
	[ c_range    => 'int4range' ],
	[ c_varbit   => 'varbit' ],);

sub publisher_ddl
{
	my ($p) = @_;
	my $cols = join(",\n  ", map { "$_->[0] $_->[1]" } @type_cols);
	return qq{
CREATE TABLE ${p}_types (
  id int PRIMARY KEY,
  $cols
);
CREATE TABLE ${p}_toast (id int PRIMARY KEY, small int, big text);
ALTER TABLE ${p}_toast ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE ${p}_full (a int, b text, c int);
ALTER TABLE ${p}_full REPLICA IDENTITY FULL;
CREATE TABLE ${p}_part (id int, k int, v text, PRIMARY KEY (id, k));
CREATE TABLE ${p}_parent (id int PRIMARY KEY, v text);
CREATE TABLE ${p}_child (id int PRIMARY KEY, pid int REFERENCES ${p}_parent (id), v text);
};
}

# Subscriber: columns in reverse order, extra columns with defaults in the
# middle and at the end, a column the publisher will add later; partitioned
# table whose second partition has its own column order.
sub subscriber_ddl
{
	my ($p) = @_;
	my @c = reverse map { "$_->[0] $_->[1]" } @type_cols;
	splice(@c, 10, 0, "c_extra text DEFAULT 'dflt'");
	my $cols = join(",\n  ", @c);
	return qq{
CREATE TABLE ${p}_types (
  c_new text,
  $cols,
  id int PRIMARY KEY,
  c_extra_n int DEFAULT 42
);
CREATE TABLE ${p}_toast (big text, small int, id int PRIMARY KEY);
ALTER TABLE ${p}_toast ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE ${p}_full (c int, b text, a int);
CREATE INDEX ON ${p}_full (a);
CREATE TABLE ${p}_part (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE ${p}_part_lo PARTITION OF ${p}_part FOR VALUES FROM (MINVALUE) TO (100);
CREATE TABLE ${p}_part_hi (v text, k int NOT NULL, id int NOT NULL);
ALTER TABLE ${p}_part_hi ADD PRIMARY KEY (id, k);
ALTER TABLE ${p}_part ATTACH PARTITION ${p}_part_hi FOR VALUES FROM (100) TO (MAXVALUE);
CREATE TABLE ${p}_parent (id int PRIMARY KEY, v text);
CREATE TABLE ${p}_child (id int PRIMARY KEY, pid int REFERENCES ${p}_parent (id), v text);
};
}

my @prefixes = qw(txt bin);
my @suffixes = qw(types toast full part parent child);

foreach my $p (@prefixes)
{
	$pub->safe_psql('postgres', publisher_ddl($p));
	$sub->safe_psql('postgres', subscriber_ddl($p));
}

# some rows before subscribing (initial sync is the built-in's job)
foreach my $p (@prefixes)
{
	$pub->safe_psql('postgres',
		"INSERT INTO ${p}_parent VALUES (100, 'before subscribe'); INSERT INTO ${p}_types (id, c_text) VALUES (100, 'before subscribe')"
	);
}

$pub->safe_psql('postgres',
	'CREATE PUBLICATION pub_bin FOR TABLE '
	  . join(', ', map { "bin_$_" } @suffixes));
pa_subscribe(
	$pub, $sub, 'sub_txt',
	publication => 'pub_txt',
	tables      => [ map { "txt_$_" } @suffixes ],
	with        => 'binary = false');
pa_subscribe(
	$pub, $sub, 'sub_bin',
	publication        => 'pub_bin',
	create_publication => 0,
	with               => 'binary = true');

is( $sub->safe_psql(
		'postgres',
		"SELECT string_agg(subname || ':' || subbinary, ',' ORDER BY subname) FROM pg_subscription"
	),
	'sub_bin:true,sub_txt:false',
	'one text-mode and one binary-mode subscription');

pa_attach($sub, 'sub_txt');
pa_attach($sub, 'sub_bin');

SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(subname || ':' || state, ',' ORDER BY subname) FROM parallel_apply.stat_subscription"
		),
		'sub_bin:streaming,sub_txt:streaming',
		'both subscriptions attached');
}

sub dml_types
{
	my ($p) = @_;
	return qq{
INSERT INTO ${p}_types VALUES
 (1, 1, 2, 3, 1.5, 12.345, 1.25, 2.5, 'hello', 'vc', 'ch', '\\x00ff10', true,
  '2024-02-29', '12:34:56.789', '2024-01-01 10:00:00.123456', '2024-01-01 10:00:00.123456+02',
  '1 year 2 mons 3 days 04:05:06.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2, {"b": null}], "a": "dup key kept in json"}', '{"k": "v", "n": 1.0}',
  '{1,2,NULL,4}', '{"a b","c,d",NULL,"\\"q\\"","NULL"}', '{1.0,2.50,NaN}',
  '192.168.1.10/24', '10.0.0.0/8', '08:00:2b:01:02:03', 'happy', '(7,"x y")',
  '(1.5,-2.25)', '[3,7)', B'10110'),
 (2, -32768, -2147483648, -9223372036854775808, 'NaN', -0.001, 'Infinity', '-Infinity',
  '', '', '', '\\x', false, 'infinity', '00:00', '-infinity', 'infinity',
  '-178000000 years', '00000000-0000-0000-0000-000000000000', '[]', '{}',
  '{}', '{}', '{}', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', 'sad', '(,)',
  '(0,0)', 'empty', B''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, 32767, 2147483647, 9223372036854775807,
  123456789012345678901234567890.123456789, 999999999.999, 3.4e38, '-0',
  E'\\u00fcn\\u00efc\\u00f8d\\u00e9 \\u20ac \\U0001F600 ''quote'' \\\\ backslash\\nnew line\\ttab',
  'x', 'abcde', '\\xdeadbeef', true, '4713-01-01 BC', '24:00',
  '2000-01-01 00:00:00', '1999-12-31 23:59:59.999999-12', '-1 days +02:03',
  'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12', '"just a string"', '[1, "two", null, true]',
  '{{1,2},{3,4}}', '{"{}","\\\\"}', '{-1e-20}', '10.1.2.3', '192.168.0.0/16',
  '01:02:03:04:05:06', 'ok', '(-1,)', '(-1e300,1e-300)', '(,0]', B'1');
UPDATE ${p}_types SET c_text = c_text || '!', c_jsonb = c_jsonb || '{"u": true}' WHERE id = 1;
UPDATE ${p}_types SET id = 10 WHERE id = 2;
UPDATE ${p}_types SET c_int4 = 5, c_mood = 'ok', c_pair = ROW(1, NULL) WHERE id = 3;
DELETE FROM ${p}_types WHERE id = 4;
BEGIN;
INSERT INTO ${p}_types (id, c_text, c_num) VALUES (5, 'five', 5.00);
UPDATE ${p}_types SET c_num = c_num * 2 WHERE id = 5;
INSERT INTO ${p}_types (id, c_text) VALUES (6, 'six');
DELETE FROM ${p}_types WHERE id = 6;
COMMIT;
};
}

sub dml_other
{
	my ($p) = @_;
	return qq{
INSERT INTO ${p}_toast SELECT 1, 0, string_agg(md5(g::text), '') FROM generate_series(1, 5000) g;
INSERT INTO ${p}_toast SELECT 2, 0, string_agg(md5((g * 7)::text), '') FROM generate_series(1, 5000) g;
INSERT INTO ${p}_toast VALUES (3, 0, 'short');
UPDATE ${p}_toast SET small = small + 1 WHERE id IN (1, 2);
UPDATE ${p}_toast SET small = small + 1 WHERE id = 1;
UPDATE ${p}_toast SET id = 20 WHERE id = 2;
DELETE FROM ${p}_toast WHERE id = 3;

INSERT INTO ${p}_full VALUES (1, 'dup', 1), (1, 'dup', 1), (2, NULL, 2), (3, 'x', NULL);
UPDATE ${p}_full SET c = 10 WHERE ctid = (SELECT min(ctid) FROM ${p}_full WHERE a = 1);
UPDATE ${p}_full SET b = 'was null' WHERE a = 2;
DELETE FROM ${p}_full WHERE a = 3;

INSERT INTO ${p}_part VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 150, 'c'), (4, 50, 'd'), (5, 500, 'e');
UPDATE ${p}_part SET k = 120 WHERE id = 1;
UPDATE ${p}_part SET k = 30, v = 'moved down' WHERE id = 3;
UPDATE ${p}_part SET v = 'bb' WHERE id = 2;
UPDATE ${p}_part SET v = 'ee' WHERE id = 5;
DELETE FROM ${p}_part WHERE id = 4;

INSERT INTO ${p}_parent VALUES (1, 'p1'), (2, 'p2');
INSERT INTO ${p}_child VALUES (1, 1, 'c1'), (2, 2, 'c2'), (3, 100, 'c3');
};
}

foreach my $p (@prefixes)
{
	$pub->safe_psql('postgres', dml_types($p));
	$pub->safe_psql('postgres', dml_other($p));
}
pa_catchup($pub, 'sub_txt');
pa_catchup($pub, 'sub_bin');

foreach my $p (@prefixes)
{
	pa_check_equal($pub, $sub, map { "${p}_$_" } @suffixes);

	is( $sub->safe_psql(
			'postgres',
			"SELECT count(*) FILTER (WHERE c_extra = 'dflt' AND c_extra_n = 42) || '/' || count(*) FROM ${p}_types"
		),
		'5/5',
		"$p: extra subscriber columns got their defaults");

	my $toast_sql =
	  "SELECT string_agg(id || ':' || small || ':' || length(big) || ':' || md5(big), ',' ORDER BY id) FROM ${p}_toast";
	my $want = $pub->safe_psql('postgres', $toast_sql);
	like($want, qr/^1:2:160000:\w+,20:1:160000:\w+$/,
		"$p: toast rows on the publisher as expected");
	is($sub->safe_psql('postgres', $toast_sql),
		$want, "$p: unchanged TOASTed values intact on the subscriber");

	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(id || ':' || k || ':' || tableoid::regclass, ',' ORDER BY id) FROM ${p}_part"
		),
		"1:120:${p}_part_hi,2:20:${p}_part_lo,3:30:${p}_part_lo,5:500:${p}_part_hi",
		"$p: rows routed to and moved between partitions");
	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM ${p}_part_hi"),
		'1:a,5:ee',
		"$p: partition with its own column order has the right values");
	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(a || ':' || coalesce(b, '-') || ':' || coalesce(c::text, '-'), ',' ORDER BY a, c) FROM ${p}_full"
		),
		'1:dup:1,1:dup:10,2:was null:2',
		"$p: REPLICA IDENTITY FULL with duplicate rows");
}

# Schema changes on the publisher while attached: add a column (exists on the
# subscriber already), drop one (stays on the subscriber).
foreach my $p (@prefixes)
{
	$pub->safe_psql(
		'postgres', qq{
ALTER TABLE ${p}_types ADD COLUMN c_new text;
INSERT INTO ${p}_types (id, c_text, c_new) VALUES (7, 'seven', 'new column');
UPDATE ${p}_types SET c_new = 'updated' WHERE id = 1;
ALTER TABLE ${p}_types DROP COLUMN c_varbit;
INSERT INTO ${p}_types (id, c_text, c_new) VALUES (8, 'eight', 'after drop');
UPDATE ${p}_types SET c_int8 = 88 WHERE id = 10;
});
}
pa_catchup($pub, 'sub_txt');
pa_catchup($pub, 'sub_bin');
foreach my $p (@prefixes)
{
	pa_check_equal($pub, $sub, "${p}_types");
	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(id || ':' || coalesce(c_new, '-'), ',' ORDER BY id) FROM ${p}_types"
		),
		'1:updated,3:-,5:-,7:new column,8:after drop,10:-,100:-',
		"$p: column added on the publisher arrives");
}

# A column's type changed on the subscriber while attached: the workers
# cache each column's input function, and must look it up again (text mode:
# int4 values still parse as numeric and as text; a stale int4in would store
# an int4 datum into a numeric or text column).
$sub->safe_psql(
	'postgres', q{
ALTER TABLE txt_types ALTER COLUMN c_int4 TYPE numeric;
ALTER TABLE txt_types ALTER COLUMN c_int2 TYPE text;
});
$pub->safe_psql(
	'postgres', q{
INSERT INTO txt_types (id, c_text, c_int2, c_int4) VALUES (9, 'nine', 9, 99999);
UPDATE txt_types SET c_int4 = 123456, c_int2 = -7 WHERE id = 1;
});
pa_catchup($pub, 'sub_txt');
is( $sub->safe_psql(
		'postgres',
		"SELECT string_agg(id || ':' || c_int2 || ':' || (c_int4 + 0.5), ',' ORDER BY id) FROM txt_types WHERE id IN (1, 9)"
	),
	'1:-7:123456.5,9:9:99999.5',
	'column types changed on the subscriber: values converted with the new types');
pa_check_equal($pub, $sub, 'txt_types');

# TRUNCATE: CASCADE over parent/child, and of a table that is partitioned on
# the subscriber; then more rows, in the same and in later transactions.
foreach my $p (@prefixes)
{
	$pub->safe_psql(
		'postgres', qq{
TRUNCATE ${p}_parent CASCADE;
BEGIN;
TRUNCATE ${p}_part;
INSERT INTO ${p}_part VALUES (7, 70, 'after truncate'), (8, 170, 'after truncate');
COMMIT;
INSERT INTO ${p}_parent VALUES (3, 'p3');
INSERT INTO ${p}_child VALUES (4, 3, 'c4');
TRUNCATE ${p}_toast, ${p}_full;
INSERT INTO ${p}_full VALUES (9, 'nine', 9);
});
}
pa_catchup($pub, 'sub_txt');
pa_catchup($pub, 'sub_bin');
foreach my $p (@prefixes)
{
	pa_check_equal($pub, $sub, map { "${p}_$_" } @suffixes);
	is( $sub->safe_psql(
			'postgres',
			"SELECT (SELECT string_agg(id::text, ',') FROM ${p}_parent) || '|' || (SELECT string_agg(id::text, ',') FROM ${p}_child) || '|' || (SELECT string_agg(id || ':' || tableoid::regclass, ',' ORDER BY id) FROM ${p}_part) || '|' || (SELECT count(*) FROM ${p}_toast)"
		),
		"3|4|7:${p}_part_lo,8:${p}_part_hi|0",
		"$p: TRUNCATE CASCADE and TRUNCATE of a partitioned target");
}

SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless pa_engine();
	is( $sub->safe_psql(
			'postgres',
			"SELECT string_agg(subname || ':' || state || ':' || (transactions_applied > 0), ',' ORDER BY subname) FROM parallel_apply.stat_subscription"
		),
		'sub_bin:streaming:true,sub_txt:streaming:true',
		'both subscriptions still streaming and applied transactions');
}

pa_check_log_clean($pub);
pa_check_log_clean($sub);

$sub->stop;
$pub->stop;
done_testing();
