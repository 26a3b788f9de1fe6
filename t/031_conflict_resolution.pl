
# Copyright (c) parallel_apply authors
#
# Resolving conflicts, conflicts among parallel transactions, and conflicts
# seen by a subscription owner with column privileges only (issue 13; the
# reference is PostgreSQL 18.6's log lines, /work/shared/notes, and
# PostgreSQL's ALTER SUBSCRIPTION ... SKIP and disable_on_error).  Subscriber:
# 4 workers, track_commit_timestamp = on, lc_messages = C, SQLSTATE (%e) in
# log_line_prefix, retry_interval 200 ms.
#
#  1. SKIP: an insert_exists ERROR in the second change of a four-row
#     transaction; the finish LSN of its CONTEXT (the LSN of the COMMIT
#     record on the publisher, and conflict_history.finish_lsn, change = 2)
#     given to ALTER SUBSCRIPTION ... SKIP: exactly that transaction is
#     missing, the next ones arrive, subskiplsn is cleared, the log says it
#     started and finished skipping;
#  2. disable_on_error = true (a second subscription): an insert_exists
#     ERROR disables it (LOG "has been disabled because of an error"), the
#     conflict is logged once or twice, no further attempt, the engine has
#     let go of it (no stat_subscription row); after the local row is removed
#     attach() catches it up;
#  3. one conflicting transaction among 300 others applied by 4 workers from
#     a backlog: the only conflict logged (and recorded) is that
#     transaction's, with its own xid and finish LSN; the transactions before
#     it are committed, none after it (commit order); after the fix both
#     sides are equal;
#  4. ~1200 transactions inserting, updating, moving (new primary key),
#     deleting and re-inserting the same rows, shifting UNIQUE values from
#     row to row, and (ck_tab, whose subscriber key (id) is narrower than the
#     publisher's (id, k)) re-inserting a deleted id under another publisher
#     key and updating it, from a backlog with 4 workers: no conflict
#     logged, recorded or counted, several workers used, both sides equal;
#  5. a subscription owner (alice, not a superuser) with INSERT, UPDATE,
#     DELETE and column privileges only: rows are printed the way
#     PostgreSQL 18 prints them then (ExecBuildSlotValueDescription and
#     BuildIndexValueDescription): with SELECT (id, u) "existing local row
#     (id, u) = (34, 340)" (insert_exists and multiple_unique_conflicts), with
#     SELECT (u) no key, with no SELECT no row line at all; conflict_history
#     holds nothing alice may not read.  (Only an INSERT can conflict then:
#     PostgreSQL 15 and 18 require table-level SELECT to look a row up for an
#     UPDATE or DELETE; such an UPDATE fails with "permission denied for
#     table", no conflict, until SELECT is granted.)  The owner may reset the
#     counters;
#  6. a transaction with an update_missing (LOG) and then an insert_exists
#     (ERROR), retried until the local row is removed: insert_exists is
#     logged and counted per attempt, update_missing once, when the
#     transaction is applied (its history row: one attempt).
# With PA_NO_ENGINE=1 (PostgreSQL 15's own worker) SKIP, disable_on_error,
# the ERRORs' CONTEXT (PostgreSQL 15's "duplicate key value ..."), commit
# order and the rows are checked; what only the engine does is skipped.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PaConflict;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $t_start = time;
my $engine = pa_engine();

my ($pub, $sub) = conflict_nodes();

pa_both($pub, $sub, q{
CREATE TABLE conf_tab (id int PRIMARY KEY, u int UNIQUE, v text);
CREATE TABLE par_tab (id int PRIMARY KEY, v text);
CREATE TABLE dep_tab (id int PRIMARY KEY, u int UNIQUE, v int);
CREATE TABLE doe_tab (id int PRIMARY KEY, v text);
});
# the subscriber's key is narrower than the publisher's: a dependency the
# tracker cannot see (the publisher's keys (id, 1) and (id, 2) differ)
$pub->safe_psql('postgres', 'CREATE TABLE ck_tab (id int, k int, v int, PRIMARY KEY (id, k))');
$sub->safe_psql('postgres', 'CREATE TABLE ck_tab (id int PRIMARY KEY, k int, v int)');

