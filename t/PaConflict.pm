
# Copyright (c) parallel_apply authors
#
# PaConflict -- helpers shared by the conflict tests (t/030_conflicts.pl,
# t/031_conflict_resolution.pl): the two nodes with the settings PostgreSQL
# 18's conflict log lines are checked against (lc_messages = C, the SQLSTATE
# in log_line_prefix, track_commit_timestamp = on), transactions run on
# either side with their xids (and, on the publisher, the LSN of the COMMIT
# record, through pg_walinspect when it is available), the conflict messages
# of the subscriber's log, regexps for their message and CONTEXT lines, and
# the rows, counters and history rows a conflict leaves.
#
# conflict_nodes() creates the publisher and the subscriber and is called
# first: the other functions work on those two nodes.  With PA_NO_ENGINE=1
# the messages looked for are PostgreSQL 15's unique violations where a
# function says so ($pg15, check_error).

package PaConflict;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  $TS
  $LSN
  @CONFLICT_TYPES
  conflict_nodes
  walinspect
  subid
  xid32
  sub_local
  pub_txn
  sqlstate
  conflict_msgs
  wait_conflict
  ctx_re
  conflict_msg_re
  check_line
  check_error
  hist
  counters_sql
  counters_are
  rows
  sub_rows_are
);

my ($pub, $sub, $walinspect);
my %subid;

sub _nodes
{
	croak 'PaConflict: conflict_nodes() has not been called' unless defined $sub;
	return;
}

=pod

=item $TS, $LSN

Regexps for a timestamp as the log and psql print it in UTC
(2025-01-31 12:34:56.123456+00) and for an LSN (0/1A2B3C4).

=item @CONFLICT_TYPES

The seven conflict types, in the order of the confl_* columns of
parallel_apply.stat_conflicts.

=cut

our $TS = qr/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?\+00/;
our $LSN = qr/[0-9A-F]+\/[0-9A-F]+/;
our @CONFLICT_TYPES = qw(insert_exists update_origin_differs update_exists update_missing
  delete_origin_differs delete_missing multiple_unique_conflicts);

=pod

=item conflict_nodes()

A started publisher and subscriber ('publisher', 'subscriber'; 4 workers,
retry_interval = 200 ms unless PA_NO_ENGINE) with lc_messages = 'C', the
SQLSTATE (%e) in log_line_prefix and track_commit_timestamp = on, and
pg_walinspect created on the publisher when it is available (see
walinspect()).  Returns ($pub, $sub); the functions below use these two.

=cut

sub conflict_nodes
{
	my $log_conf = qq(
lc_messages = 'C'
log_line_prefix = '%m [%p] %b [%e] %q%a '
track_commit_timestamp = on
);
	$pub = pa_publisher('publisher', conf => $log_conf);
	$sub = pa_subscriber('subscriber', workers => 4,
		conf => $log_conf . (pa_engine() ? "parallel_apply.retry_interval = 200\n" : ''));
	%subid = ();
	$walinspect = $pub->safe_psql('postgres',
		"SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_walinspect'") eq '1';
	$pub->safe_psql('postgres', 'CREATE EXTENSION pg_walinspect') if $walinspect;
	note 'pg_walinspect '
	  . ($walinspect ? 'available: finish LSNs are compared with COMMIT records' : 'not available');
	return ($pub, $sub);
}

=pod

=item walinspect()

True when pg_walinspect is installed on the publisher: pub_txn() then finds
the LSN of a transaction's COMMIT record.

=cut

sub walinspect
{
	_nodes();
	return $walinspect;
}

=pod

=item subid($subname)

The oid of subscription $subname on the subscriber (looked up once).

=cut

sub subid
{
	my ($subname) = @_;
	_nodes();
	return $subid{$subname} //=
	  $sub->safe_psql('postgres', "SELECT oid FROM pg_subscription WHERE subname = '$subname'");
}

=pod

=item xid32($xid)

The 32-bit xid of a full transaction id (pg_current_xact_id()), as the log
and the xid type print it.

=cut

sub xid32 { return $_[0] % 4294967296; }

sub _txn_xid
{
	my ($node, $sql) = @_;
	return xid32($node->safe_psql('postgres', "BEGIN; $sql; SELECT pg_current_xact_id(); COMMIT;"));
}

=pod

=item sub_local($sql)

Run $sql in one transaction on the subscriber; its xid.

=cut

sub sub_local
{
	my ($sql) = @_;
	_nodes();
	return _txn_xid($sub, $sql);
}

