
# Copyright (c) parallel_apply authors
#
# REPLICA IDENTITY FULL tables without a primary key or replica identity
# index on the subscriber: rows of an UPDATE or DELETE are found through the
# best usable index (parallel_apply.ri_full_index = auto), compared with the
# whole remote old row, and the choice is shown in
# parallel_apply.stat_relations.  Before, the engine (like PostgreSQL 15)
# scanned the whole table for every such row, and could not UPDATE or
# DELETE rows of a table with a point, box, polygon or json column at all
# ("could not identify an equality operator for type point").
#
# One subscription, four workers, autovacuum off on the subscriber (so that
# a table has statistics only where this test runs ANALYZE; without them,
# an index created on an empty table leaves reltuples unknown).  The
# publisher publishes FOR ALL TABLES WITH (publish_via_partition_root =
# true); every table is REPLICA IDENTITY FULL there.  Sections:
#  1. identical duplicate rows (3 copies) in t1n (no index) and t1i (index
#     on k): an UPDATE of one copy by ctid on the publisher (also SET v = v,
#     checked by xmin on the subscriber), a DELETE of one copy, an UPDATE of
#     all copies in one statement, copies with a NULL: exactly as many
#     copies change on the subscriber; an invalid unique index (a CREATE
#     UNIQUE INDEX CONCURRENTLY that failed on t1n's duplicates) is not used;
#  2. t2: NULLs in the indexed column k and in the others (UPDATE and
#     DELETE of rows whose key is NULL, keys set to and from NULL); the
#     btree index is used for them too (seq_scans = 0);
#  3. t3: a 2-value smallint index (created first) and a selective int index:
#     without statistics the narrower key wins (t3_flag); after ANALYZE on
#     the subscriber the next change re-chooses the selective t3_id;
#     seq_scans stays 0;
#  4. t4u: a unique index (not a primary key, rows with a NULL id) preferred
#     over a non-unique two-column one; t4h: a hash index, the only
#     candidate, used; t4r: a subscriber replica identity index (USING
#     INDEX) is used as PostgreSQL uses it (replica_identity 'index');
#  5. t5: only an expression index, an index whose first key is an
#     expression, and a partial index: none used (lookup_index NULL,
#     seq_scans = rows looked up), and the LOG line saying so, with its
#     DETAIL and, t5 being analyzed, its HINT naming column a (200 distinct
#     values), appears exactly once for a transaction of five lookups; later
#     transactions log it at most once per worker process; t1n (no
#     statistics) logs it without a HINT;
#  6. t6: a two-column index preferred (without statistics) over a
#     one-column one, and an index whose first key is a subscriber-only
#     column ignored; the subscriber's REPLICA IDENTITY NOTHING shows as
#     'nothing';
#  7. point, box, polygon and json columns (NULLs, duplicates, rows that
#     differ only in a point or in json whitespace, an 8 kB json that stays
#     TOASTed while another column changes) in t7a (no index) and t7b (index
#     on id): UPDATE and DELETE replicate (engine only: PostgreSQL 15's
#     worker fails on them);
#  8. t8: CREATE INDEX CONCURRENTLY on the subscriber while a pgbench load
#     updates t8: lookup_index becomes t8_k (polled while changes keep
#     coming), then DROP INDEX under load: back to NULL; equal after each;
#  9. pt, partitioned on both sides (publish_via_partition_root = true on
#     the publisher; the subscriber's leaves have their own indexes: pt_1
#     btree on b and REPLICA IDENTITY FULL, pt_2 with another column order
#     and a two-column index (c, b), pt_3 none): one stat_relations row per
#     leaf, each with its own index, none for the root; rows moving between
#     leaves;
# 10. ALTER SYSTEM SET parallel_apply.ri_full_index = off and a reload:
#     t3's lookups go by scan (seq_scans grows with every lookup), data
#     equal, lookup_index NULL; RESET: by t3_id again.  (The first version
#     kept showing t3_id while off: the cached choice was not dropped when
#     the setting changed.)
# At the end: every table equal on both sides, and with the engine
# rows_not_found = 0 in every stat_relations row, no ERROR of a
# replication process in the subscriber log, no crash or leak.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $t_start = time;
my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4, conf => "autovacuum = off\n");