pa_subscribe($pub, $sub, 'sub', tables => [qw(conf_tab par_tab dep_tab ck_tab)]);
pa_subscribe($pub, $sub, 'doe_sub', publication => 'doe_pub', tables => ['doe_tab'],
	with => 'disable_on_error = true');
pa_attach($sub, 'sub');
pa_attach($sub, 'doe_sub');

my ($pos, $r, $lxid, $lsn);

# ================================================================ 1. SKIP
$pos = pa_log_pos($sub);
$lxid = sub_local("INSERT INTO conf_tab VALUES (11, 110, 'sub-local')");
my $skip = pub_txn(q{
INSERT INTO conf_tab VALUES (10, 10, 'skip-a');
INSERT INTO conf_tab VALUES (11, 11, 'skip-b');
INSERT INTO conf_tab VALUES (12, 12, 'skip-c');
INSERT INTO par_tab VALUES (-1, 'skipped')});
$pub->safe_psql('postgres', q{
INSERT INTO conf_tab VALUES (13, 13, 'after');
INSERT INTO par_tab VALUES (-2, 'after');
});
$lsn = check_error('SKIP: insert_exists', $pos, $skip,
	subname => 'sub', rel => 'conf_tab', msgtype => 'INSERT',
	detail => qr/\AKey already exists in unique index "conf_tab_pkey", modified locally in transaction $lxid at $TS\.\nKey \(id\)=\(11\); existing local row \(11, 110, sub-local\); remote row \(11, 11, skip-b\)\.\z/);
SKIP:
{
	skip 'conflict_history is the engine\'s', 1 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT finish_lsn || ' ' || change || ' ' || remote_commit_time FROM parallel_apply.conflict_history WHERE remote_xid = '$skip->{xid}'::xid",
			($lsn // '?') . " 2 $skip->{commit_time}", 10),
		'SKIP: conflict_history has the same finish LSN, change 2 and the remote commit time');
}
is(rows($sub, 'conf_tab', 'id BETWEEN 10 AND 13') . ' / ' . rows($sub, 'par_tab', 'id < 0'),
	'(11,110,sub-local) / ', 'SKIP: nothing of the failing transaction nor of the next ones applied');
my $skippos = pa_log_pos($sub);
$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SKIP (lsn = '" . ($lsn // '0/0') . "')");
sub_rows_are('conf_tab', 'id BETWEEN 10 AND 13', '(11,110,sub-local),(13,13,after)',
	'SKIP: exactly the skipped transaction is missing', 30);
sub_rows_are('par_tab', 'id < 0', '(-2,after)', 'SKIP: exactly the skipped transaction is missing');
ok(pa_poll_for($sub, "SELECT subskiplsn FROM pg_subscription WHERE subname = 'sub'", '0/0', 10),
	'SKIP: subskiplsn is cleared');
my $l = $lsn // '?';
ok( pa_wait_log_for($sub, qr/LOG:  logical replication starts skipping transaction at LSN \Q$l\E\n/,
		$skippos, 10),
	"SKIP: the log says it starts skipping the transaction at $l");
my $done_re =
  $engine
  ? qr/LOG:  done skipping logical replication transaction finished at \Q$l\E\n/
  : qr/LOG:  logical replication completed skipping transaction at LSN \Q$l\E\n/;
ok(pa_wait_log_for($sub, $done_re, $skippos, 10), 'SKIP: the log says it is done skipping');
$pub->safe_psql('postgres', "INSERT INTO conf_tab VALUES (14, 14, 'later')");
pa_catchup($pub, 'sub');
sub_rows_are('conf_tab', 'id BETWEEN 10 AND 14', '(11,110,sub-local),(13,13,after),(14,14,later)',
	'SKIP: a later transaction arrives');
