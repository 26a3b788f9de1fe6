
# Copyright (c) parallel_apply authors
#
# Conflict detection, logging, counting and recording (issue 13), checked
# against PostgreSQL 18.6's own log lines (captured verbatim in the
# project's shared notes, pg18-conflicts.md): both sides have conf_tab (id
# int PRIMARY KEY, u int UNIQUE, v text), track_commit_timestamp = on,
# lc_messages = C and a log_line_prefix with the SQLSTATE (%e).
#
#  1. each of the seven conflict types, provoked exactly as in the notes:
#     its log line matched whole (message, DETAIL with its tab-indented
#     second line, CONTEXT naming the remote xid and the transaction's finish
#     LSN, which must be the LSN of its COMMIT record on the publisher), level
#     and SQLSTATE (ERROR 23505 for the *_exists types and
#     multiple_unique_conflicts, LOG 40001 for the others); its counter in
#     parallel_apply.stat_conflicts (an ERROR type counts every attempt);
#     its row in parallel_apply.conflict_history (type, relation, index,
#     key/local_row/remote_row/replica_identity, resolution, finish_lsn as in
#     the CONTEXT, remote xid and commit time, local xid and commit time,
#     local_origin NULL for a row modified locally, attempts = the attempts
#     logged; insert_exists is left to fail three times first); the rows on
#     both sides afterwards as in the notes (an ERROR type is resolved by
#     deleting the local row: the transaction then applies on a retry);
#  2. multiple_unique_conflicts against two different local rows: both index
#     entries in the DETAIL, one history row per index;
#  3. pg_stat_subscription_stats.apply_error_count counts the ERROR attempts;
#  4. parallel_apply.reset_subscription_stats(): refused (42501) for a role
#     that does not own the subscription, zeroes the counters and sets
#     stats_reset for a superuser;
#  5. parallel_apply.conflict_log = 'log' (no history row) and 'table' (no LOG
#     line for a *_missing conflict, a history row; an ERROR type raises
#     "conflict detected on relation ..." with the DETAIL "The conflict is
#     recorded in parallel_apply.conflict_history.");
#  6. after a restart with track_commit_timestamp = off: no *_origin_differs
#     (an UPDATE or DELETE of a locally modified row applies silently), the
#     insert_exists DETAIL says "modified in transaction N." without a time,
#     delete_missing as before.
# With PA_NO_ENGINE=1 (PostgreSQL 15's own worker) the rows on both sides,
# the ERRORs (PostgreSQL 15's "duplicate key value ..." with the same
# CONTEXT), their finish LSNs and apply_error_count are checked; what only the
# engine does (conflict lines, counters, history, the GUC, the function) is
# skipped.
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

pa_both($pub, $sub, 'CREATE TABLE conf_tab (id int PRIMARY KEY, u int UNIQUE, v text)');
pa_subscribe($pub, $sub, 'cf_sub', tables => ['conf_tab']);
pa_attach($sub, 'cf_sub');

# ---------------------------------------------------------------- helpers
my %cnt = map { $_ => 0 } @CONFLICT_TYPES;    # what stat_conflicts must show
my $error_attempts = 0;    # ERROR attempts logged, for apply_error_count

# With $id, the row ($id, $id, 'pub') is first inserted on the publisher and
# replicated.  Then $local runs on the subscriber and $remote on the
# publisher, one transaction each: the subscriber's log position before the
# two, the local xid and the remote transaction (pub_txn).
sub local_then_remote
{
	my ($local, $remote, $id) = @_;
	if (defined $id)
	{
		$pub->safe_psql('postgres', "INSERT INTO conf_tab VALUES ($id, $id, 'pub')");
		pa_catchup($pub, 'cf_sub');
	}
	my $pos = pa_log_pos($sub);
	my $lxid = sub_local($local);
	return ($pos, $lxid, pub_txn($remote));
}