# ---------------------------------------------------------------- schema
# same columns on both sides unless said otherwise; FULL on the publisher
my @plain = (
	[ t1n => 'k int, s text, v int' ],
	[ t1i => 'k int, s text, v int' ],
	[ t2  => 'k int, a text, b int' ],
	[ t3  => 'id int, flag smallint, v text' ],
	[ t4u => 'id int, g int, v text' ],
	[ t4h => 'k int, v text' ],
	[ t4r => 'id int NOT NULL, v text' ],
	[ t5  => 'a int, b text, c int' ],
	[ t6  => 'a int, b int, v text' ],
	[ t7a => 'id int, p point, bx box, pg polygon, j json' ],
	[ t7b => 'id int, p point, bx box, pg polygon, j json' ],
	[ t8  => 'k int, v int' ],
);
my @tables = ((map { $_->[0] } @plain), 'pt', 'f');

foreach my $t (@plain)
{
	$pub->safe_psql('postgres',
		"CREATE TABLE $t->[0] ($t->[1]); ALTER TABLE $t->[0] REPLICA IDENTITY FULL");
	my $cols = $t->[1];
	$cols .= ', extra int' if $t->[0] eq 't6';    # a subscriber-only column
	$sub->safe_psql('postgres', "CREATE TABLE $t->[0] ($cols)");
}
$pub->safe_psql('postgres', q{
CREATE TABLE pt (a int, b int, c text) PARTITION BY RANGE (a);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM (100) TO (200);
CREATE TABLE pt_3 PARTITION OF pt FOR VALUES FROM (200) TO (300);
ALTER TABLE pt REPLICA IDENTITY FULL;
ALTER TABLE pt_1 REPLICA IDENTITY FULL;
ALTER TABLE pt_2 REPLICA IDENTITY FULL;
ALTER TABLE pt_3 REPLICA IDENTITY FULL;
CREATE TABLE f (id int PRIMARY KEY, v int);
});

# the subscriber's indexes, created on the empty tables (reltuples stays
# unknown: no statistics until ANALYZE)
$sub->safe_psql('postgres', q{
ALTER TABLE t1n REPLICA IDENTITY FULL;
CREATE INDEX t1i_k ON t1i (k);
CREATE INDEX t2_k ON t2 (k);
CREATE INDEX t3_flag ON t3 (flag);
CREATE INDEX t3_id ON t3 (id);
CREATE INDEX t4u_gv ON t4u (g, v);
CREATE UNIQUE INDEX t4u_id ON t4u (id);
CREATE INDEX t4h_k ON t4h USING hash (k);
CREATE UNIQUE INDEX t4r_id ON t4r (id);
CREATE INDEX t4r_v ON t4r (v);
ALTER TABLE t4r REPLICA IDENTITY USING INDEX t4r_id;
CREATE INDEX t5_expr ON t5 ((a + 0));
CREATE INDEX t5_expr2 ON t5 (lower(b), a);
CREATE INDEX t5_part ON t5 (a) WHERE c > 0;
CREATE INDEX t6_a ON t6 (a);
CREATE INDEX t6_ab ON t6 (a, b);
CREATE INDEX t6_extra ON t6 (extra, a, b);
ALTER TABLE t6 REPLICA IDENTITY NOTHING;
CREATE INDEX t7b_id ON t7b (id);
ALTER TABLE t7a REPLICA IDENTITY FULL;
CREATE TABLE pt (a int, b int, c text) PARTITION BY RANGE (a);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
CREATE TABLE pt_2 (c text, b int, a int);
ALTER TABLE pt ATTACH PARTITION pt_2 FOR VALUES FROM (100) TO (200);
CREATE TABLE pt_3 PARTITION OF pt FOR VALUES FROM (200) TO (300);
CREATE INDEX pt_1_b ON pt_1 (b);
ALTER TABLE pt_1 REPLICA IDENTITY FULL;
CREATE INDEX pt_2_cb ON pt_2 (c, b);
CREATE TABLE f (id int PRIMARY KEY, v int);
});