=pod

=item pub_txn($sql)

Run $sql in one transaction on the publisher: { xid, lsn, commit_time }, lsn
being the LSN of its COMMIT record (what the CONTEXT calls "finished at";
undef without pg_walinspect).

=cut

sub pub_txn
{
	my ($sql) = @_;
	_nodes();
	my $from = $pub->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	my $xid = _txn_xid($pub, $sql);
	my $lsn;
	$lsn = $pub->safe_psql('postgres', qq{
SELECT start_lsn FROM pg_get_wal_records_info('$from', pg_current_wal_flush_lsn())
WHERE xid = '$xid'::xid AND resource_manager = 'Transaction' AND record_type = 'COMMIT'})
	  if $walinspect;
	my $ts = $pub->safe_psql('postgres', "SELECT pg_xact_commit_timestamp('$xid'::xid)");
	return { xid => $xid, lsn => $lsn, commit_time => $ts };
}

=pod

=item sqlstate($m)

The SQLSTATE of a pa_log_messages() entry, from the log_line_prefix of
conflict_nodes() ('?' when there is none).

=cut

sub sqlstate
{
	my ($m) = @_;
	return $m->{text} =~ /\A\S+ \S+ \S+ \[\d+\] [^\[\n]*\[([0-9A-Z]{5})\] / ? $1 : '?';
}

=pod

=item conflict_msgs($pos, $type, $xid, $pg15)

The messages (pa_log_messages() entries) the subscriber logged from offset
$pos that report a conflict, of $type and for remote transaction $xid when
these are defined (the xid as the CONTEXT names it).  With $pg15:
PostgreSQL 15's unique violations ("duplicate key value violates unique
constraint ...") instead, of any type.

=cut

sub conflict_msgs
{
	my ($pos, $type, $xid, $pg15) = @_;
	_nodes();
	return grep {
		my $ok;
		if ($pg15)
		{
			$ok = $_->{msg} =~ /^duplicate key value violates unique constraint /;
		}
		else
		{
			$ok = $_->{msg} =~ /^conflict detected on relation "[^"]*": conflict=(\w+)$/
			  && (!defined $type || $1 eq $type);
		}
		$ok && (!defined $xid || ($_->{context} // '') =~ /in transaction $xid, finished at /);
	} pa_log_messages($sub, $pos);
}

=pod

=item wait_conflict($pos, $type, $xid, $pg15, $seconds)

The first message conflict_msgs() finds, waiting for it up to $seconds
(default 60); undef if there is none by then.

=cut

sub wait_conflict
{
	my ($pos, $type, $xid, $pg15, $seconds) = @_;
	my @m;
	pa_wait_until($seconds // 60, sub { @m = conflict_msgs($pos, $type, $xid, $pg15); @m > 0 });
	return $m[0];
}

=pod

=item ctx_re($subname, $rel, $msgtype, $xid)

A regexp for the whole CONTEXT of a change of message type $msgtype
(INSERT, UPDATE, DELETE) to public.$rel in remote transaction $xid of
subscription $subname; it captures the finish LSN.

=cut

sub ctx_re
{
	my ($subname, $rel, $msgtype, $xid) = @_;
	my $subid = subid($subname);
	return qr/\Aprocessing remote data for replication origin "pg_$subid" during message type "$msgtype" for replication target relation "public\.$rel" in transaction $xid, finished at ($LSN)\z/;
}

=pod

=item conflict_msg_re($rel, $type)

A regexp for the whole message of a conflict of $type on public.$rel.

=cut

sub conflict_msg_re
{
	my ($rel, $type) = @_;
	return qr/\Aconflict detected on relation "public\.$rel": conflict=$type\z/;
}

=pod

=item check_line($m, $label, level => $level, sqlstate => $code, msg => $re, detail => $re, context => $re)

Tests of one logged message (a pa_log_messages() entry): its level and
SQLSTATE, and whole-string regexps for its message, DETAIL and CONTEXT (not
checked when undef).  Returns the finish LSN of its CONTEXT.  An undefined
$m is one failed test "$label: logged" (with the log's errors as a diag).

=cut

sub check_line
{
	my ($m, $label, %e) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	if (!defined $m)
	{
		fail("$label: logged");
		diag("conflicts and errors logged:\n" . pa_log_errors($sub, 0, 30));
		return undef;
	}
	is($m->{level} . ' ' . sqlstate($m), "$e{level} $e{sqlstate}", "$label: level and SQLSTATE");
	like($m->{msg}, $e{msg}, "$label: message") if defined $e{msg};
	like($m->{detail} // '<none>', $e{detail}, "$label: DETAIL") if defined $e{detail};
	like($m->{context} // '<none>', $e{context}, "$label: CONTEXT") if defined $e{context};
	my ($lsn) = ($m->{context} // '') =~ /finished at ($LSN)\z/;
	return $lsn;
}

=pod

=item check_error($label, $pos, $r, subname => $s, rel => $rel, msgtype => $t, type => $type, detail => $re)

Tests of the first ERROR logged from $pos for remote transaction $r (a
pub_txn() result): the engine's conflict line of $type (default
insert_exists), checked whole (level ERROR, SQLSTATE 23505, message, DETAIL
$re, CONTEXT), or with PA_NO_ENGINE PostgreSQL 15's unique violation on
$rel's primary key or u_key (level, SQLSTATE, message, CONTEXT); then,
unless pg_walinspect is missing (a skipped test), that its finish LSN is
the LSN of the transaction's COMMIT record.  Returns the finish LSN.

=cut

sub check_error
{
	my ($label, $pos, $r, %e) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $lsn;
	my $ctx = ctx_re($e{subname}, $e{rel}, $e{msgtype}, $r->{xid});
	if (pa_engine())
	{
		my $type = $e{type} // 'insert_exists';
		my $m = wait_conflict($pos, $type, $r->{xid});
		$lsn = check_line($m, $label,
			level => 'ERROR', sqlstate => '23505',
			msg => conflict_msg_re($e{rel}, $type),
			detail => $e{detail}, context => $ctx);
	}
	else
	{
		my $m = wait_conflict($pos, undef, $r->{xid}, 1);
		$lsn = check_line($m, "$label (PostgreSQL 15: unique violation)",
			level => 'ERROR', sqlstate => '23505',
			msg => qr/\Aduplicate key value violates unique constraint "$e{rel}_(?:pkey|u_key)"\z/,
			context => $ctx);
	}
	SKIP:
	{
		skip 'pg_walinspect not available', 1 unless $walinspect;
		is($lsn, $r->{lsn}, "$label: the finish LSN is that of the transaction's COMMIT record");
	}
	return $lsn;
}

=pod

=item hist($where, $what)

SELECT $what FROM parallel_apply.conflict_history h WHERE $where, on the
subscriber.

=cut

sub hist
{
	my ($where, $what) = @_;
	_nodes();
	return $sub->safe_psql('postgres',
		"SELECT $what FROM parallel_apply.conflict_history h WHERE $where");
}

=pod

=item counters_sql($subname)

A query for the seven confl_* counters of parallel_apply.stat_conflicts for
$subname, in the order of @CONFLICT_TYPES, joined by commas ("1,0,0,0,0,0,0").

=cut

sub counters_sql
{
	my ($subname) = @_;
	return 'SELECT ' . join(" || ',' || ", map { "confl_$_" } @CONFLICT_TYPES)
	  . " FROM parallel_apply.stat_conflicts WHERE subname = '$subname'";
}

=pod

=item counters_are($subname, $want, $label)

One test "$label ($want)": the counters_sql() of $subname reach $want
within 10 s.

=cut

sub counters_are
{
	my ($subname, $want, $label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	_nodes();
	return ok(pa_poll_for($sub, counters_sql($subname), $want, 10), "$label ($want)");
}

sub _rows_sql
{
	my ($table, $where) = @_;
	return "SELECT coalesce(string_agg(r::text, ',' ORDER BY r.id), '') FROM $table r WHERE $where";
}

=pod

=item rows($node, $table, $where)

The rows of $table on $node that meet $where, as row literals ordered by id
and joined by commas ("(1,1,pub),(2,20,pub)"; '' for none).

=cut

sub rows
{
	my ($node, $table, $where) = @_;
	return $node->safe_psql('postgres', _rows_sql($table, $where));
}

=pod

=item sub_rows_are($table, $where, $want, $label, $seconds)

One test "$label: $table on the subscriber: $want": rows($sub, $table,
$where) reaches $want within $seconds (default 10).

=cut

sub sub_rows_are
{
	my ($table, $where, $want, $label, $seconds) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	_nodes();
	return ok(pa_poll_for($sub, _rows_sql($table, $where), $want, $seconds // 10),
		"$label: $table on the subscriber: $want");
}

1;
