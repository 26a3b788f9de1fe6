
# Copyright (c) parallel_apply authors
#
# An error raised at COMMIT is attributed to the remote transaction that
# raised it (item 1), even when a worker commits several consecutive remote
# transactions as one local transaction (a commit group,
# parallel_apply.group_size).  A deferred constraint trigger on the
# subscriber refuses row 6 at commit; the publisher commits ten one-row
# transactions T1..T10 while nothing applies, so they arrive as a backlog
# and are grouped.  The ERROR must carry PostgreSQL 15's CONTEXT line naming
# T6 and its finish LSN ("... during message type "COMMIT" in transaction
# <T6>, finished at <LSN>"), no ERROR or CONTEXT may name another of
# T1..T10, and ALTER SUBSCRIPTION ... SKIP with that LSN must skip exactly T6.
# Before the fix the error at the group's commit had no CONTEXT at all, and
# the leader's "exited while applying remote transaction N" named the
# group's last transaction (T10), so the user had no LSN to SKIP and the
# wrong transaction was blamed.  PostgreSQL's built-in worker
# (PA_NO_ENGINE=1) passes the same test.
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

pa_both($pub, $sub, 'CREATE TABLE tab (id int PRIMARY KEY)');
$sub->safe_psql('postgres', q{
CREATE FUNCTION refuse6() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 6 THEN
		RAISE EXCEPTION 'refusing row 6 at commit';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse6 AFTER INSERT ON tab
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse6();
ALTER TABLE tab ENABLE ALWAYS TRIGGER refuse6;
});
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');
my $subid = $sub->safe_psql('postgres',
	"SELECT oid FROM pg_subscription WHERE subname = 'sub'");

# T1..T10 pile up in the slot while nothing applies
pa_stop_applying($sub, 'sub');
my %xid;
for my $i (1 .. 10)
{
	my $x = $pub->safe_psql('postgres',
		"BEGIN; INSERT INTO tab VALUES ($i); SELECT pg_current_xact_id(); COMMIT;");
	$xid{$i} = $x % 4294967296;
}
note 'xids of T1..T10: ' . join(' ', map { $xid{$_} } 1 .. 10);
my $x6 = $xid{6};
my %other = map { $xid{$_} => $_ } grep { $_ != 6 } 1 .. 10;

# Hand it back without waiting for 'streaming': the engine fails and
# restarts at once, and need not be seen streaming in between.
my $pos = pa_log_pos($sub);
if (pa_engine())
{
	$sub->safe_psql('postgres', "SELECT parallel_apply.attach('sub')");
}
else
{
	$sub->safe_psql('postgres', 'ALTER SUBSCRIPTION sub ENABLE');
}

my $ctx_re = qr/processing remote data for replication origin "pg_$subid" during message type "COMMIT" in transaction $x6, finished at ([0-9A-F]+\/[0-9A-F]+)/;

# the first ERROR for T6 carrying the expected CONTEXT
sub t6_error
{
	foreach my $m (pa_log_messages($sub, $pos))
	{
		next unless $m->{level} eq 'ERROR' && $m->{msg} eq 'refusing row 6 at commit';
		return $m if defined $m->{context} && $m->{context} =~ $ctx_re;
	}
	return undef;
}
my $t6;
ok(pa_wait_until(30, sub { $t6 = t6_error(); defined $t6 }),
	'ERROR "refusing row 6 at commit" with a CONTEXT naming T6 at COMMIT')
  or diag("errors logged:\n" . pa_log_errors($sub, $pos, 20));
my ($lsn) = defined $t6 ? $t6->{context} =~ $ctx_re : ();
note "T6 finished at " . ($lsn // '?');

# skip T6 by the LSN the CONTEXT gave
if (!defined $lsn)
{
	fail('ALTER SUBSCRIPTION ... SKIP: no CONTEXT gave the LSN of T6');
}
else
{
	my $skippos = pa_log_pos($sub);
	$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SKIP (lsn = '$lsn')");
	ok( pa_poll_for($sub, q{SELECT string_agg(id::text, ',' ORDER BY id) FROM tab},
			'1,2,3,4,5,7,8,9,10', 30),
		'after SKIP the subscriber has exactly ids 1..5 and 7..10');
	ok(pa_poll_for($sub, "SELECT subskiplsn FROM pg_subscription WHERE subname = 'sub'", '0/0', 10),
		'subskiplsn is cleared');
	$pub->safe_psql('postgres', 'INSERT INTO tab VALUES (11)');
	ok(pa_poll_for($sub, 'SELECT count(*) FROM tab WHERE id = 11', '1', 30),
		'a later insert arrives');
	# the engine's wording; PostgreSQL 15's worker says it its own way
	my $done_re =
	  pa_engine()
	  ? qr/LOG:  done skipping logical replication transaction finished at \Q$lsn\E\b/
	  : qr/LOG:  logical replication completed skipping transaction at LSN \Q$lsn\E\b/;
	ok(pa_wait_log_for($sub, $done_re, $skippos, 10),
		"the log says the transaction finished at $lsn was skipped");
	is($sub->safe_psql('postgres', q{SELECT string_agg(id::text, ',' ORDER BY id) FROM tab}),
		'1,2,3,4,5,7,8,9,10,11', 'subscriber has 1..5, 7..11');
}

# Over the whole run: no ERROR and no CONTEXT (of a message of any level)
# names another of T1..T10, every "refusing row 6" ERROR has the CONTEXT of
# T6, and the engine's leader (if it reports the worker's exit) names T6.
my (@wrong, @no_ctx, @leader_lines);
foreach my $m (pa_log_messages($sub, $pos))
{
	my $all = ($m->{level} eq 'ERROR' ? $m->{msg} : '') . "\n" . ($m->{context} // '');
	while ($all =~ /transaction (\d+)/g)
	{
		push @wrong, $m->{text} if exists $other{$1};
	}
	next unless $m->{level} eq 'ERROR';
	push @no_ctx, $m->{text}
	  if $m->{msg} eq 'refusing row 6 at commit'
	  && !(defined $m->{context} && $m->{context} =~ $ctx_re);
	push @leader_lines, $m
	  if $m->{msg} =~ /^parallel_apply worker \d+ of subscription "sub" exited while applying remote transaction \d+/;
}
is(scalar @wrong, 0, 'no ERROR or CONTEXT names another of T1..T10')
  or diag(join("\n", @wrong));
is(scalar @no_ctx, 0,
	'every "refusing row 6 at commit" ERROR carries the CONTEXT of T6')
  or diag(join("\n", @no_ctx));
SKIP:
{
	skip 'the leader line is the engine\'s', 1 unless pa_engine();
	my @bad = grep { $_->{msg} !~ /exited while applying remote transaction $x6$/ } @leader_lines;
	is(scalar @bad, 0,
		'the leader\'s "exited while applying remote transaction" lines name T6 ('
		  . scalar(@leader_lines) . ' seen)')
	  or diag(join("\n", map { $_->{text} } @bad));
}
# a group that could not commit may be reported, but only at LOG level
my @group_errors = grep { $_->{level} ne 'LOG' && $_->{msg} =~ /could not commit a group of/ }
  pa_log_messages($sub, $pos);
is(scalar @group_errors, 0, '"could not commit a group of" is at most a LOG line')
  or diag(join("\n", map { $_->{text} } @group_errors));

if (pa_engine())
{
	ok( pa_poll_for($sub,
			"SELECT state FROM parallel_apply.stat_subscription WHERE subname = 'sub'",
			'streaming', 10),
		'the engine streams again');
}
pa_check_log_clean($sub, 0);

done_testing();