# ---------------------------------------------------------------- data
my $geo_rows = q{
INSERT INTO %1$s SELECT i, point(i, i / 2.0), box(point(0, 0), point(i, i)),
  polygon(box(point(0, 0), point(i, i + 1))), json_build_object('i', i)
  FROM generate_series(1, 20) i;
INSERT INTO %1$s VALUES
  (21, '(1,1)', '(2,2),(0,0)', '((0,0),(1,0),(1,1))', '{"dup": true}'),
  (21, '(1,1)', '(2,2),(0,0)', '((0,0),(1,0),(1,1))', '{"dup": true}'),
  (22, '(1,1)', '(3,3),(0,0)', '((0,0),(3,0),(3,3))', '{"n": 22}'),
  (22, '(2,2)', '(3,3),(0,0)', '((0,0),(3,0),(3,3))', '{"n": 22}'),
  (24, NULL, NULL, NULL, NULL),
  (26, '(6,6)', '(6,6),(0,0)', '((0,0),(6,0),(6,6))', '{"a":1}'),
  (26, '(6,6)', '(6,6),(0,0)', '((0,0),(6,0),(6,6))', '{"a": 1}');
INSERT INTO %1$s SELECT 25, '(0,0)', '(1,1),(0,0)', '((0,0),(1,0),(1,1))',
  json_build_object('big', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 250) g));
};
$pub->safe_psql('postgres',
	q{
INSERT INTO t1n VALUES (1, 'a', 10), (1, 'a', 10), (1, 'a', 10), (2, 'b', NULL), (2, 'b', NULL),
  (2, 'b', NULL), (3, 'c', 30), (3, 'c', 30), (3, 'c', 30), (4, 'd', 40), (5, 'e', 50);
INSERT INTO t1i SELECT * FROM t1n;
INSERT INTO t2 VALUES (NULL, 'x', 1), (NULL, 'x', 1), (NULL, NULL, NULL), (NULL, NULL, NULL),
  (NULL, 'y', NULL), (1, NULL, 2), (2, 'z', NULL), (3, NULL, NULL);
INSERT INTO t2 SELECT i, 'r' || i, i FROM generate_series(10, 40) i;
INSERT INTO t3 SELECT i, i % 2, 'v' || i FROM generate_series(1, 400) i;
INSERT INTO t4u SELECT i, i % 5, 'v' || (i % 3) FROM generate_series(1, 100) i;
INSERT INTO t4u VALUES (NULL, 1, 'n1'), (NULL, 1, 'n2');
INSERT INTO t4h SELECT i % 20, 'h' || i FROM generate_series(1, 100) i;
INSERT INTO t4r SELECT i, 'r' || i FROM generate_series(1, 50) i;
INSERT INTO t5 SELECT i, 'b' || (i % 50), i % 3 FROM generate_series(1, 200) i;
INSERT INTO t6 SELECT i % 20, i % 7, 'w' || i FROM generate_series(1, 200) i;
INSERT INTO t8 SELECT i, 0 FROM generate_series(1, 300) i;
INSERT INTO pt SELECT i, i % 10, 'c' || (i % 7) FROM generate_series(0, 299) i;
INSERT INTO f SELECT i, 0 FROM generate_series(1, 10) i;
}
	  . sprintf($geo_rows, 't7a')
	  . sprintf($geo_rows, 't7b'));

$pub->safe_psql('postgres',
	'CREATE PUBLICATION pub FOR ALL TABLES WITH (publish_via_partition_root = true)');
pa_subscribe($pub, $sub, 'sub', create_publication => 0);
pa_check_equal($pub, $sub, @tables);

# t5 gets statistics before any of its rows is looked up (for the HINT)
$sub->safe_psql('postgres', 'ANALYZE t5');
my $logpos = pa_log_pos($sub);
pa_attach($sub, 'sub');

# ---------------------------------------------------------------- helpers
# one row of stat_relations: lookup_index|rows_looked_up|rows_not_found|seq_scans
sub rel { return pa_rel_stat($sub, 'sub', $_[0], $_[1]) }

sub pub_sql { $pub->safe_psql('postgres', $_) foreach @_; return }

# Run one publisher statement (its own transaction) per statement given,
# then wait until the subscriber has applied everything.
sub apply_all
{
	pub_sql(@_);
	pa_catchup($pub, 'sub');
	return;
}

# Poll a condition on $rel's stat_relations row while changes keep coming:
# each round runs $poke (publisher changes of $rel), waits for the
# subscriber, then evaluates $cond (SQL over the view's columns).
sub poll_rel
{
	my ($rel, $cond, $poke, $seconds) = @_;
	my $q = "SELECT coalesce(bool_and($cond), false) FROM parallel_apply.stat_relations WHERE subname = 'sub' AND relid = '$rel'::regclass";
	return pa_wait_until($seconds // 30, sub {
		$poke->();
		pa_catchup($pub, 'sub');
		return $sub->safe_psql('postgres', $q) eq 't';
	});
}

# LOG messages "... with a sequential scan" for relation $rel since $pos
sub scan_logs
{
	my ($rel, $pos) = @_;
	my $want = "parallel_apply finds rows of replication target relation \"public.$rel\" with a sequential scan";
	return grep { $_->{level} eq 'LOG' && $_->{msg} eq $want } pa_log_messages($sub, $pos);
}

