
# Copyright (c) parallel_apply authors
#
# PaTest -- shared helpers for the parallel_apply TAP tests.
#
# A test builds a publisher (stock PostgreSQL, wal_level = logical) and a
# subscriber (parallel_apply preloaded), creates the same tables on both,
# subscribes, waits for the initial sync, attaches the subscription to the
# engine, runs a workload and finally compares the contents of every table on
# both sides with check_equal().
#
# Nothing here sleeps for a fixed time: every wait polls a query or a log
# file and gives up after $PostgreSQL::Test::Utils::timeout_default seconds
# (PG_TEST_TIMEOUT_DEFAULT).
#
# Setting PA_NO_ENGINE=1 in the environment runs the same tests against the
# built-in apply worker only (no preload, attach/detach are no-ops, engine
# specific checks are skipped).  That is how the tests themselves are
# validated independently of the engine.

package PaTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  pa_engine
  pa_publisher
  pa_subscriber
  pa_node_noengine
  pa_both
  pa_subscribe
  pa_wait_sync
  pa_attach
  pa_detach
  pa_attach_sql
  pa_wait_engine
  pa_wait_builtin
  pa_catchup
  pa_check_equal
  pa_table_hash
  pa_check_seq
  pa_seq_setup
  pa_pgbench_init
  pa_replayed
  pa_seq_load
  pa_bg
  pa_bg_running
  pa_bg_finish
  pa_pgbench_bg
  pa_checker_bg
  pa_checker_count
  pa_table_hash_sql
  pa_poll
  pa_open_stream_on_unique
  pa_close_stream_on_unique
  pa_diag
  pa_check_log_clean
  pa_error_attempts
  pa_wait_attempts
  pa_engine_pids
  pa_log_pos
  pa_wait_log
  pa_log_since
  pa_poll_for
  pa_check_equal_within
  pa_catchup_within
  pa_wait_log_for
  pa_log_errors
  pa_stat
  pa_stop_applying
  pa_resume_applying
  pa_wait_until
  pa_log_messages
  pa_log_engine_pids
  pa_log_engine_errors
  pa_engine_procs
  pa_wait_no_engine_procs
  pa_rel_stat
  pa_rel_stats_all
  pa_unique_violation_re
  pa_missing_row_re
  pa_set_owner
);