my $n_skip = scalar conflict_msgs($pos, 'insert_exists', $skip->{xid}, !$engine);
if ($engine)
{
	counters_are('sub', "$n_skip,0,0,0,0,0,0",
		"SKIP: stat_conflicts counts the $n_skip attempts as insert_exists");
}
# make both sides equal again (locally: the publisher's rows are not touched)
$sub->safe_psql('postgres', q{
DELETE FROM conf_tab WHERE id = 11;
INSERT INTO conf_tab VALUES (10, 10, 'skip-a'), (11, 11, 'skip-b'), (12, 12, 'skip-c');
INSERT INTO par_tab VALUES (-1, 'skipped');
});
pa_check_equal($pub, $sub, 'conf_tab', 'par_tab');

# ================================================================ 2. disable_on_error
$pos = pa_log_pos($sub);
$lxid = sub_local("INSERT INTO doe_tab VALUES (1, 'sub-local')");
my $doe = pub_txn("INSERT INTO doe_tab VALUES (1, 'pub'); INSERT INTO doe_tab VALUES (2, 'pub')");
my $dis_re =
  $engine
  ? qr/LOG:  subscription "doe_sub" has been disabled because of an error\n/
  : qr/LOG:  (?:logical replication )?subscription "doe_sub" has been disabled (?:because of|due to) an error\n/;
ok(pa_wait_log_for($sub, $dis_re, $pos, 60),
	'disable_on_error: "subscription "doe_sub" has been disabled because of an error"')
  or diag("errors logged:\n" . pa_log_errors($sub, $pos, 20));
check_error('disable_on_error: insert_exists', $pos, $doe,
	subname => 'doe_sub', rel => 'doe_tab', msgtype => 'INSERT',
	detail => qr/\AKey already exists in unique index "doe_tab_pkey", modified locally in transaction $lxid at $TS\.\nKey \(id\)=\(1\); existing local row \(1, sub-local\); remote row \(1, pub\)\.\z/);
ok(pa_poll_for($sub, "SELECT subenabled FROM pg_subscription WHERE subname = 'doe_sub'", 'f', 10),
	'disable_on_error: the subscription is disabled');
ok( pa_poll_for($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = 'doe_sub' AND pid IS NOT NULL",
		'0', 10),
	'disable_on_error: no apply worker runs for it');
SKIP:
{
	skip 'PA_NO_ENGINE set', 1 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT count(*) FROM parallel_apply.stat_subscription WHERE subname = 'doe_sub'",
			'0', 10),
		'disable_on_error: detached (no stat_subscription row)');
}
my $n_doe = scalar conflict_msgs($pos, undef, $doe->{xid}, !$engine);
ok($n_doe >= 1 && $n_doe <= 2, "disable_on_error: the conflict is logged once or twice ($n_doe)");
$pub->safe_psql('postgres', "INSERT INTO doe_tab VALUES (3, 'pub')");
is(rows($sub, 'doe_tab', 'true'), '(1,sub-local)', 'disable_on_error: nothing applied');
# a retry would have had time to happen by now (retry_interval 200 ms)
ok( !pa_wait_log_for($sub, qr/in transaction $doe->{xid}, finished at/,
		pa_log_pos($sub), 2),
	'disable_on_error: no further attempt while disabled');
is(scalar conflict_msgs($pos, undef, $doe->{xid}, !$engine), $n_doe,
	'disable_on_error: no further conflict logged');