# (number of such messages, number of processes that logged them, messages)
sub scan_logged
{
	my @l = scan_logs(@_);
	my %pids = map { $_->{pid} => 1 } @l;
	return (scalar @l, scalar keys %pids, @l);
}

my $detail = 'The publisher sends the whole row (REPLICA IDENTITY FULL) and the relation has no usable index: a valid, non-partial btree or hash index whose first key column is a replicated column.';

# copies of each distinct row, as "k:s:v xN" lines
sub copies
{
	my ($node, $t) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(r, ' ' ORDER BY r) FROM (SELECT k || ':' || coalesce(s, '-') || ':' || coalesce(v::text, '-') || 'x' || count(*) AS r FROM $t GROUP BY k, s, v) q");
}

# ---------------------------------------------------------------- 1. duplicates
foreach my $t (qw(t1n t1i))
{
	my $x0 = $sub->safe_psql('postgres',
		"SELECT string_agg(DISTINCT xmin::text, ',') FROM $t WHERE k = 3");
	unlike($x0, qr/,/, "$t: the three copies of (3, c, 30) share one xmin before");
	apply_all("UPDATE $t SET v = v WHERE ctid = (SELECT ctid FROM $t WHERE k = 3 LIMIT 1)");
	is( $sub->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE xmin::text <> '$x0') || '/' || count(*) FROM $t WHERE k = 3"),
		'1/3',
		"$t: UPDATE ... SET v = v of one copy rewrote exactly one copy on the subscriber");

	apply_all(
		"UPDATE $t SET v = v + 1 WHERE ctid = (SELECT ctid FROM $t WHERE k = 1 LIMIT 1)",
		"DELETE FROM $t WHERE ctid = (SELECT ctid FROM $t WHERE k = 1 AND v = 10 LIMIT 1)",
		"UPDATE $t SET v = 5 WHERE ctid = (SELECT ctid FROM $t WHERE k = 2 LIMIT 1)",
		"DELETE FROM $t WHERE ctid = (SELECT ctid FROM $t WHERE k = 2 AND v IS NULL LIMIT 1)",
		"UPDATE $t SET s = 'cc' WHERE k = 3",
		"DELETE FROM $t WHERE ctid = (SELECT ctid FROM $t WHERE k = 3 LIMIT 1)");
	my $want = '1:a:10x1 1:a:11x1 2:b:-x1 2:b:5x1 3:cc:30x2 4:d:40x1 5:e:50x1';
	is(copies($pub, $t), $want, "$t: the publisher has the copies meant");
	is(copies($sub, $t), $want,
		"$t: one copy updated, one deleted, per change; the copies with a NULL too");
}
pa_check_equal($pub, $sub, qw(t1n t1i));
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 4 unless pa_engine();
	# 1 + 1 + 1 + 1 + 1 + 3 + 1 rows looked up in each
	is(rel('t1n', 'replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans'),
		'full||9|0|9', 't1n: no index, 9 rows looked up by a sequential scan (local identity full)');
	is(rel('t1i', 'replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans'),
		'default|t1i_k|9|0|0', 't1i: 9 rows looked up through t1i_k, no scan');
	my ($n, $procs, @l) = scan_logged('t1n', $logpos);
	ok($n >= 1 && $n == $procs,
		"t1n: the sequential scan is logged once per process that looked rows up ($n times)");
	ok(@l && !defined $l[0]{hint} && ($l[0]{detail} // '') eq $detail,
		't1n: with the DETAIL and, without statistics, no HINT')
	  or diag(join("\n", map { $_->{text} } @l));
}

# an invalid index (a CREATE UNIQUE INDEX CONCURRENTLY that failed on the
# duplicates), which would rank first were it valid, is not used
{
	my ($ret, $out, $err) = $sub->psql('postgres', 'CREATE UNIQUE INDEX CONCURRENTLY t1n_k ON t1n (k)');
	like($err, qr/could not create unique index "t1n_k"/,
		't1n: CREATE UNIQUE INDEX CONCURRENTLY fails on the duplicates');
	is($sub->safe_psql('postgres', q{SELECT indisvalid FROM pg_index WHERE indexrelid = 't1n_k'::regclass}),
		'f', 't1n: t1n_k is left invalid');
	apply_all(q{UPDATE t1n SET v = v + 100 WHERE k = 4},
		q{DELETE FROM t1n WHERE ctid = (SELECT ctid FROM t1n WHERE k = 3 LIMIT 1)});
	pa_check_equal($pub, $sub, 't1n');
  SKIP:
	{
		skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
		is(rel('t1n', 'lookup_index, rows_looked_up, seq_scans'), '|11|11',
			't1n: the invalid unique index is not used, still sequential scans');
	}
}