# True unless PA_NO_ENGINE is set: tests then run against parallel_apply.
sub pa_engine
{
	return !($ENV{PA_NO_ENGINE} // '');
}

# Lines common to both nodes.  Settings that make runs comparable (time zone)
# and keep logs readable under pgbench load.
my $common_conf = <<'EOC';
timezone = 'UTC'
log_timezone = 'UTC'
log_statement = 'ddl'
log_min_error_statement = error
shared_buffers = 64MB
max_connections = 60
max_wal_size = 512MB
log_connections = off
log_disconnections = off
EOC

=pod

=item pa_publisher($name, conf => $extra)

A started publisher: wal_level = logical, enough connections and WAL senders
for pgbench loads.

=cut

sub pa_publisher
{
	my ($name, %opts) = @_;
	$name //= 'publisher';
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', $common_conf);
	$node->append_conf('postgresql.conf', "max_wal_senders = 20\nmax_replication_slots = 20\n");
	$node->append_conf('postgresql.conf', $opts{conf}) if defined $opts{conf};
	$node->start;
	return $node;
}

=pod

=item pa_subscriber($name, workers => N, conf => $extra, create_extension => 1, allows_streaming => 0, adaptive => 0)

A started subscriber with parallel_apply in shared_preload_libraries,
parallel_apply.workers = N (default 4), parallel_apply.adaptive = off
unless adaptive => 1 (the tests place work on workers knowingly),
retry_interval = 1s,
restart_after_crash = on, and CREATE EXTENSION parallel_apply done in the
postgres database.

=cut

sub pa_subscriber
{
	my ($name, %opts) = @_;
	$name //= 'subscriber';
	my $workers = $opts{workers} // 4;
	# the tests place transactions on workers knowingly: every worker gets
	# work unless a test asks for adaptive worker use (t/036; PostgreSQL's
	# own suite runs with the default, on: t/PgSuite.pm)
	my $adaptive = $opts{adaptive} ? 'on' : 'off';
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opts{allows_streaming} // 0);
	$node->append_conf('postgresql.conf', $common_conf);
	$node->append_conf(
		'postgresql.conf', qq(
restart_after_crash = on
max_worker_processes = 32
max_logical_replication_workers = 6
max_sync_workers_per_subscription = 2
wal_retrieve_retry_interval = '500ms'
));
	if (pa_engine())
	{
		$node->append_conf(
			'postgresql.conf', qq(
shared_preload_libraries = 'parallel_apply'
parallel_apply.workers = $workers
parallel_apply.retry_interval = 1000
parallel_apply.adaptive = $adaptive
));
	}
	$node->append_conf('postgresql.conf', $opts{conf}) if defined $opts{conf};
	$node->start;
	if (pa_engine() && ($opts{create_extension} // 1))
	{
		$node->safe_psql('postgres', 'CREATE EXTENSION parallel_apply');
	}
	return $node;
}

=pod

=item pa_node_noengine($name)

A plain started node without the preload (for negative tests).

=cut

sub pa_node_noengine
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', $common_conf);
	$node->start;
	return $node;
}

=pod

=item pa_both($pub, $sub, $sql)

Run the same SQL (DDL) on both nodes.

=cut

sub pa_both
{
	my ($pub, $sub, $sql, $db) = @_;
	$db //= 'postgres';
	$pub->safe_psql($db, $sql);
	$sub->safe_psql($db, $sql);
	return;
}

=pod

=item pa_subscribe($pub, $sub, $subname, publication => 'pub', tables => [..] | undef, with => 'streaming = on', create_publication => 1)

CREATE PUBLICATION (FOR ALL TABLES unless tables are given) on the
publisher, CREATE SUBSCRIPTION on the subscriber, then wait until every
table of the subscription is in state 'r'.

=cut

sub pa_subscribe
{
	my ($pub, $sub, $subname, %opts) = @_;
	my $pubname = $opts{publication} // 'pub';
	my $db = $opts{dbname} // 'postgres';

	if ($opts{create_publication} // 1)
	{
		my $what =
		  defined $opts{tables}
		  ? 'FOR TABLE ' . join(', ', @{ $opts{tables} })
		  : 'FOR ALL TABLES';
		$pub->safe_psql($db, "CREATE PUBLICATION $pubname $what");
	}
	(my $connstr = $pub->connstr($db)) =~ s/'/''/g;
	my $with = defined $opts{with} ? " WITH ($opts{with})" : '';
	$sub->safe_psql($db,
		"CREATE SUBSCRIPTION $subname CONNECTION '$connstr' PUBLICATION $pubname$with"
	);
	pa_wait_sync($pub, $sub, $subname, $db)
	  unless $opts{nowait};
	return;
}

=pod

=item pa_wait_sync($pub, $sub, $subname)

Wait until every table of the subscription has srsubstate = 'r' (what
attach requires) and the subscriber has caught up.

=cut

sub pa_wait_sync
{
	my ($pub, $sub, $subname, $db) = @_;
	$db //= 'postgres';
	pa_poll($sub,
		qq(SELECT count(*) = 0 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
		   WHERE s.subname = '$subname' AND r.srsubstate <> 'r'),
		't', "initial sync of $subname", $db);
	$pub->wait_for_catchup($subname);
	return;
}

=pod

=item pa_attach($sub, $subname)

SELECT parallel_apply.attach(...) and wait until the engine streams for it
and the built-in apply worker has gone.

=cut

sub pa_attach
{
	my ($sub, $subname, $db) = @_;
	$db //= 'postgres';
	return unless pa_engine();
	$sub->safe_psql($db, "SELECT parallel_apply.attach('$subname')");
	pa_wait_engine($sub, $subname, $db);
	return;
}

# Same as pa_attach, but returns (ret, stdout, stderr) of psql instead of dying.
sub pa_attach_sql
{
	my ($sub, $subname, $db) = @_;
	$db //= 'postgres';
	my ($out, $err);
	my $ret = $sub->psql($db, "SELECT parallel_apply.attach('$subname')",
		stdout => \$out, stderr => \$err);
	return ($ret, $out, $err);
}

=pod

=item pa_wait_engine($sub, $subname)

Wait until stat_subscription says 'streaming' for the subscription, its
leader is running and no built-in apply worker runs for it.

=cut

sub pa_wait_engine
{
	my ($sub, $subname, $db) = @_;
	$db //= 'postgres';
	return unless pa_engine();
	$sub->poll_query_until(
		$db,
		qq(SELECT count(*) = 1 FROM parallel_apply.stat_subscription
		   WHERE subname = '$subname' AND state = 'streaming' AND leader_pid IS NOT NULL)
	) or do { pa_diag($sub, $db); croak "timed out waiting for: engine streaming for $subname"; };
	pa_poll($sub,
		qq(SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = '$subname' AND pid IS NOT NULL),
		't', "built-in apply worker of $subname gone", $db);
	return;
}

=pod

=item pa_detach($sub, $subname)

SELECT parallel_apply.detach(...) and wait until the engine has let go and
the built-in apply worker runs again.

=cut

sub pa_detach
{
	my ($sub, $subname, $db) = @_;
	$db //= 'postgres';
	return unless pa_engine();
	$sub->safe_psql($db, "SELECT parallel_apply.detach('$subname')");
	pa_wait_builtin($sub, $subname, $db);
	return;
}

=pod

=item pa_diag($sub)

Print the engine's views and processes (on a timeout).

=cut

sub pa_diag
{
	my ($sub, $db) = @_;
	$db //= 'postgres';
	foreach my $q (
		'SELECT * FROM parallel_apply.stat_subscription',
		'SELECT * FROM parallel_apply.stat_workers',
		"SELECT pid, backend_type, state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity WHERE backend_type LIKE 'parallel_apply%' OR backend_type LIKE 'logical replication%'",
		'SELECT subname, subenabled, subslotname FROM pg_subscription',
		'SELECT * FROM pg_stat_subscription',
		'SELECT * FROM pg_replication_origin_status')
	{
		my ($ret, $out, $err) = $sub->psql($db, $q, extra_params => ['-P', 'pager=off']);
		$out //= '';
		$err //= '';
		diag("$q:\n$out$err");
	}
	return;
}

sub pa_wait_builtin
{
	my ($sub, $subname, $db) = @_;
	$db //= 'postgres';
	if (pa_engine())
	{
		pa_poll($sub,
			qq(SELECT count(*) = 0 FROM parallel_apply.stat_subscription WHERE subname = '$subname'),
			't', "$subname gone from stat_subscription", $db);
	}
	pa_poll($sub,
		qq(SELECT count(*) > 0 FROM pg_stat_subscription WHERE subname = '$subname' AND pid IS NOT NULL AND relid IS NULL),
		't', "built-in apply worker of $subname running", $db);
	return;
}

=pod

=item pa_catchup($pub, $subname)

Wait until the subscriber reports (as "replay"/apply position) everything
the publisher has written.  Dies on timeout.

=cut

sub pa_catchup
{
	my ($pub, $subname) = @_;
	$pub->wait_for_catchup($subname);
	return;
}

=pod

=item pa_poll($node, $query, $expected, $what, $db)

poll_query_until that dies with a clear message on timeout.

=cut

sub pa_poll
{
	my ($node, $query, $expected, $what, $db) = @_;
	$expected //= 't';
	$db //= 'postgres';
	$what //= $query;
	$node->poll_query_until($db, $query, $expected)
	  or croak "timed out waiting for: $what";
	return 1;
}

=pod

=item pa_open_stream_on_unique($pub, $sub, $ddl)

The start of the stream-and-unique-index scenarios: creates on both nodes
big (id, payload) and uq (id, u), plus the tables of $ddl; on the subscriber
only a unique index uq_u on uq (u); subscribes with streaming on and
attaches.  Then opens on the publisher a transaction that inserts
uq (1, 7) and 3000 rows into big, enough to stream with
logical_decoding_work_mem = 64kB, and (with the engine) waits until the
stream's worker holds its lock on uq.  Returns the open session: a
transaction that then inserts u = 7 and commits first waits for the stream.

=cut

sub pa_open_stream_on_unique
{
	my ($pub, $sub, $ddl) = @_;
	$ddl = q{
CREATE TABLE big (id int PRIMARY KEY, payload text);
CREATE TABLE uq (id int PRIMARY KEY, u int);
} . ($ddl // '');
	$pub->safe_psql('postgres', $ddl);
	$sub->safe_psql('postgres', $ddl);
	$sub->safe_psql('postgres', 'CREATE UNIQUE INDEX uq_u ON uq (u)');
	pa_subscribe($pub, $sub, 'sub', with => 'streaming = on');
	pa_attach($sub, 'sub');

	my $session = $pub->background_psql('postgres', on_error_stop => 1);
	$session->query_safe('BEGIN');
	$session->query_safe('INSERT INTO uq VALUES (1, 7)');
	$session->query_safe(
		"INSERT INTO big SELECT g, repeat('s', 100) FROM generate_series(1, 3000) g");
	pa_poll($sub,
		"SELECT count(*) > 0 FROM pg_locks l JOIN parallel_apply.stat_workers w ON w.pid = l.pid
		 WHERE w.stream_xid IS NOT NULL AND l.relation = 'uq'::regclass AND l.granted",
		't', 'the stream inserted u = 7 on the subscriber')
	  if pa_engine();
	return $session;
}

=pod

=item pa_close_stream_on_unique($pub, $sub, $session, $filler, @tables)

The end of those scenarios: commits on the publisher a transaction that
inserts u = 7 (it waits for the stream's insert on the subscriber), then
runs $filler (the transactions to queue behind it), commits the stream in
$session, and checks that the subscription catches up, that uq, big and
@tables are equal on both sides, and (with the engine) that the cycle was
broken by a serial re-apply.

=cut

sub pa_close_stream_on_unique
{
	my ($pub, $sub, $session, $filler, @tables) = @_;
	$pub->safe_psql('postgres',
		'BEGIN; INSERT INTO uq VALUES (2, 7); UPDATE uq SET u = 9 WHERE id = 2; COMMIT');
	$pub->safe_psql('postgres', $filler);
	$session->query_safe('COMMIT');
	$session->quit;

	ok(pa_catchup_within($pub, 'sub', 120),
		'the subscription catches up: the wait was broken')
	  or pa_diag($sub);
	pa_check_equal($pub, $sub, 'uq', 'big', @tables);
  SKIP:
	{
		skip 'PA_NO_ENGINE set', 1 unless pa_engine();
		cmp_ok(pa_stat($sub, 'sub', 'serial_retries'), '>', 0,
			'the cycle was broken and re-applied serially');
	}
	return;
}

# Column list of a table as the publisher has it (in attnum order), quoted.
sub _columns
{
	my ($node, $table, $db) = @_;
	my $cols = $node->safe_psql(
		$db, qq(
		SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
		FROM pg_attribute
		WHERE attrelid = '$table'::regclass AND attnum > 0 AND NOT attisdropped));
	croak "no columns for $table" if $cols eq '';
	return $cols;
}

=pod

=item pa_table_hash($node, $table, $cols)

"rows:md5" of the table's rows restricted to $cols, ordered by their text
form.  Equal contents give equal hashes regardless of physical order and of
the subscriber's column order or extra columns.

=cut

sub pa_table_hash_sql
{
	my ($table, $cols) = @_;
	return qq(SELECT count(*) || ':' || coalesce(md5(string_agg(r::text, ',' ORDER BY r::text)), '-')
	  FROM (SELECT $cols FROM $table) r);
}

sub pa_table_hash
{
	my ($node, $table, $cols, $db) = @_;
	$db //= 'postgres';
	$cols //= _columns($node, $table, $db);
	return $node->safe_psql($db, pa_table_hash_sql($table, $cols));
}

=pod

=item pa_check_equal($pub, $sub, @tables)

For each table, compute the publisher's hash (the publisher must be idle),
poll the subscriber until it has the same hash (or time out), and report one
test per table.  Compares the publisher's columns only.

=cut

sub pa_check_equal
{
	my ($pub, $sub, @tables) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $db = 'postgres';
	my $all = 1;
	foreach my $t (@tables)
	{
		my $cols = _columns($pub, $t, $db);
		my $sql = pa_table_hash_sql($t, $cols);
		my $want = $pub->safe_psql($db, $sql);
		my $ok = $sub->poll_query_until($db, $sql, $want);
		my $got = $sub->safe_psql($db, $sql);
		$all = 0 unless is($got, $want, "table $t equal on both sides");
	}
	return $all;
}

=pod

=item pa_seq_setup($pub, $sub)

Create seq_log(n bigint primary key) and its sequence on both sides.

=item pa_seq_load($pub, %opts)

Start (in the background) one pgbench client inserting n = nextval() into
seq_log, one transaction per row, so the publisher commits 1, 2, 3, ... in
order.  Options: transactions (default 2000), rate (tps, optional).

=item pa_check_seq($pub, $sub)

seq_log on the subscriber holds exactly 1..N, where N is the publisher's
count (which itself must be 1..N); no gap, no duplicate.

=cut

sub pa_seq_setup
{
	my ($pub, $sub) = @_;
	pa_both($pub, $sub,
		'CREATE SEQUENCE seq_log_n; CREATE TABLE seq_log (n bigint PRIMARY KEY, at timestamptz DEFAULT now())'
	);
	return;
}

=pod

=item pa_pgbench_init($pub, $sub)

pgbench tables at scale 1 on the publisher, the same tables empty with
their keys on the subscriber, and seq_log on both (pa_seq_setup).

=cut

sub pa_pgbench_init
{
	my ($pub, $sub) = @_;
	$pub->command_ok([ 'pgbench', '-i', '-q', '-s', '1', 'postgres' ],
		'pgbench -i on publisher');
	$sub->command_ok([ 'pgbench', '-i', '-q', '-I', 'dtp', 'postgres' ],
		'pgbench schema on subscriber');
	pa_seq_setup($pub, $sub);
	return;
}

=pod

=item pa_replayed($pub, $subname, $target)

True if the publisher's walsender for $subname reports a replay (apply)
position at or past $target; a non-blocking check, for loops that do
other work while they wait.

=cut

sub pa_replayed
{
	my ($pub, $subname, $target) = @_;
	return $pub->safe_psql('postgres',
		"SELECT coalesce(bool_and(replay_lsn >= '$target'), false) FROM pg_stat_replication WHERE application_name = '$subname'"
	) eq 't';
}

my $script_counter = 0;

sub _script
{
	my ($node, $body) = @_;
	$script_counter++;
	my $file = $node->basedir . "/pa_script_$$" . "_$script_counter.sql";
	PostgreSQL::Test::Utils::append_to_file($file, $body);
	return $file;
}

sub pa_seq_load
{
	my ($pub, %opts) = @_;
	my $n = $opts{transactions} // 2000;
	my $file = _script($pub,
		"INSERT INTO seq_log(n) VALUES (nextval('seq_log_n'));\n");
	my @args = ('-n', '-c', '1', '-t', $n, '-f', $file);
	push @args, '-R', $opts{rate} if defined $opts{rate};
	return pa_pgbench_bg($pub, @args);
}

sub pa_check_seq
{
	my ($pub, $sub, $table) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$table //= 'seq_log';
	my $sql = "SELECT count(*) || ',' || count(DISTINCT n) || ',' || coalesce(min(n), 0) || ',' || coalesce(max(n), 0) FROM $table";
	my $want = $pub->safe_psql('postgres', $sql);
	my ($cnt) = split /,/, $want;
	is($want, $cnt > 0 ? "$cnt,$cnt,1,$cnt" : "0,0,0,0",
		"$table on the publisher is 1..$cnt");
	$sub->poll_query_until('postgres', $sql, $want);
	my $got = $sub->safe_psql('postgres', $sql);
	return is($got, $want,
		"$table on the subscriber is exactly 1..$cnt (count, distinct, min, max)");
}

=pod

=item pa_bg($name, @cmd) / pa_bg_running($h) / pa_bg_finish($h)

Run a command in the background; pa_bg_finish waits for it and returns
(ok, stdout, stderr) and records a test that it exited with status 0 unless
told otherwise.

=cut

sub pa_bg
{
	my ($name, @cmd) = @_;
	my $h = { name => $name, out => '', err => '' };
	note "starting in background: @cmd";
	$h->{run} = IPC::Run::start(\@cmd, '<', \undef, '>', \$h->{out}, '2>',
		\$h->{err});
	return $h;
}

sub pa_bg_running
{
	my ($h) = @_;
	# pump_nb dies ("process ended prematurely") once everything has ended
	return 0 unless $h->{run}->pumpable;
	return 0 unless eval { $h->{run}->pump_nb; 1 };
	return $h->{run}->pumpable ? 1 : 0;
}

sub pa_bg_finish
{
	my ($h, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ok = $h->{run}->finish;
	note "$h->{name} stdout:\n$h->{out}";
	diag "$h->{name} stderr:\n$h->{err}" if !$ok && $h->{err} ne '';
	ok($ok, "$h->{name} exited successfully") unless $opts{no_test};
	return wantarray ? ($ok, $h->{out}, $h->{err}) : $ok;
}

=pod

=item pa_pgbench_bg($node, @args)

pgbench against $node's postgres database, in the background.

=cut

sub pa_pgbench_bg
{
	my ($node, @args) = @_;
	return pa_bg("pgbench @args", 'pgbench', '-h', $node->host, '-p',
		$node->port, @args, 'postgres');
}

=pod

=item pa_checker_bg($sub, $seconds, $condition_sql)

Reader on the subscriber: one client evaluating $condition_sql (a boolean
expression) in a loop for $seconds, each in its own snapshot.  The client
fails (division by zero) the first time it sees false, so pa_bg_finish
reports the violation.  Returns the handle; the number of checks is parsed
from pgbench's output by pa_checker_count.

=cut

sub pa_checker_bg
{
	my ($sub, $seconds, $cond) = @_;
	my $file = _script($sub, "SELECT 1 / (($cond)::int) AS invariant_holds;\n");
	return pa_pgbench_bg($sub, '-n', '-c', '1', '-T', $seconds, '-f', $file);
}

sub pa_checker_count
{
	my ($h) = @_;
	return $1 if $h->{out} =~ /number of transactions actually processed: (\d+)/;
	return 0;
}

=pod

=item pa_engine_pids($sub, $backend_type)

PIDs of processes with the given backend_type ('parallel_apply leader',
'parallel_apply worker', 'parallel_apply launcher') in pg_stat_activity.

=cut

sub pa_engine_pids
{
	my ($sub, $type) = @_;
	my $r = $sub->safe_psql('postgres',
		"SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = '$type'"
	);
	return grep { $_ ne '' } split / /, $r;
}

=pod

=item pa_log_pos($node) / pa_wait_log($node, $re, $pos) / pa_log_since($node, $pos)

Log file offsets and polling for a regexp in the server log.

=cut

=pod

=item pa_check_log_clean($node, $pos)

One test: the server log (from $pos) has none of the messages that indicate
a bug rather than an expected error: PANIC, assertion failures, crashes by
SIGSEGV/SIGABRT/SIGBUS, lock and resource leaks, and "should not happen"
internal errors (XX000 texts of elog).

=cut

my @bad_log = (
	qr/PANIC:/,
	qr/TRAP:/,
	qr/terminated by signal (?:6|7|11)\b/,
	qr/you don't own a lock/,
	qr/resource was not closed/,
	qr/reference leak/,
	qr/leaked/i,
	qr/lock \w+ on object [\d\/]+ is already held/,
	qr/(?:cache|snapshot|buffer|tupdesc|relcache|plancache)[^\n]*leak/i,
	qr/AbortTransaction while in/,
	qr/CommitTransaction(?:Command)? while in/,
	qr/StartTransactionCommand: unexpected state/,
	qr/invalid memory alloc request size/,
	qr/unrecognized (?:message type|logical replication message)/,
	qr/could not find (?:function|block containing chunk)/,
	qr/pfree called with invalid pointer/,
);

sub pa_check_log_clean
{
	my ($node, $pos, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
	my @hits;
	foreach my $line (split /\n/, $log)
	{
		foreach my $re (@bad_log)
		{
			if ($line =~ $re)
			{
				push @hits, $line;
				last;
			}
		}
	}
	my $n = scalar @hits;
	splice(@hits, 20) if @hits > 20;
	return ok($n == 0,
		($name // $node->name) . ': no PANIC, crash, leak or internal error in the server log')
	  || diag("$n suspicious log lines, first ones:\n" . join("\n", @hits));
}

=pod

=item pa_error_attempts($node, $pos, $error_re)

Times (epoch seconds, fractional) at which the server log (from $pos)
recorded an ERROR matching $error_re for the earliest remote transaction
named in its CONTEXT line ("in transaction N").  Each is one attempt to
apply that transaction.

=cut

sub _log_ts
{
	my ($ts) = @_;
	# 2026-11-21 06:52:49.506
	my ($h, $m, $s) = $ts =~ /(\d+):(\d+):(\d+(?:\.\d+)?)$/;
	my ($d) = $ts =~ /^\d+-\d+-(\d+)/;
	return (($d * 24 + $h) * 60 + $m) * 60 + $s;
}

sub pa_error_attempts
{
	my ($node, $pos, $re) = @_;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
	my @lines = split /\n/, $log;
	my %by_xid;
	for (my $i = 0; $i < @lines; $i++)
	{
		# with the next line: $re may reach into the DETAIL
		my $two = $lines[$i] . "\n" . ($lines[ $i + 1 ] // '');
		next unless $two =~ /^(\S+ \S+) \S+ \[(\d+)\][^\n]*ERROR:  $re/;
		my ($ts, $pid) = ($1, $2);
		for (my $j = $i + 1; $j < @lines && $j < $i + 8; $j++)
		{
			if ($lines[$j] =~ /\[$pid\][^\n]*CONTEXT:.* in transaction (\d+)/)
			{
				push @{ $by_xid{$1} }, _log_ts($ts);
				last;
			}
		}
	}
	return () unless %by_xid;
	my ($first) = sort { $a <=> $b } keys %by_xid;
	return @{ $by_xid{$first} };
}

# Poll the log until at least $n attempts are recorded; returns them.
sub pa_wait_attempts
{
	my ($node, $pos, $re, $n) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my @t;
	while (time < $deadline)
	{
		@t = pa_error_attempts($node, $pos, $re);
		return @t if @t >= $n;
		usleep(100_000);
	}
	croak "timed out waiting for $n attempts of: $re (saw " . scalar(@t) . ")";
}

sub pa_log_pos
{
	my ($node) = @_;
	return -s $node->logfile // 0;
}

sub pa_wait_log
{
	my ($node, $re, $pos) = @_;
	return $node->wait_for_log($re, $pos // 0);
}

sub pa_log_since
{
	my ($node, $pos) = @_;
	return PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
}

=pod

=item pa_poll_for($node, $query, $expected, $seconds, $db)

Like pa_poll, but bounded by wall-clock time ($seconds) instead of
timeout_default, and it does not die: returns 1 once $query returns
$expected, 0 after $seconds (with a diag of the last answer).  For the
"must make progress" waits of tests that reproduce hangs.

=cut

sub pa_poll_for
{
	my ($node, $query, $expected, $seconds, $db) = @_;
	$expected //= 't';
	$db //= 'postgres';
	my $deadline = time + $seconds;
	my ($out, $err) = ('', '');
	while (1)
	{
		$node->psql($db, $query, stdout => \$out, stderr => \$err);
		$out //= '';
		$err //= '';
		return 1 if $out eq $expected && $err eq '';
		last if time >= $deadline;
		usleep(200_000);
	}
	diag("not reached within ${seconds}s: <$query> returned <$out> (expected <$expected>)"
		  . ($err ne '' ? " stderr: $err" : ''));
	return 0;
}

=pod

=item pa_check_equal_within($pub, $sub, $seconds, @tables)

pa_check_equal with a wall-clock bound: one test per table, each table
given at most $seconds (measured from the call) to become equal.

=cut

sub pa_check_equal_within
{
	my ($pub, $sub, $seconds, @tables) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $db = 'postgres';
	my $deadline = time + $seconds;
	my $all = 1;
	foreach my $t (@tables)
	{
		my $cols = _columns($pub, $t, $db);
		my $sql = pa_table_hash_sql($t, $cols);
		my $want = $pub->safe_psql($db, $sql);
		my $left = $deadline - time;
		$left = 1 if $left < 1;
		pa_poll_for($sub, $sql, $want, $left, $db);
		my $got = $sub->safe_psql($db, $sql);
		$all = 0 unless is($got, $want, "table $t equal on both sides");
	}
	return $all;
}

=pod

=item pa_catchup_within($pub, $subname, $seconds)

True once the walsender of $subname reports a replay position at or past
the publisher's current WAL position (taken at the call), within $seconds.

=cut

sub pa_catchup_within
{
	my ($pub, $subname, $seconds) = @_;
	my $target = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	return pa_poll_for($pub,
		"SELECT coalesce(bool_and(replay_lsn >= '$target'), false) FROM pg_stat_replication WHERE application_name = '$subname'",
		't', $seconds);
}

=pod

=item pa_wait_log_for($node, $re, $pos, $seconds)

Poll the server log (from offset $pos) for $re for at most $seconds.
Returns the matched text (true) or undef (false); does not die.

=cut

sub pa_wait_log_for
{
	my ($node, $re, $pos, $seconds) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
		return $1 if $log =~ /($re)/;
		return undef if time >= $deadline;
		usleep(100_000);
	}
}

=pod

=item pa_log_errors($node, $pos, $max)

The ERROR/FATAL lines of the server log from $pos (at most $max, default
10, with the line after each), as one string; for diagnostics and for
tests that require a clean log.

=cut

sub pa_log_errors
{
	my ($node, $pos, $max) = @_;
	$max //= 10;
	my @lines = split /\n/, PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
	my @hits;
	for (my $i = 0; $i < @lines && @hits < $max; $i++)
	{
		next unless $lines[$i] =~ /(?:ERROR|FATAL|PANIC):  /;
		my $h = $lines[$i];
		$h .= "\n" . $lines[ $i + 1 ]
		  if $i + 1 < @lines && $lines[ $i + 1 ] =~ /(?:DETAIL|CONTEXT|HINT):  /;
		push @hits, $h;
	}
	return join("\n", @hits);
}

=pod

=item pa_stat($sub, $subname, $column)

One column of parallel_apply.stat_subscription for $subname ('' when the
subscription has no row, undef with PA_NO_ENGINE).

=cut

sub pa_stat
{
	my ($sub, $subname, $col, $db) = @_;
	return undef unless pa_engine();
	return $sub->safe_psql($db // 'postgres',
		"SELECT $col FROM parallel_apply.stat_subscription WHERE subname = '$subname'");
}

=pod

=item pa_stop_applying($sub, $subname) / pa_resume_applying($sub, $subname)

Stop applying the subscription (detach, DISABLE, wait until the built-in
worker is gone), so that the publisher's work piles up in the slot as a
backlog; then hand it to the engine again (attach takes a disabled
subscription), or, with PA_NO_ENGINE, ENABLE it.

=cut

sub pa_stop_applying
{
	my ($sub, $subname) = @_;
	pa_detach($sub, $subname);
	$sub->safe_psql('postgres', "ALTER SUBSCRIPTION $subname DISABLE");
	pa_poll($sub,
		"SELECT count(*) FROM pg_stat_subscription WHERE subname = '$subname' AND pid IS NOT NULL",
		'0', 'built-in apply worker gone');
	return;
}

sub pa_resume_applying
{
	my ($sub, $subname) = @_;
	if (pa_engine())
	{
		pa_attach($sub, $subname);
	}
	else
	{
		$sub->safe_psql('postgres', "ALTER SUBSCRIPTION $subname ENABLE");
	}
	return;
}

=pod

=item pa_wait_until($seconds, $check)

Call $check (a code reference) every 100 ms until it returns true, for at
most $seconds; returns 1 when it did, 0 on the timeout.  For conditions a
single poll_query_until cannot express: queries on two nodes, a condition
that must hold in several polls in a row.

=cut

sub pa_wait_until
{
	my ($seconds, $check) = @_;
	my $deadline = time + $seconds;
	while (1)
	{
		return 1 if $check->();
		return 0 if time >= $deadline;
		usleep(100_000);
	}
}

=pod

=item pa_log_messages($node, $pos)

The server log from offset $pos, parsed into messages: a list of hashes
{ ts, pid, level, msg, detail, hint, context, statement, text }.  A
message's DETAIL, HINT, CONTEXT, STATEMENT and QUERY lines (logged as lines
of their own with the same pid) are attached to it, and continuation lines
(starting with a tab) are joined with "\n"; text is the whole entry as
logged.  Relies on PostgreSQL::Test::Cluster's log_line_prefix
('%m [%p] %q%a ').

=cut

sub pa_log_messages
{
	my ($node, $pos) = @_;
	my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile, $pos // 0);
	my @msgs;
	my %last_of_pid;
	my $cur;		# the entry the next continuation line belongs to
	my $curfield;
	foreach my $line (split /\n/, $log)
	{
		if ($line =~ /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+) \[(\d+)\] (?:.*? )?(DEBUG\d|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION):  (.*)$/)
		{
			my ($ts, $pid, $level, $rest) = ($1, $2, $3, $4);
			if ($level =~ /^(?:DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION)$/)
			{
				my $m = $last_of_pid{$pid};
				if (defined $m)
				{
					my $f = lc $level;
					$m->{$f} = defined $m->{$f} ? "$m->{$f}\n$rest" : $rest;
					$m->{text} .= "\n$line";
					$cur = $m;
					$curfield = $f;
				}
				next;
			}
			my $m = { ts => $ts, pid => $pid, level => $level, msg => $rest, text => $line };
			push @msgs, $m;
			$last_of_pid{$pid} = $m;
			$cur = $m;
			$curfield = 'msg';
		}
		elsif ($line =~ /^\t(.*)$/ && defined $cur)
		{
			$cur->{$curfield} .= "\n$1";
			$cur->{text} .= "\n$line";
		}
	}
	return @msgs;
}

=pod

=item pa_log_engine_pids($node, $pos)

Hash (pid => 'leader' or 'worker') of the processes the server log (from
$pos) shows to be parallel_apply leaders or workers: the postmaster's
"background worker "parallel_apply leader|worker ..." (PID n)" lines (logged
when one exits with an error) and the leaders' own "parallel_apply leader
for subscription ..." messages.

=cut

sub pa_log_engine_pids
{
	my ($node, $pos) = @_;
	my %pids;
	foreach my $m (pa_log_messages($node, $pos))
	{
		while ($m->{msg} =~ /background worker "parallel_apply (leader|worker)[^"]*" \(PID (\d+)\)/g)
		{
			$pids{$2} = $1;
		}
		$pids{ $m->{pid} } //= 'leader'
		  if $m->{msg} =~ /^parallel_apply leader for subscription /;
	}
	return %pids;
}

=pod

=item pa_log_engine_errors($node, $pos)

The ERROR messages (as pa_log_messages entries) that parallel_apply
leaders or workers logged from $pos on (see pa_log_engine_pids).

=cut

sub pa_log_engine_errors
{
	my ($node, $pos) = @_;
	my %pids = pa_log_engine_pids($node, $pos);
	return grep { $_->{level} eq 'ERROR' && exists $pids{ $_->{pid} } }
	  pa_log_messages($node, $pos);
}

=pod

=item pa_engine_procs($node, $db)

Number of 'parallel_apply leader' and 'parallel_apply worker' processes in
pg_stat_activity (of every database).

=cut

sub pa_engine_procs
{
	my ($node, $db) = @_;
	return $node->safe_psql($db // 'postgres', q{
SELECT count(*) FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')});
}

=pod

=item pa_wait_no_engine_procs($node, $seconds)

True once no 'parallel_apply leader' or 'parallel_apply worker' process
is left (within $seconds); does not die.

=cut

sub pa_wait_no_engine_procs
{
	my ($node, $seconds) = @_;
	return pa_poll_for($node, q{
SELECT count(*) FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')},
		'0', $seconds);
}

=pod

=item pa_rel_stat($sub, $subname, $rel, $cols)

Columns $cols (default 'lookup_index, rows_looked_up, rows_not_found,
seq_scans') of the row of parallel_apply.stat_relations for subscription
$subname and relation $rel (a name regclass accepts), joined by '|' (a NULL
lookup_index is ''); '' when there is no row; undef with PA_NO_ENGINE.

=cut

sub pa_rel_stat
{
	my ($sub, $subname, $rel, $cols, $db) = @_;
	return undef unless pa_engine();
	$cols //= 'lookup_index, rows_looked_up, rows_not_found, seq_scans';
	return $sub->safe_psql($db // 'postgres',
		"SELECT $cols FROM parallel_apply.stat_relations WHERE subname = '$subname' AND relid = '$rel'::regclass"
	);
}

=pod

=item pa_rel_stats_all($sub, $subname)

All rows of parallel_apply.stat_relations for $subname as text, one line per
relation ordered by name (relid|replica_identity|lookup_index|rows_looked_up|
rows_not_found|seq_scans), for notes and diagnostics; '' with PA_NO_ENGINE.

=cut

sub pa_rel_stats_all
{
	my ($sub, $subname, $db) = @_;
	return '' unless pa_engine();
	return $sub->safe_psql($db // 'postgres',
		"SELECT relid, replica_identity, lookup_index, rows_looked_up, rows_not_found, seq_scans FROM parallel_apply.stat_relations WHERE subname = '$subname' ORDER BY relid::text"
	);
}


=pod

=item pa_unique_violation_re($index)

A regex for the log line of a remote change that a local row blocks in
unique index $index: PostgreSQL 15's own "duplicate key value violates
unique constraint" with PA_NO_ENGINE, else the engine's PostgreSQL 18
conflict message (insert_exists, update_exists or
multiple_unique_conflicts) and the first line of its DETAIL, which names
the index.  One match per failed attempt.

=cut

sub pa_unique_violation_re
{
	my ($index) = @_;
	return qr/duplicate key value violates unique constraint "\Q$index\E"/
	  unless pa_engine();
	return qr/conflict detected on relation "[^"]+": conflict=(?:insert_exists|update_exists|multiple_unique_conflicts)\n[^\n]*DETAIL:  Key already exists in unique index "\Q$index\E"/;
}

=pod

=item pa_missing_row_re()

A regex for the log line of an UPDATE or DELETE whose row is not there:
PostgreSQL 15's DEBUG1 "did not find row" with PA_NO_ENGINE, else the
engine's update_missing / delete_missing conflict (LOG).

=cut

sub pa_missing_row_re
{
	return qr/logical replication did not find row to be (?:updated|deleted)/
	  unless pa_engine();
	return qr/conflict detected on relation "[^"]+": conflict=(?:update|delete)_missing/;
}


=pod

=item pa_set_owner($sub, $subname, $role, $processes)

Make the existing non-superuser $role the owner of subscription $subname
(ALTER SUBSCRIPTION ... OWNER TO needs the new owner to be a superuser at
that moment in PostgreSQL 15, so $role is one for the statement only) and,
with the engine, wait until its $processes processes (leader and workers)
run as $role and it streams again.

=cut

sub pa_set_owner
{
	my ($sub, $subname, $role, $processes) = @_;
	$sub->safe_psql('postgres', qq{
ALTER ROLE $role SUPERUSER;
ALTER SUBSCRIPTION $subname OWNER TO $role;
ALTER ROLE $role NOSUPERUSER;
});
	return unless pa_engine();
	pa_poll($sub, qq{
SELECT count(*) = $processes AND bool_and(usename = '$role') FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')},
		't', "the engine runs as $role");
	pa_wait_engine($sub, $subname);
	return;
}

1;