SKIP:
{
	skip 'conflict_history is the engine\'s', 1 unless $engine;
	is(hist("remote_xid = '$doe->{xid}'::xid", "subname || ' ' || conflict_type || ' ' || attempts"),
		"doe_sub insert_exists $n_doe", 'disable_on_error: conflict_history counts the attempts');
}
$sub->safe_psql('postgres', 'DELETE FROM doe_tab WHERE id = 1');
if ($engine)
{
	pa_attach($sub, 'doe_sub');
}
else
{
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION doe_sub ENABLE');
}
pa_catchup($pub, 'doe_sub');
pa_check_equal($pub, $sub, 'doe_tab');
is(rows($sub, 'doe_tab', 'true'), '(1,pub),(2,pub),(3,pub)', 'disable_on_error: caught up after the fix');
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION doe_sub');

# ================================================================ 3. one conflict among parallel transactions
# Transactions 1..150 and 151..300 insert into par_tab (every third one also
# updates a row two before it, within its own half); in between, the one
# that collides with a local row.  All of them arrive as a backlog.
$lxid = sub_local("INSERT INTO par_tab VALUES (1000, 'sub-local')");
pa_stop_applying($sub, 'sub');
my $lsn0 = $pub->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
sub par_load
{
	my ($from, $to) = @_;
	my $sql = '';
	for my $i ($from .. $to)
	{
		$sql .= "INSERT INTO par_tab VALUES ($i, 'row $i');\n";
		$sql .= "UPDATE par_tab SET v = v || ' updated' WHERE id = " . ($i - 2) . ";\n"
		  if $i % 3 == 0 && $i - 2 >= $from;
	}
	$pub->safe_psql('postgres', $sql);
	return;
}
par_load(1, 150);
my $par = pub_txn("INSERT INTO par_tab VALUES (1000, 'pub')");
par_load(151, 300);
$pos = pa_log_pos($sub);
# hand it back without waiting for 'streaming' (it fails at once)
if ($engine)
{
	$sub->safe_psql('postgres', "SELECT parallel_apply.attach('sub')");
}
else
{
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub ENABLE');
}
$lsn = check_error('parallel: insert_exists', $pos, $par,
	subname => 'sub', rel => 'par_tab', msgtype => 'INSERT',
	detail => qr/\AKey already exists in unique index "par_tab_pkey", modified locally in transaction $lxid at $TS\.\nKey \(id\)=\(1000\); existing local row \(1000, sub-local\); remote row \(1000, pub\)\.\z/);
my $before_hash = $pub->safe_psql('postgres', pa_table_hash_sql('(SELECT * FROM par_tab WHERE id BETWEEN 1 AND 150) s', '*'));
ok( pa_poll_for($sub,
		pa_table_hash_sql('(SELECT * FROM par_tab WHERE id BETWEEN 1 AND 150) s', '*'),
		$before_hash, 30),
	'parallel: every transaction before the conflicting one is applied');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM par_tab WHERE id BETWEEN 151 AND 300'),
	'0', 'parallel: none after it is committed (commit order)');