# ---------------------------------------------------------------- 2. NULLs
apply_all(
	q{UPDATE t2 SET b = 11 WHERE ctid = (SELECT ctid FROM t2 WHERE k IS NULL AND a = 'x' LIMIT 1)},
	q{UPDATE t2 SET a = 'q' WHERE ctid = (SELECT ctid FROM t2 WHERE k IS NULL AND a IS NULL AND b IS NULL LIMIT 1)},
	q{DELETE FROM t2 WHERE k IS NULL AND a = 'y'},
	q{UPDATE t2 SET k = 7 WHERE k IS NULL AND a = 'x' AND b = 1},
	q{UPDATE t2 SET k = NULL WHERE k = 1},
	q{UPDATE t2 SET a = 'zz', b = NULL WHERE k = 2},
	q{DELETE FROM t2 WHERE k = 3 AND a IS NULL},
	q{DELETE FROM t2 WHERE ctid = (SELECT ctid FROM t2 WHERE k IS NULL AND a IS NULL AND b IS NULL LIMIT 1)},
	q{UPDATE t2 SET b = b + 1 WHERE k BETWEEN 10 AND 15},
	q{UPDATE t2 SET b = NULL WHERE k IS NULL AND a = 'x'});
is($pub->safe_psql('postgres', "SELECT count(*) FILTER (WHERE k IS NULL) || '/' || count(*) FROM t2"),
	'3/36', 't2: the publisher has the rows meant');
pa_check_equal($pub, $sub, 't2');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	is(rel('t2'), 't2_k|15|0|0',
		't2: rows with a NULL key found through the btree index too (IS NULL), no scan');
}

# ---------------------------------------------------------------- 3. statistics
apply_all("UPDATE t3 SET v = v || 'a' WHERE id IN (5, 6)", "UPDATE t3 SET v = v || 'b' WHERE id = 7");
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	is(rel('t3'), 't3_flag|3|0|0',
		't3 without statistics: the narrower key (smallint flag) is chosen');
}
$sub->safe_psql('postgres', 'ANALYZE t3');
my $poke = 10;
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 2 unless pa_engine();
	ok( poll_rel('t3', q{lookup_index = 't3_id'::regclass},
			sub { pub_sql("UPDATE t3 SET v = v || 'c' WHERE id = " . $poke++) }),
		't3 after ANALYZE on the subscriber: the selective t3_id is chosen at the next change')
	  or diag(pa_rel_stats_all($sub, 'sub'));
}
apply_all(map { "UPDATE t3 SET v = v || 'd' WHERE id = " . (100 + 3 * $_) } 1 .. 20);
apply_all('DELETE FROM t3 WHERE id BETWEEN 300 AND 305');
pa_check_equal($pub, $sub, 't3');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	my ($idx, $n, $nf, $seq) = split /\|/, rel('t3');
	is("$idx|$nf|$seq", 't3_id|0|0', "t3: $n rows looked up, by t3_id at the end, seq_scans 0");
}

# ---------------------------------------------------------------- 4. unique, hash, identity index
apply_all(
	q{UPDATE t4u SET v = v || '+' WHERE id IN (1, 2, 3)},
	q{UPDATE t4u SET g = 9 WHERE id = 4},
	q{UPDATE t4u SET v = 'n1x' WHERE id IS NULL AND v = 'n1'},
	q{DELETE FROM t4u WHERE id IS NULL AND v = 'n2'},
	q{DELETE FROM t4u WHERE id = 5},
	q{UPDATE t4h SET v = v || '+' WHERE k = 3},
	q{DELETE FROM t4h WHERE k = 4 AND v = 'h4'},
	q{UPDATE t4h SET k = 30 WHERE v = 'h10'},
	q{UPDATE t4h SET v = 'h' WHERE k = 5 AND v = 'h25'},
	q{UPDATE t4r SET v = v || '+' WHERE id <= 3},
	q{DELETE FROM t4r WHERE id = 4});