# The history row(s) selected by $where: exactly one, each column meeting its
# expectation (an SQL expression compared with IS NOT DISTINCT FROM, or a
# predicate when it starts with an operator or IS).
sub check_history
{
	my ($label, $where, %exp) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	if (!is(hist($where, 'count(*)'), '1', "$label: one conflict_history row"))
	{
		diag("conflict_history:\n" . $sub->safe_psql('postgres',
			'SELECT to_jsonb(h) FROM parallel_apply.conflict_history h ORDER BY "time"'));
		return 0;
	}
	my @cols = sort keys %exp;
	my @preds = map {
		my $e = $exp{$_};
		$e =~ /^(?:[<>=!]|IS |BETWEEN )/ ? "coalesce($_ $e, false)" : "$_ IS NOT DISTINCT FROM ($e)"
	} @cols;
	my @v = split /\|/, hist($where, join(', ', @preds));
	my @bad = grep { ($v[$_] // '') ne 't' } 0 .. $#cols;
	return ok(!@bad, "$label: conflict_history row (" . join(', ', @cols) . ')')
	  || diag("wrong: " . join('; ', map { "$cols[$_] (expected $exp{$cols[$_]})" } @bad)
		  . "\nrow: " . hist($where, 'jsonb_pretty(to_jsonb(h))'));
}

sub check_counters
{
	my ($label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	return unless $engine;
	return counters_are('cf_sub', join(',', map { $cnt{$_} } @CONFLICT_TYPES),
		"$label: stat_conflicts");
}

sub check_rows
{
	my ($label, $ids, $want_pub, $want_sub) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is(rows($pub, 'conf_tab', "id IN ($ids)"), $want_pub, "$label: rows on the publisher");
	return sub_rows_are('conf_tab', "id IN ($ids)", $want_sub, $label);
}

# The history columns of a local row last modified by local transaction
# $lxid (no replication origin), which has a commit timestamp
sub modified_locally
{
	my ($lxid) = @_;
	return (
		local_origin => 'NULL',
		local_xid => "'$lxid'::xid",
		local_commit_time => "pg_xact_commit_timestamp('$lxid'::xid)");
}

# The common part of a history row
sub hist_base
{
	my ($r, $lsn, $type) = @_;
	return (
		subid => subid('cf_sub'),
		subname => "'cf_sub'",
		relid => "'conf_tab'::regclass::oid",
		relation => "'public.conf_tab'",
		conflict_type => "'$type'",
		finish_lsn => defined $lsn ? "'$lsn'::pg_lsn" : 'NULL',
		change => 1,
		remote_commit_time => "'$r->{commit_time}'::timestamptz",
		'"time"' => 'IS NOT NULL',
		last_time => '>= "time"');
}

# An ERROR conflict (label: its type unless given): check its first line and
# the history row, run $fix, wait until the transaction has applied, then
# check that counters and attempts match the attempts logged.  Returns the
# finish LSN.
sub error_conflict
{
	my (%s) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($type, $r, $pos) = @s{qw(type r pos)};
	my $label = $s{label} // $type;
	my $lsn = check_error($label, $pos, $r,
		subname => 'cf_sub', rel => 'conf_tab', msgtype => $s{msgtype}, type => $type,
		detail => $s{detail});
	my $where = "remote_xid = '$r->{xid}'::xid AND conflict_type = '$type'";
	if ($engine)
	{
		pa_poll_for($sub, "SELECT count(*) > 0 FROM parallel_apply.conflict_history WHERE $where", 't', 10);
		foreach my $h (@{ $s{history} })
		{
			my ($w, %cols) = @$h;
			check_history("$label$w->[0]", "$where$w->[1]", hist_base($r, $lsn, $type),
				resolution => "'error'", attempts => '>= 1', %cols);
		}
	}
	if ($s{min_attempts})
	{
		# let it be retried a few times before the fix
		ok( pa_wait_until(60,
				sub { conflict_msgs($pos, $type, $r->{xid}, !$engine) >= $s{min_attempts} }),
			"$label: retried (at least $s{min_attempts} attempts logged)");
	}
	is(rows($sub, 'conf_tab', "id IN ($s{ids})"), $s{before},
		"$label: not applied while the conflict lasts");

	$sub->safe_psql('postgres', $s{fix});
	pa_catchup($pub, 'cf_sub');
	check_rows($label, $s{ids}, $s{after}, $s{after});

	my $n = scalar conflict_msgs($pos, $type, $r->{xid}, !$engine);
	note "$label: $n attempts logged";
	cmp_ok($n, '>=', 1, "$label: at least one attempt logged");
	$error_attempts += $n;
	$cnt{$type} += $n;
	check_counters($label);
	if ($engine)
	{
		ok( pa_poll_for($sub,
				"SELECT string_agg(attempts::text, ',') FROM parallel_apply.conflict_history WHERE $where",
				join(',', ($n) x scalar @{ $s{history} }), 10),
			"$label: conflict_history.attempts = $n, the attempts logged");
		is( hist($where, 'bool_and(last_time ' . ($n > 1 ? '>' : '=') . ' "time")'),
			't', "$label: conflict_history.last_time " . ($n > 1 ? 'after' : 'equal to') . ' time');
	}
	return $lsn;
}

# A LOG conflict (label: its type unless given): the transaction applies;
# check line, history and counters.
sub log_conflict
{
	my (%s) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($type, $r, $pos) = @s{qw(type r pos)};
	my $label = $s{label} // $type;
	pa_catchup($pub, 'cf_sub');
	check_rows($label, $s{ids}, $s{after_pub}, $s{after_sub});
	SKIP:
	{
		skip 'PostgreSQL 15 does not log or record this conflict', 9 unless $engine;
		my $m = wait_conflict($pos, $type, $r->{xid});
		my $lsn = check_line($m, $label,
			level => 'LOG', sqlstate => '40001',
			msg => conflict_msg_re('conf_tab', $type),
			detail => $s{detail},
			context => ctx_re('cf_sub', 'conf_tab', $s{msgtype}, $r->{xid}));
		SKIP:
		{
			skip 'pg_walinspect not available', 1 unless walinspect();
			is($lsn, $r->{lsn}, "$label: the finish LSN is that of the transaction's COMMIT record");
		}
		is(scalar conflict_msgs($pos, undef, undef), 1, "$label: logged once, no other conflict");
		check_history($label, "remote_xid = '$r->{xid}'::xid",
			hist_base($r, $lsn, $type), attempts => '= 1', %{ $s{history} });
		$cnt{$type}++;
		check_counters($label);
	}
	return;
}

my $pos;
my ($r, $lxid);

# ---------------------------------------------------------------- insert_exists
($pos, $lxid, $r) = local_then_remote("INSERT INTO conf_tab VALUES (1, 101, 'sub-local')",
	"INSERT INTO conf_tab VALUES (1, 1, 'pub')");
error_conflict(
	type => 'insert_exists', r => $r, pos => $pos, msgtype => 'INSERT', ids => '1', min_attempts => 3,
	detail => qr/\AKey already exists in unique index "conf_tab_pkey", modified locally in transaction $lxid at ($TS)\.\nKey \(id\)=\(1\); existing local row \(1, 101, sub-local\); remote row \(1, 1, pub\)\.\z/,
	history => [
		[ [ '', '' ],
			index_name => "'conf_tab_pkey'",
			key => q('{"id": 1}'::jsonb),
			local_row => q('{"id": 1, "u": 101, "v": "sub-local"}'::jsonb),
			remote_row => q('{"id": 1, "u": 1, "v": "pub"}'::jsonb),
			replica_identity => 'NULL',
			modified_locally($lxid) ] ],
	before => '(1,101,sub-local)',
	fix => 'DELETE FROM conf_tab WHERE id = 1',
	after => '(1,1,pub)');
if ($engine)
{
	# the time in the DETAIL is the local transaction's commit time
	my ($m) = conflict_msgs($pos, 'insert_exists', $r->{xid});
	my ($ts) = defined $m ? $m->{detail} =~ /at ($TS)\.\n/ : ();
	is($ts, $sub->safe_psql('postgres', "SELECT pg_xact_commit_timestamp('$lxid'::xid)"),
		'insert_exists: the DETAIL gives the commit time of the local transaction');
}

# ---------------------------------------------------------------- update_exists
($pos, $lxid, $r) = local_then_remote("INSERT INTO conf_tab VALUES (200, 20, 'sub-local')",
	'UPDATE conf_tab SET u = 20 WHERE id = 2', 2);
error_conflict(
	type => 'update_exists', r => $r, pos => $pos, msgtype => 'UPDATE', ids => '2, 200',
	detail => qr/\AKey already exists in unique index "conf_tab_u_key", modified locally in transaction $lxid at $TS\.\nKey \(u\)=\(20\); existing local row \(200, 20, sub-local\); remote row \(2, 20, pub\); replica identity \(id\)=\(2\)\.\z/,
	history => [
		[ [ '', '' ],
			index_name => "'conf_tab_u_key'",
			key => q('{"u": 20}'::jsonb),
			local_row => q('{"id": 200, "u": 20, "v": "sub-local"}'::jsonb),
			remote_row => q('{"id": 2, "u": 20, "v": "pub"}'::jsonb),
			replica_identity => q('{"id": 2}'::jsonb),
			modified_locally($lxid) ] ],
	before => '(2,2,pub),(200,20,sub-local)',
	fix => 'DELETE FROM conf_tab WHERE id = 200',
	after => '(2,20,pub)');

# ---------------------------------------------------------------- update_missing
($pos, undef, $r) = local_then_remote('DELETE FROM conf_tab WHERE id = 3',
	"UPDATE conf_tab SET v = 'pub-upd' WHERE id = 3", 3);
log_conflict(
	type => 'update_missing', r => $r, pos => $pos, msgtype => 'UPDATE', ids => '3',
	detail => qr/\ACould not find the row to be updated\.\nRemote row \(3, 3, pub-upd\); replica identity \(id\)=\(3\)\.\z/,
	history => {
		index_name => 'NULL',
		key => 'NULL',
		local_row => 'NULL',
		remote_row => q('{"id": 3, "u": 3, "v": "pub-upd"}'::jsonb),
		replica_identity => q('{"id": 3}'::jsonb),
		local_origin => 'NULL',
		local_xid => 'NULL',
		local_commit_time => 'NULL',
		resolution => "'skipped'" },
	after_pub => '(3,3,pub-upd)', after_sub => '');

# ---------------------------------------------------------------- delete_missing
($pos, undef, $r) = local_then_remote('DELETE FROM conf_tab WHERE id = 4',
	'DELETE FROM conf_tab WHERE id = 4', 4);
log_conflict(
	type => 'delete_missing', r => $r, pos => $pos, msgtype => 'DELETE', ids => '4',
	detail => qr/\ACould not find the row to be deleted\.\nReplica identity \(id\)=\(4\)\.\z/,
	history => {
		index_name => 'NULL',
		key => 'NULL',
		local_row => 'NULL',
		remote_row => 'NULL',
		replica_identity => q('{"id": 4}'::jsonb),
		local_origin => 'NULL',
		local_xid => 'NULL',
		resolution => "'skipped'" },
	after_pub => '', after_sub => '');

# ---------------------------------------------------------------- update_origin_differs
($pos, $lxid, $r) = local_then_remote("UPDATE conf_tab SET v = 'sub-local' WHERE id = 5",
	"UPDATE conf_tab SET v = 'pub-upd' WHERE id = 5", 5);
log_conflict(
	type => 'update_origin_differs', r => $r, pos => $pos, msgtype => 'UPDATE', ids => '5',
	detail => qr/\AUpdating the row that was modified locally in transaction $lxid at $TS\.\nExisting local row \(5, 5, sub-local\); remote row \(5, 5, pub-upd\); replica identity \(id\)=\(5\)\.\z/,
	history => {
		index_name => 'NULL',
		key => 'NULL',
		local_row => q('{"id": 5, "u": 5, "v": "sub-local"}'::jsonb),
		remote_row => q('{"id": 5, "u": 5, "v": "pub-upd"}'::jsonb),
		replica_identity => q('{"id": 5}'::jsonb),
		modified_locally($lxid),
		resolution => "'applied_remote'" },
	after_pub => '(5,5,pub-upd)', after_sub => '(5,5,pub-upd)');

# ---------------------------------------------------------------- delete_origin_differs
($pos, $lxid, $r) = local_then_remote("UPDATE conf_tab SET v = 'sub-local' WHERE id = 6",
	'DELETE FROM conf_tab WHERE id = 6', 6);
log_conflict(
	type => 'delete_origin_differs', r => $r, pos => $pos, msgtype => 'DELETE', ids => '6',
	detail => qr/\ADeleting the row that was modified locally in transaction $lxid at $TS\.\nExisting local row \(6, 6, sub-local\); replica identity \(id\)=\(6\)\.\z/,
	history => {
		index_name => 'NULL',
		key => 'NULL',
		local_row => q('{"id": 6, "u": 6, "v": "sub-local"}'::jsonb),
		remote_row => 'NULL',
		replica_identity => q('{"id": 6}'::jsonb),
		modified_locally($lxid),
		resolution => "'applied_remote'" },
	after_pub => '', after_sub => '');

# ---------------------------------------------------------------- multiple_unique_conflicts
($pos, $lxid, $r) = local_then_remote(
	"INSERT INTO conf_tab VALUES (7, 700, 'sub-local-a'), (800, 8, 'sub-local-b')",
	"INSERT INTO conf_tab VALUES (7, 8, 'pub')");
my $loc = "modified locally in transaction $lxid at $TS";
error_conflict(
	type => 'multiple_unique_conflicts', r => $r, pos => $pos, msgtype => 'INSERT', ids => '7, 800',
	detail => qr/\AKey already exists in unique index "conf_tab_pkey", $loc\.\nKey \(id\)=\(7\); existing local row \(7, 700, sub-local-a\); remote row \(7, 8, pub\)\.\nKey already exists in unique index "conf_tab_u_key", $loc\.\nKey \(u\)=\(8\); existing local row \(800, 8, sub-local-b\); remote row \(7, 8, pub\)\.\z/,
	history => [
		[ [ ' (conf_tab_pkey)', " AND index_name = 'conf_tab_pkey'" ],
			key => q('{"id": 7}'::jsonb),
			local_row => q('{"id": 7, "u": 700, "v": "sub-local-a"}'::jsonb),
			remote_row => q('{"id": 7, "u": 8, "v": "pub"}'::jsonb),
			replica_identity => 'NULL',
			modified_locally($lxid) ],
		[ [ ' (conf_tab_u_key)', " AND index_name = 'conf_tab_u_key'" ],
			key => q('{"u": 8}'::jsonb),
			local_row => q('{"id": 800, "u": 8, "v": "sub-local-b"}'::jsonb),
			remote_row => q('{"id": 7, "u": 8, "v": "pub"}'::jsonb),
			replica_identity => 'NULL',
			modified_locally($lxid) ] ],
	before => '(7,700,sub-local-a),(800,8,sub-local-b)',
	fix => 'DELETE FROM conf_tab WHERE id IN (7, 800)',
	after => '(7,8,pub)');
if ($engine)
{
	is( hist("remote_xid = '$r->{xid}'::xid", "string_agg(index_name, ',' ORDER BY index_name)"),
		'conf_tab_pkey,conf_tab_u_key',
		'multiple_unique_conflicts: one history row per index, nothing else for the transaction');
}

# ---------------------------------------------------------------- after the seven
check_rows('after the seven conflicts', '1, 2, 3, 4, 5, 6, 7, 200, 800',
	'(1,1,pub),(2,20,pub),(3,3,pub-upd),(5,5,pub-upd),(7,8,pub)',
	'(1,1,pub),(2,20,pub),(5,5,pub-upd),(7,8,pub)');
ok( pa_poll_for($sub,
		"SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'cf_sub'",
		$error_attempts, 10),
	"apply_error_count counts the $error_attempts ERROR attempts");
check_counters('after the seven conflicts');
if ($engine)
{
	is( $sub->safe_psql('postgres',
			"SELECT string_agg(conflict_type || '=' || n, ',' ORDER BY conflict_type) FROM (SELECT conflict_type, count(*) n FROM parallel_apply.conflict_history WHERE subname = 'cf_sub' GROUP BY 1) s"
		),
		'delete_missing=1,delete_origin_differs=1,insert_exists=1,multiple_unique_conflicts=2,update_exists=1,update_missing=1,update_origin_differs=1',
		'conflict_history: one row per conflict (two for multiple_unique_conflicts)');
}

# ---------------------------------------------------------------- reset_subscription_stats
SKIP:
{
	skip 'parallel_apply.reset_subscription_stats is the engine\'s', 6 unless $engine;
	is($sub->safe_psql('postgres', "SELECT stats_reset IS NULL FROM parallel_apply.stat_conflicts WHERE subname = 'cf_sub'"),
		't', 'stats_reset is NULL before the first reset');
	$sub->safe_psql('postgres', 'CREATE ROLE bob LOGIN');
	my ($out, $err) = ('', '');
	$sub->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE bob;\nSELECT parallel_apply.reset_subscription_stats('cf_sub');",
		stdout => \$out, stderr => \$err);
	like($err, qr/ERROR:  42501: must be owner of subscription cf_sub\n/,
		'reset_subscription_stats refused (42501) for a role that does not own the subscription');
	check_counters('after the refused reset');

	my $before = $sub->safe_psql('postgres', 'SELECT now()');
	$sub->safe_psql('postgres', "SELECT parallel_apply.reset_subscription_stats('cf_sub')");
	$cnt{$_} = 0 foreach @CONFLICT_TYPES;
	check_counters('after reset_subscription_stats');
	is( $sub->safe_psql('postgres',
			"SELECT stats_reset >= '$before' AND stats_reset <= now() FROM parallel_apply.stat_conflicts WHERE subname = 'cf_sub'"
		),
		't', 'reset_subscription_stats sets stats_reset');
	is($sub->safe_psql('postgres', 'SELECT count(*) FROM parallel_apply.conflict_history'),
		'8', 'the history is kept');
}

# ---------------------------------------------------------------- conflict_log
sub set_conflict_log
{
	my ($value) = @_;
	if (defined $value)
	{
		$sub->safe_psql('postgres', "ALTER SYSTEM SET parallel_apply.conflict_log = '$value'");
	}
	else
	{
		$sub->safe_psql('postgres', 'ALTER SYSTEM RESET parallel_apply.conflict_log');
	}
	$sub->safe_psql('postgres', 'SELECT pg_reload_conf()');
	# a new session sees the value once the postmaster has reloaded (and
	# signalled the engine's processes)
	pa_poll($sub, "SELECT current_setting('parallel_apply.conflict_log')",
		$value // 'both', "parallel_apply.conflict_log = " . ($value // 'both'));
	return;
}

SKIP:
{
	skip 'parallel_apply.conflict_log is the engine\'s', 14 unless $engine;
	is($sub->safe_psql('postgres', "SELECT current_setting('parallel_apply.conflict_log')"),
		'both', 'parallel_apply.conflict_log is both by default');

	# 'log': the line and the counter, no history row
	set_conflict_log('log');
	($pos, undef, $r) = local_then_remote('DELETE FROM conf_tab WHERE id = 40',
		'DELETE FROM conf_tab WHERE id = 40', 40);
	pa_catchup($pub, 'cf_sub');
	my $m = wait_conflict($pos, 'delete_missing', $r->{xid});
	check_line($m, "conflict_log = 'log': delete_missing",
		level => 'LOG', sqlstate => '40001',
		msg => conflict_msg_re('conf_tab', 'delete_missing'),
		detail => qr/\ACould not find the row to be deleted\.\nReplica identity \(id\)=\(40\)\.\z/,
		context => ctx_re('cf_sub', 'conf_tab', 'DELETE', $r->{xid}));
	is(hist("remote_xid = '$r->{xid}'::xid", 'count(*)'), '0', "conflict_log = 'log': no history row");
	$cnt{delete_missing}++;
	check_counters("conflict_log = 'log'");

	# 'table': a history row; no LOG line for the LOG types; an ERROR type
	# still raises its error, pointing at the table
	set_conflict_log('table');
	($pos, undef, $r) = local_then_remote('DELETE FROM conf_tab WHERE id = 41',
		"UPDATE conf_tab SET v = 'pub-upd' WHERE id = 41", 41);
	pa_catchup($pub, 'cf_sub');
	ok( pa_poll_for($sub,
			"SELECT count(*) FROM parallel_apply.conflict_history WHERE remote_xid = '$r->{xid}'::xid",
			'1', 10),
		"conflict_log = 'table': update_missing recorded");
	check_history("conflict_log = 'table': update_missing", "remote_xid = '$r->{xid}'::xid",
		hist_base($r, $r->{lsn} // hist("remote_xid = '$r->{xid}'::xid", 'finish_lsn'), 'update_missing'),
		remote_row => q('{"id": 41, "u": 41, "v": "pub-upd"}'::jsonb),
		replica_identity => q('{"id": 41}'::jsonb),
		resolution => "'skipped'");
	my @lines = conflict_msgs($pos, undef, undef);
	is(scalar @lines, 0, "conflict_log = 'table': no conflict line for update_missing")
	  or diag(join("\n", map { $_->{text} } @lines));
	$cnt{update_missing}++;
	check_counters("conflict_log = 'table': update_missing");

	($pos, undef, $r) = local_then_remote("INSERT INTO conf_tab VALUES (42, 420, 'sub-local')",
		"INSERT INTO conf_tab VALUES (42, 42, 'pub')");
	$m = wait_conflict($pos, 'insert_exists', $r->{xid});
	my $lsn = check_line($m, "conflict_log = 'table': insert_exists",
		level => 'ERROR', sqlstate => '23505',
		msg => conflict_msg_re('conf_tab', 'insert_exists'),
		detail => qr/\AThe conflict is recorded in parallel_apply\.conflict_history\.\z/,
		context => ctx_re('cf_sub', 'conf_tab', 'INSERT', $r->{xid}));
	ok( pa_poll_for($sub,
			"SELECT count(*) FROM parallel_apply.conflict_history WHERE remote_xid = '$r->{xid}'::xid AND conflict_type = 'insert_exists' AND finish_lsn = '"
			  . ($lsn // '0/0') . "' AND key = '{\"id\": 42}' AND resolution = 'error'",
			'1', 10),
		"conflict_log = 'table': insert_exists recorded");
	$sub->safe_psql('postgres', 'DELETE FROM conf_tab WHERE id = 42');
	pa_catchup($pub, 'cf_sub');
	check_rows("conflict_log = 'table': insert_exists", '42', '(42,42,pub)', '(42,42,pub)');
	$cnt{insert_exists} += scalar conflict_msgs($pos, 'insert_exists', $r->{xid});
	check_counters("conflict_log = 'table': insert_exists");

	set_conflict_log(undef);
}

# ---------------------------------------------------------------- track_commit_timestamp = off
# Counters do not survive a server restart; no origin types without commit
# timestamps; the *_exists DETAIL names the local transaction without a time.
$sub->append_conf('postgresql.conf', "track_commit_timestamp = off\n");
$sub->restart;
pa_wait_engine($sub, 'cf_sub');
is($sub->safe_psql('postgres', 'SHOW track_commit_timestamp'), 'off',
	'subscriber restarted with track_commit_timestamp = off');
$cnt{$_} = 0 foreach @CONFLICT_TYPES;
check_counters('after the restart');

# an UPDATE and a DELETE of locally modified rows: applied, nothing logged
$pub->safe_psql('postgres', "INSERT INTO conf_tab VALUES (50, 50, 'pub'), (51, 51, 'pub')");
pa_catchup($pub, 'cf_sub');
$pos = pa_log_pos($sub);
$sub->safe_psql('postgres', "UPDATE conf_tab SET v = 'sub-local' WHERE id IN (50, 51)");
my $r50 = pub_txn("UPDATE conf_tab SET v = 'pub-upd' WHERE id = 50");
my $r51 = pub_txn('DELETE FROM conf_tab WHERE id = 51');
pa_catchup($pub, 'cf_sub');
check_rows('track_commit_timestamp = off: UPDATE and DELETE of locally modified rows',
	'50, 51', '(50,50,pub-upd)', '(50,50,pub-upd)');
SKIP:
{
	skip 'conflict logging is the engine\'s', 3 unless $engine;
	my @lines = conflict_msgs($pos, undef, undef);
	is(scalar @lines, 0, 'track_commit_timestamp = off: no origin conflict logged')
	  or diag(join("\n", map { $_->{text} } @lines));
	is(hist("remote_xid IN ('$r50->{xid}'::xid, '$r51->{xid}'::xid)", 'count(*)'),
		'0', 'track_commit_timestamp = off: no origin conflict recorded');
	check_counters('track_commit_timestamp = off: no origin conflict');
}

# delete_missing as usual
($pos, undef, $r) = local_then_remote('DELETE FROM conf_tab WHERE id = 52',
	'DELETE FROM conf_tab WHERE id = 52', 52);
log_conflict(
	label => 'track_commit_timestamp = off: delete_missing', type => 'delete_missing', r => $r,
	pos => $pos, msgtype => 'DELETE', ids => '52',
	detail => qr/\ACould not find the row to be deleted\.\nReplica identity \(id\)=\(52\)\.\z/,
	history => {
		replica_identity => q('{"id": 52}'::jsonb),
		local_xid => 'NULL',
		local_commit_time => 'NULL',
		resolution => "'skipped'" },
	after_pub => '', after_sub => '');

# insert_exists: "modified in transaction N."
($pos, $lxid, $r) = local_then_remote("INSERT INTO conf_tab VALUES (53, 530, 'sub-local')",
	"INSERT INTO conf_tab VALUES (53, 53, 'pub')");
error_conflict(
	label => 'track_commit_timestamp = off: insert_exists', type => 'insert_exists', r => $r,
	pos => $pos, msgtype => 'INSERT', ids => '53',
	detail => qr/\AKey already exists in unique index "conf_tab_pkey", modified in transaction $lxid\.\nKey \(id\)=\(53\); existing local row \(53, 530, sub-local\); remote row \(53, 53, pub\)\.\z/,
	history => [
		[ [ '', '' ],
			index_name => "'conf_tab_pkey'",
			key => q('{"id": 53}'::jsonb),
			local_row => q('{"id": 53, "u": 530, "v": "sub-local"}'::jsonb),
			remote_row => q('{"id": 53, "u": 53, "v": "pub"}'::jsonb),
			local_origin => 'NULL',
			local_xid => "'$lxid'::xid",
			local_commit_time => 'NULL' ] ],
	before => '(53,530,sub-local)',
	fix => 'DELETE FROM conf_tab WHERE id = 53',
	after => '(53,53,pub)');

# ---------------------------------------------------------------- end
$pub->safe_psql('postgres', "INSERT INTO conf_tab VALUES (60, 60, 'last')");
pa_catchup($pub, 'cf_sub');
check_rows('at the end', '60', '(60,60,last)', '(60,60,last)');
if ($engine)
{
	is(pa_stat($sub, 'cf_sub', 'state'), 'streaming', 'the engine still applies cf_sub');
}
pa_check_log_clean($pub);
pa_check_log_clean($sub);
note sprintf('030_conflicts took %d s', time - $t_start);

$sub->stop;
$pub->stop;
done_testing();