SKIP:
{
	skip 'conflict_history is the engine\'s', 2 unless $engine;
	ok( pa_poll_for($sub,
			"SELECT count(*) > 0 FROM parallel_apply.conflict_history WHERE finish_lsn > '$lsn0'",
			't', 10),
		'parallel: the conflict is recorded');
	is( hist("finish_lsn > '$lsn0'",
			"string_agg(DISTINCT remote_xid || ' ' || finish_lsn || ' ' || conflict_type || ' ' || relation || ' ' || key::text, ',')"),
		"$par->{xid} " . ($lsn // '?') . ' insert_exists public.par_tab {"id": 1000}',
		'parallel: conflict_history names only the conflicting transaction, its xid and finish LSN');
}
$sub->safe_psql('postgres', 'DELETE FROM par_tab WHERE id = 1000');
pa_catchup($pub, 'sub');
pa_wait_engine($sub, 'sub');
pa_check_equal($pub, $sub, 'par_tab');
my @wrong = grep { ($_->{context} // '') !~ /in transaction $par->{xid}, finished at / }
  conflict_msgs($pos, undef, undef, !$engine);
is(scalar @wrong, 0, 'parallel: no other transaction logged a conflict')
  or diag(join("\n", map { $_->{text} } @wrong));
my $n_par = scalar conflict_msgs($pos, 'insert_exists', $par->{xid}, !$engine);
cmp_ok($n_par, '>=', 1, "parallel: $n_par attempts logged");
if ($engine)
{
	counters_are('sub', "$n_par,0,0,0,0,0,0",
		"parallel: stat_conflicts counts $n_par insert_exists (since the attach), nothing else");
	is(hist("finish_lsn > '$lsn0'", 'string_agg(attempts::text, \',\')'), $n_par,
		'parallel: conflict_history.attempts = the attempts logged');
}

# ================================================================ 4. no false conflicts
pa_stop_applying($sub, 'sub');
$lsn0 = $pub->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
{
	my @w;
	# rows 1..100, u = id
	push @w, "INSERT INTO dep_tab VALUES ($_, $_, 0);" for 1 .. 100;
	# chains on one key each, interleaved two by two: insert, update,
	# delete, re-insert, move to a new key, update there
	for my $k (201 .. 300)
	{
		push @w,
		  "INSERT INTO dep_tab VALUES ($k, $k, 0);",
		  "UPDATE dep_tab SET v = v + 1 WHERE id = $k;",
		  "DELETE FROM dep_tab WHERE id = $k;",
		  "INSERT INTO dep_tab VALUES ($k, $k, 1);",
		  "UPDATE dep_tab SET id = id + 1000 WHERE id = $k;",
		  "UPDATE dep_tab SET v = v + 1 WHERE id = " . ($k + 1000) . ';';
	}
	# UNIQUE values handed from row to row: each transaction takes the
	# value the previous one freed
	push @w, 'UPDATE dep_tab SET u = NULL WHERE id = 1;';
	push @w, 'UPDATE dep_tab SET u = ' . ($_ - 1) . " WHERE id = $_;" for 2 .. 100;
	push @w, 'UPDATE dep_tab SET u = 100 WHERE id = 1;';
	# primary keys shifted up by one, each into the key the previous freed
	push @w, "UPDATE dep_tab SET id = id + 1 WHERE id = $_;" for reverse 1 .. 100;
	# ck_tab: a row deleted and its id inserted again under another
	# publisher key, then updated through it
	for my $id (1 .. 60)
	{
		push @w,
		  "INSERT INTO ck_tab VALUES ($id, 1, 0);",
		  "UPDATE ck_tab SET v = 1 WHERE id = $id;",
		  "DELETE FROM ck_tab WHERE id = $id;",
		  "INSERT INTO ck_tab VALUES ($id, 2, 0);",
		  "UPDATE ck_tab SET v = 2 WHERE id = $id;";
	}
	note scalar(@w) . ' transactions';
	$pub->safe_psql('postgres', join("\n", @w));
}
$pos = pa_log_pos($sub);
pa_resume_applying($sub, 'sub');
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, 'dep_tab', 'ck_tab');
if ($engine)
{
	my $busy = $sub->safe_psql('postgres',
		"SELECT count(*) FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type <> 'leader' AND transactions_applied > 0");
	note 'dependencies: stat_workers ' . $sub->safe_psql('postgres',
		"SELECT string_agg(worker_type || ' ' || worker_id || ': ' || transactions_applied, ', ' ORDER BY worker_type, worker_id) FROM parallel_apply.stat_workers WHERE subname = 'sub'")
	  . '; stat_subscription ' . $sub->safe_psql('postgres',
		"SELECT 'dependency_waits ' || dependency_waits || ', serial_retries ' || serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
	cmp_ok($busy, '>=', 2, 'dependencies: the backlog was applied by several workers');
}
my @c = conflict_msgs($pos, undef, undef, !$engine);
is(scalar @c, 0, 'dependencies: no conflict logged')
  or diag(join("\n", map { $_->{text} } @c[ 0 .. ($#c < 9 ? $#c : 9) ]));
SKIP:
{
	skip 'conflict_history and stat_conflicts are the engine\'s', 2 unless $engine;
	is(hist("finish_lsn > '$lsn0'", 'count(*)'), '0', 'dependencies: no conflict recorded');
	counters_are('sub', '0,0,0,0,0,0,0', 'dependencies: no conflict counted');
}

# ================================================================ 5. column privileges
# alice owns the subscription, may INSERT, UPDATE and DELETE, and SELECT
# only (id, u).  Only an INSERT can conflict then: PostgreSQL (15 as 18)
# requires table-level SELECT to look a row up for an UPDATE or DELETE
# (FindReplTupleInLocalRel), which fails with "permission denied" first.
$sub->safe_psql('postgres', q{
CREATE ROLE alice LOGIN;
GRANT INSERT, UPDATE, DELETE ON conf_tab, par_tab, dep_tab TO alice;
GRANT SELECT (id, u) ON conf_tab TO alice;
});
pa_set_owner($sub, 'sub', 'alice', 5);

# one insert_exists (or multiple_unique_conflicts) as alice: the line, the
# history row(s) (each [where, sql condition]), the fix
sub owner_conflict
{
	my (%s) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $label = "owner with SELECT $s{privs}: $s{type}";
	$pos = pa_log_pos($sub);
	my $lx = sub_local($s{local});
	my $t = pub_txn($s{remote});
	my $detail = $s{detail};
	$detail =~ s/LXID/$lx/g;
	check_error($label, $pos, $t,
		subname => 'sub', rel => 'conf_tab', msgtype => 'INSERT', type => $s{type},
		detail => qr/\A$detail\z/);
	SKIP:
	{
		skip 'conflict_history is the engine\'s', scalar @{ $s{history} } unless $engine;
		foreach my $h (@{ $s{history} })
		{
			my ($w, $cond) = @$h;
			$w = "remote_xid = '$t->{xid}'::xid AND conflict_type = '$s{type}'$w";
			ok( pa_poll_for($sub,
					"SELECT count(*) = 1 AND bool_and(resolution = 'error' AND NOT (coalesce(key ? 'v', false) OR coalesce(local_row ? 'v', false) OR coalesce(remote_row ? 'v', false) OR coalesce(replica_identity ? 'v', false)) AND $cond) FROM parallel_apply.conflict_history WHERE $w",
					't', 10),
				"$label: conflict_history row without what alice may not read ($cond)")
			  or diag(hist($w, 'to_jsonb(h)'));
		}
	}
	$sub->safe_psql('postgres', $s{fix});
	pa_catchup($pub, 'sub');
	is(rows($sub, 'conf_tab', $s{ids}), rows($pub, 'conf_tab', $s{ids}),
		"$label: applied after the fix");
	return;
}

my $loc = "modified locally in transaction LXID at $TS";
owner_conflict(
	privs => '(id, u)', type => 'insert_exists',
	local => "INSERT INTO conf_tab VALUES (34, 340, 'sub-local')",
	remote => "INSERT INTO conf_tab VALUES (34, 34, 'pub')",
	detail => qq{Key already exists in unique index "conf_tab_pkey", $loc\\.\\nKey \\(id\\)=\\(34\\); existing local row \\(id, u\\) = \\(34, 340\\); remote row \\(id, u\\) = \\(34, 34\\)\\.},
	history => [
		[ '', q{key = '{"id": 34}' AND local_row = '{"id": 34, "u": 340}' AND remote_row = '{"id": 34, "u": 34}'} ] ],
	fix => 'DELETE FROM conf_tab WHERE id = 34 AND u = 340', ids => 'id = 34');
owner_conflict(
	privs => '(id, u)', type => 'multiple_unique_conflicts',
	local => "INSERT INTO conf_tab VALUES (35, 350, 'sub-local-a'), (360, 36, 'sub-local-b')",
	remote => "INSERT INTO conf_tab VALUES (35, 36, 'pub')",
	detail => qq{Key already exists in unique index "conf_tab_pkey", $loc\\.\\nKey \\(id\\)=\\(35\\); existing local row \\(id, u\\) = \\(35, 350\\); remote row \\(id, u\\) = \\(35, 36\\)\\.\\nKey already exists in unique index "conf_tab_u_key", $loc\\.\\nKey \\(u\\)=\\(36\\); existing local row \\(id, u\\) = \\(360, 36\\); remote row \\(id, u\\) = \\(35, 36\\)\\.},
	history => [
		[ " AND index_name = 'conf_tab_pkey'", q{key = '{"id": 35}' AND local_row = '{"id": 35, "u": 350}' AND remote_row = '{"id": 35, "u": 36}'} ],
		[ " AND index_name = 'conf_tab_u_key'", q{key = '{"u": 36}' AND local_row = '{"id": 360, "u": 36}' AND remote_row = '{"id": 35, "u": 36}'} ] ],
	fix => 'DELETE FROM conf_tab WHERE id IN (35, 360)', ids => 'id IN (35, 360)');

# SELECT (u) only: the key (id) is left out
$sub->safe_psql('postgres', 'REVOKE SELECT (id) ON conf_tab FROM alice');
owner_conflict(
	privs => '(u)', type => 'insert_exists',
	local => "INSERT INTO conf_tab VALUES (37, 370, 'sub-local')",
	remote => "INSERT INTO conf_tab VALUES (37, 37, 'pub')",
	detail => qq{Key already exists in unique index "conf_tab_pkey", $loc\\.\\nExisting local row \\(u\\) = \\(370\\); remote row \\(u\\) = \\(37\\)\\.},
	history => [
		[ '', q{coalesce(key, '{}') = '{}' AND local_row = '{"u": 370}' AND remote_row = '{"u": 37}'} ] ],
	fix => 'DELETE FROM conf_tab WHERE id = 37', ids => 'id = 37');

# no SELECT at all: no row values
$sub->safe_psql('postgres', 'REVOKE SELECT (u) ON conf_tab FROM alice');
owner_conflict(
	privs => '()', type => 'insert_exists',
	local => "INSERT INTO conf_tab VALUES (38, 380, 'sub-local')",
	remote => "INSERT INTO conf_tab VALUES (38, 38, 'pub')",
	detail => qq{Key already exists in unique index "conf_tab_pkey", $loc\\.},
	history => [
		[ '', q{coalesce(key, '{}') = '{}' AND coalesce(local_row, '{}') = '{}' AND coalesce(remote_row, '{}') = '{}'} ] ],
	fix => 'DELETE FROM conf_tab WHERE id = 38', ids => 'id = 38');

# an UPDATE without table-level SELECT: refused as PostgreSQL 15 refuses it,
# no conflict; applied once alice may SELECT
$pos = pa_log_pos($sub);
$r = pub_txn("UPDATE conf_tab SET v = 'pub-upd' WHERE id = 34");
{
	my $perm;
	pa_wait_until(60, sub {
		($perm) = grep { $_->{level} eq 'ERROR' && $_->{msg} eq 'permission denied for table conf_tab' }
		  pa_log_messages($sub, $pos);
		defined $perm });
	check_line($perm, 'owner without table SELECT: UPDATE',
		level => 'ERROR', sqlstate => '42501',
		context => ctx_re('sub', 'conf_tab', 'UPDATE', $r->{xid}));
	my @c = conflict_msgs($pos, undef, undef, !$engine);
	is(scalar @c, 0, 'owner without table SELECT: UPDATE: no conflict reported')
	  or diag(join("\n", map { $_->{text} } @c));
}
$sub->safe_psql('postgres', 'GRANT SELECT ON conf_tab TO alice');
pa_catchup($pub, 'sub');
is(rows($sub, 'conf_tab', 'id = 34'), '(34,34,pub-upd)', 'owner with table SELECT: the UPDATE applies');

SKIP:
{
	skip 'reset_subscription_stats is the engine\'s', 2 unless $engine;
	my ($out, $err) = ('', '');
	my $ret = $sub->psql('postgres',
		"SET ROLE alice;\nSELECT parallel_apply.reset_subscription_stats('sub');",
		stdout => \$out, stderr => \$err);
	is($ret . $err, '0', 'the owner (not a superuser) may reset the counters');
	counters_are('sub', '0,0,0,0,0,0,0', 'counters reset');
}

# ================================================================ 6. retried
# A LOG-level conflict (update_missing) of a transaction whose later change
# fails (insert_exists) is reported once, when the transaction is finally
# applied, not at every failed attempt: the attempts are rolled back and the
# change is met again.
SKIP:
{
	skip 'the engine\'s conflict reports', 8 unless $engine;
	$pub->safe_psql('postgres', "INSERT INTO conf_tab VALUES (70, 70, 'pub')");
	pa_catchup($pub, 'sub');
	$sub->safe_psql('postgres', 'DELETE FROM conf_tab WHERE id = 70');
	$sub->safe_psql('postgres', "INSERT INTO conf_tab VALUES (71, 710, 'sub-local')");
	$sub->safe_psql('postgres', "SELECT parallel_apply.reset_subscription_stats('sub')");
	$pos = pa_log_pos($sub);
	my $t = pub_txn(q{
UPDATE conf_tab SET v = 'pub-upd' WHERE id = 70;
INSERT INTO conf_tab VALUES (71, 71, 'pub')});
	my @errors;
	ok( pa_wait_until(60, sub {
				@errors = conflict_msgs($pos, 'insert_exists', $t->{xid});
				@errors >= 3 }),
		'retried: the insert_exists ERROR was met three times');
	my @missing = conflict_msgs($pos, 'update_missing', $t->{xid});
	is(scalar @missing, 0, 'retried: no update_missing reported while the transaction fails');
	is( hist("remote_xid = '$t->{xid}'::xid AND conflict_type = 'update_missing'", 'count(*)'),
		'0', 'retried: no update_missing history row while it fails');

	$sub->safe_psql('postgres', 'DELETE FROM conf_tab WHERE id = 71');
	sub_rows_are('conf_tab', 'id = 71', '(71,71,pub)', 'retried: applied after the fix', 30);
	ok( pa_wait_until(10, sub {
				@missing = conflict_msgs($pos, 'update_missing', $t->{xid});
				@missing >= 1 }),
		'retried: update_missing reported once the transaction applied');
	@errors = conflict_msgs($pos, 'insert_exists', $t->{xid});
	is(scalar(conflict_msgs($pos, 'update_missing', $t->{xid})), 1,
		'retried: update_missing logged exactly once');
	counters_are('sub', join(',', scalar(@errors), 0, 0, 1, 0, 0, 0),
		'retried: insert_exists counted per attempt, update_missing once');
	is( hist("remote_xid = '$t->{xid}'::xid AND conflict_type = 'update_missing'",
			"attempts || ',' || resolution || ',' || change"),
		'1,skipped,1', 'retried: one update_missing history row, one attempt');
}

# ---------------------------------------------------------------- end
pa_check_equal($pub, $sub, 'par_tab', 'dep_tab', 'ck_tab');
if ($engine)
{
	is(pa_stat($sub, 'sub', 'state'), 'streaming', 'the engine still applies sub');
}
pa_check_log_clean($pub);
pa_check_log_clean($sub);
note sprintf('031_conflict_resolution took %d s', time - $t_start);

$sub->stop;
$pub->stop;
done_testing();