pa_check_equal($pub, $sub, qw(t4u t4h t4r));
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 3 unless pa_engine();
	is(rel('t4u', 'replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans'),
		'default|t4u_id|7|0|0',
		't4u: the unique index t4u_id (not a primary key) beats the two-column t4u_gv, NULL ids included');
	is(rel('t4h'), 't4h_k|8|0|0', 't4h: the hash index, the only candidate, is used');
	is(rel('t4r', 'replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans'),
		'index|t4r_id|4|0|0', 't4r: the replica identity index of the subscriber is used');
}

# ---------------------------------------------------------------- 5. no usable index
my $pos5 = pa_log_pos($sub);
pub_sql(q{BEGIN;
UPDATE t5 SET b = b || '+' WHERE a IN (1, 2, 3);
DELETE FROM t5 WHERE a = 4;
UPDATE t5 SET c = 5 WHERE a = 10;
COMMIT;});
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't5');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 5 unless pa_engine();
	is(rel('t5'), '|5|0|5',
		't5: neither the expression indexes nor the partial index is used: 5 sequential scans');
	my @l = scan_logs('t5', $pos5);
	is(scalar @l, 1, 't5: one transaction of 5 lookups logs the sequential scan exactly once')
	  or diag(join("\n", map { $_->{text} } @l));
	is($l[0]{detail} // '', $detail, 't5: DETAIL of the message');
	is($l[0]{hint} // '', 'An index on column "a" (about 200 distinct values) would help most.',
		't5: HINT names the column with the most distinct values');

	apply_all(map { "UPDATE t5 SET b = b || '-' WHERE a = $_" } 20 .. 27);
	my ($n, $procs) = scan_logged('t5', $pos5);
	is($n, $procs, "t5: after 8 more transactions, no process logged it twice ($n times)");
}
pa_check_equal($pub, $sub, 't5');

# ---------------------------------------------------------------- 6. multi-column index
apply_all(
	q{UPDATE t6 SET v = v || '+' WHERE a = 3 AND b = 3},
	q{DELETE FROM t6 WHERE a = 5 AND b = 5 AND v = 'w5'},
	q{UPDATE t6 SET b = 0 WHERE v = 'w100'},
	q{UPDATE t6 SET a = NULL WHERE v = 'w101'},
	q{UPDATE t6 SET v = 'w101x' WHERE v = 'w101'});
is($pub->safe_psql('postgres', "SELECT count(*) FROM t6 WHERE v LIKE '%+'"), '2',
	't6: the publisher updated the two (3, 3) rows');
pa_check_equal($pub, $sub, 't6');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	is(rel('t6', 'replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans'),
		'nothing|t6_ab|6|0|0',
		't6: the two-column t6_ab is used, not t6_a nor t6_extra (first key not replicated)');
}

# ---------------------------------------------------------------- 7. types without equality
SKIP:
{
	skip 'PA_NO_ENGINE set: PostgreSQL 15 cannot UPDATE or DELETE rows with point, box, polygon or json columns', 4
	  unless pa_engine();
	foreach my $t (qw(t7a t7b))
	{
		apply_all(
			"UPDATE $t SET p = point(100, 100) WHERE id = 1",
			"UPDATE $t SET bx = box(point(1, 1), point(5, 5)) WHERE id = 2",
			"UPDATE $t SET pg = '((0,0),(9,0),(9,9))' WHERE id = 3",
			"UPDATE $t SET j = json_build_object('new', 4) WHERE id = 4",
			"UPDATE $t SET id = 1000 WHERE id = 5",
			"DELETE FROM $t WHERE id = 6",
			"UPDATE $t SET j = '{\"x\": 1}' WHERE ctid = (SELECT ctid FROM $t WHERE id = 21 LIMIT 1)",
			"DELETE FROM $t WHERE id = 22 AND p ~= point(2, 2)",
			"UPDATE $t SET p = point(7, 7) WHERE id = 24",
			"UPDATE $t SET id = 2500 WHERE id = 25",
			"DELETE FROM $t WHERE id = 26 AND j::text = '{\"a\": 1}'",
			"UPDATE $t SET bx = NULL WHERE id = 7");
	}
	is( $pub->safe_psql('postgres',
			q{SELECT count(*) || '/' || count(*) FILTER (WHERE id = 2500 AND length(j::text) > 8000) FROM t7a}),
		'25/1', 't7a: the publisher has the rows meant (the big json kept)');
	pa_check_equal($pub, $sub, qw(t7a t7b));
	is(rel('t7a'), '|12|0|12', 't7a: 12 rows found by a scan, compared by datum image');
	is(rel('t7b'), 't7b_id|12|0|0', 't7b: 12 rows found through t7b_id, rechecked by datum image');
}

# ---------------------------------------------------------------- 8. index created and dropped under load
my $bench_file = $pub->basedir . '/t8_update.sql';
append_to_file($bench_file, "\\set k random(1, 300)\nUPDATE t8 SET v = v + 1 WHERE k = :k;\n");
my @bench = ('-n', '-c', '2', '-j', '2', '-T', '3', '-R', '100', '-f', $bench_file);
my $k8 = 0;
my $poke8 = sub { pub_sql('UPDATE t8 SET v = v + 1 WHERE k = ' . (1 + $k8++ % 300)) };

apply_all(map { "UPDATE t8 SET v = v + 1 WHERE k = $_" } 1 .. 5);
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	is(rel('t8', 'lookup_index, seq_scans'), '|5', 't8 without an index: sequential scans');
}
my $bench = pa_pgbench_bg($pub, @bench);
# the load is being applied before the index comes
pa_poll($sub, 'SELECT sum(v) > 5 FROM t8', 't', 'the subscriber applies the t8 load');
$sub->safe_psql('postgres', 'CREATE INDEX CONCURRENTLY t8_k ON t8 (k)');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	ok(poll_rel('t8', q{lookup_index = 't8_k'::regclass}, $poke8),
		't8: lookup_index becomes t8_k after CREATE INDEX CONCURRENTLY, under load')
	  or diag(pa_rel_stats_all($sub, 'sub'));
}
pa_bg_finish($bench);
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't8');
my $seq8 = pa_engine() ? rel('t8', 'seq_scans') : 0;
apply_all(map { "UPDATE t8 SET v = v + 1 WHERE k = $_" } 200 .. 219);
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	is(rel('t8', 'lookup_index, seq_scans'), "t8_k|$seq8", 't8: 20 more rows found through t8_k, no scan');
}

$bench = pa_pgbench_bg($pub, @bench);
$sub->safe_psql('postgres', 'DROP INDEX t8_k');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 1 unless pa_engine();
	ok(poll_rel('t8', q{lookup_index IS NULL AND seq_scans > } . $seq8, $poke8),
		't8: back to a sequential scan (lookup_index NULL) after DROP INDEX, under load')
	  or diag(pa_rel_stats_all($sub, 'sub'));
}
pa_bg_finish($bench);
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 't8');

# ---------------------------------------------------------------- 9. partitions
apply_all(
	q{UPDATE pt SET c = c || '+' WHERE a IN (5, 150, 250)},
	q{UPDATE pt SET b = 99 WHERE a = 6},
	q{DELETE FROM pt WHERE a IN (7, 151, 251)},
	q{UPDATE pt SET a = a + 100 WHERE a = 8},
	q{UPDATE pt SET a = a - 100 WHERE a = 152},
	q{UPDATE pt SET b = NULL WHERE a = 9},
	q{UPDATE pt SET c = 'z' WHERE a = 9},
	q{UPDATE pt SET b = b + 1 WHERE a IN (160, 161)});
pa_check_equal($pub, $sub, 'pt');
my $leaves = q{SELECT string_agg(l || ':' || n, ' ' ORDER BY l) FROM (SELECT tableoid::regclass::text AS l, count(*) AS n FROM pt GROUP BY 1) q};
is($pub->safe_psql('postgres', $leaves), 'pt_1:99 pt_2:99 pt_3:99', 'pt: rows per leaf on the publisher');
is($sub->safe_psql('postgres', $leaves), 'pt_1:99 pt_2:99 pt_3:99',
	'pt: rows per leaf on the subscriber (rows 8 and 152 moved between leaves)');
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 2 unless pa_engine();
	# pt_1: 5, 6, 7, 8, 9, 9 (8 deleted there and inserted into pt_2),
	# pt_2: 150, 151, 152, 160, 161; pt_3: 250, 251
	is( $sub->safe_psql('postgres', q{
SELECT string_agg(relid::text || ':' || replica_identity || ':' || coalesce(lookup_index::text, '-')
                  || ':' || rows_looked_up || ':' || rows_not_found || ':' || (seq_scans > 0), ' ' ORDER BY relid::text)
FROM parallel_apply.stat_relations WHERE subname = 'sub' AND relid::text LIKE 'pt%'}),
		'pt_1:full:pt_1_b:6:0:false pt_2:default:pt_2_cb:5:0:false pt_3:default:-:2:0:true',
		'pt: one stat_relations row per leaf, each with its own index (none for the root)');
	my ($n, $procs) = scan_logged('pt_3', $logpos);
	ok($n >= 1 && $n == $procs, "pt_3: its sequential scan is logged once per process ($n times)");
}

# ---------------------------------------------------------------- 10. ri_full_index = off
SKIP:
{
	skip 'PA_NO_ENGINE set: parallel_apply.ri_full_index is the engine\'s', 7 unless pa_engine();
	my (undef, $n0, undef, $s0) = split /\|/, rel('t3');
	$sub->safe_psql('postgres', 'ALTER SYSTEM SET parallel_apply.ri_full_index = off');
	$sub->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(poll_rel('t3', "seq_scans > $s0", sub { pub_sql("UPDATE t3 SET v = v || 'e' WHERE id = " . $poke++) }),
		't3 with ri_full_index = off: lookups go by sequential scan after the reload');
	my (undef, $n1, undef, $s1) = split /\|/, rel('t3');
	apply_all(map { "UPDATE t3 SET v = v || 'f' WHERE id = " . (200 + $_) } 1 .. 20);
	my ($idx2, $n2, $nf2, $s2) = split /\|/, rel('t3');
	is(($n2 - $n1) . '/' . ($s2 - $s1), '20/20', 't3 with off: 20 rows looked up, all by a scan');
	is($nf2, '0', 't3 with off: every row found');
	is($idx2, '', 't3 with off: lookup_index NULL while rows are found by a scan');
	pa_check_equal($pub, $sub, 't3');

	$sub->safe_psql('postgres', 'ALTER SYSTEM RESET parallel_apply.ri_full_index');
	$sub->safe_psql('postgres', 'SELECT pg_reload_conf()');
	# back to the index: a round in which a lookup happened without a scan
	my ($last_n, $last_s) = ($n2, $s2);
	ok( pa_wait_until(30, sub {
			pub_sql("UPDATE t3 SET v = v || 'g' WHERE id = " . $poke++);
			pa_catchup($pub, 'sub');
			my (undef, $n, undef, $s) = split /\|/, rel('t3');
			my $byindex = $n > $last_n && $s == $last_s;
			($last_n, $last_s) = ($n, $s);
			return $byindex;
		}),
		't3 after RESET: rows found through the index again');
	apply_all(map { "UPDATE t3 SET v = v || 'h' WHERE id = " . (250 + $_) } 1 .. 20);
	my ($idx3, $n3, undef, $s3) = split /\|/, rel('t3');
	is("$idx3|" . ($n3 - $last_n) . '|' . ($s3 - $last_s), 't3_id|20|0',
		't3 with auto again: 20 rows looked up through t3_id, no scan');
}
pa_check_equal($pub, $sub, 't3');

# ---------------------------------------------------------------- the end
apply_all(q{UPDATE f SET v = v + 1 WHERE id <= 3});
pa_check_equal($pub, $sub, @tables);
SKIP:
{
	skip 'PA_NO_ENGINE set: no stat_relations', 4 unless pa_engine();
	is(rel('f', 'replica_identity, lookup_index, rows_looked_up, seq_scans'), 'default|f_pkey|3|0',
		'f: found through its primary key');
	is( $sub->safe_psql('postgres',
			q{SELECT coalesce(string_agg(relid::text, ' '), '') FROM parallel_apply.stat_relations WHERE subname = 'sub' AND rows_not_found <> 0}),
		'', 'every row looked up was found (rows_not_found = 0 everywhere)')
	  or diag(pa_rel_stats_all($sub, 'sub'));
	note "stat_relations at the end:\n" . pa_rel_stats_all($sub, 'sub');
	is(pa_stat($sub, 'sub', 'state'), 'streaming', 'engine streaming at the end');
	is(pa_stat($sub, 'sub', 'serial_retries'), '0', 'no serial retry');
}
# errors of this test's own sessions (the failed CREATE INDEX) aside
my @errors = grep { $_->{level} =~ /^(?:ERROR|FATAL)$/ && $_->{text} !~ /\] 028_ri_full_index\.pl / }
  pa_log_messages($sub, $logpos);
is(scalar @errors, 0, 'no ERROR or FATAL of a replication process in the subscriber log')
  or diag(join("\n", map { $_->{text} } @errors[ 0 .. ($#errors < 4 ? $#errors : 4) ]));
pa_check_log_clean($sub, $logpos);
note 'elapsed ' . (time - $t_start) . ' s';

$sub->stop;
$pub->stop;
done_testing();
