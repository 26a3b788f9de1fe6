
# Copyright (c) parallel_apply authors
#
# PgSuite -- run PostgreSQL 15's own logical-replication TAP tests
# (src/test/subscription/t/*.pl, unmodified) with parallel_apply applying
# their subscriptions.  Loaded into each test script with
#
#     PERL5OPT=-MPgSuite prove t/001_rep_changes.pl ...
#
# (t/run.sh does this; see its "PostgreSQL's subscription tests" step).  It
# changes PostgreSQL::Test::Cluster in place, so the tests need no edit:
#
#  - init: every node gets shared_preload_libraries = 'parallel_apply' and
#    room for the engine's processes (the lines in $engine_conf below).
#
#  - psql (and so safe_psql, which calls it): before the test's SQL runs,
#    it is scanned for subscription commands.
#      CREATE SUBSCRIPTION       the database is remembered as a subscriber
#                                database, and CREATE EXTENSION
#                                parallel_apply is done there (once).
#      ALTER SUBSCRIPTION s DISABLE
#                                if s is attached: detach it and disable it
#                                in one transaction, so apply stops as the
#                                test expects (an attached subscription is
#                                already disabled in the catalog, so the
#                                test's DISABLE alone would change nothing).
#      ALTER SUBSCRIPTION s ENABLE | REFRESH PUBLICATION |
#                        SET/ADD/DROP PUBLICATION
#                                if s is attached: detach it first, so the
#                                built-in worker owns it while the command
#                                runs (these commands need an enabled
#                                subscription, and REFRESH needs the
#                                built-in worker to run tablesync).
#    Every other command (RENAME, OWNER, CONNECTION, SET (...), SKIP, DROP)
#    is left to the engine, which follows the catalog (and stops itself on
#    DROP SUBSCRIPTION).
#
#  - attach points: a subscription is handed to the engine with
#    parallel_apply.attach() when it is "ready": enabled, two_phase off
#    (two_phase subscriptions stay with the built-in worker: the engine
#    refuses them), a slot, not attached yet, and every table of it in state
#    'r'.  Readiness is read from the catalog each time, so nothing about a
#    subscription is remembered between calls.  It is checked
#      * in wait_for_subscription_sync, after the tables reached 'r'/'s'
#        (it then also waits for 's' to become 'r', which the built-in
#        apply worker does within a second), for the named subscription or
#        for every subscription of that database;
#      * in poll_query_until on a subscriber, after a successful poll of a
#        query on pg_subscription_rel.srsubstate (a test's own sync wait);
#      * in wait_for_catchup($name) on any node, before and after the wait,
#        for the subscriptions named $name of every subscriber database,
#        without waiting for readiness: one that is not ready (still
#        synchronizing, or disabled) stays with the built-in worker until a
#        later attach point.
#    After attach, the harness waits (polling, with the usual timeout)
#    until parallel_apply.stat_subscription says 'streaming' and the
#    built-in apply worker has exited; a timeout there fails the test.
#
#  - not-applicable checks: t/pg_suite_skips.txt lists, per test file,
#    checks (by test name regexp) that inspect the built-in worker itself
#    (its log lines, its pg_stat_subscription rows, ...), each with the
#    reason.  Those checks still run, but as TODO tests: a failure is
#    reported ("not ok ... # TODO not applicable: ...") and does not fail
#    the file.  Nothing else is changed.
#
# Everything the harness does is printed to the test's regress_log
# ("PgSuite: ..."), with a summary line at the end.  With PA_NO_ENGINE=1 the
# module does nothing at all (the tests run against the built-in worker).
#
# The module is inert unless the running script is a test file (*.pl): prove
# itself also sees PERL5OPT and must not load PostgreSQL::Test::Utils (whose
# INIT block would redirect prove's output).

package PgSuite;

use strict;
use warnings;

# Only in a test script, and only with the engine.
my $active = ($0 =~ /\.pl\z/ && !($ENV{PA_NO_ENGINE} // ''));

# Settings appended to every node's postgresql.conf by init (cf. t/PaTest.pm,
# pa_subscriber): the preload, bgworker slots for a launcher plus, per
# attached subscription, a leader and its workers, and a short retry
# interval so an engine that stopped on an error comes back quickly.
our $engine_conf = <<'EOC';
# Added by PgSuite (parallel_apply)
shared_preload_libraries = 'parallel_apply'
max_worker_processes = 32
parallel_apply.max_subscriptions = 8
parallel_apply.workers = 4
parallel_apply.retry_interval = 1000
EOC

my %orig;                 # original methods of PostgreSQL::Test::Cluster
my @subscriber_dbs;       # [node, dbname] pairs that have subscriptions
my %have_ext;             # "port/db" => 1 once CREATE EXTENSION is done
my %stats = (attach => 0, detach => 0);
my @attached_names;
my @skips;                # [regexp, reason] for the current test file
our $in_sync_wait = 0;    # inside the original wait_for_subscription_sync

sub _log
{
	print "PgSuite: ", @_, "\n";
	return;
}

sub _q
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

sub _install
{
	no strict 'refs';
	no warnings qw(redefine once);
	for my $m (qw(init psql poll_query_until wait_for_catchup
		wait_for_subscription_sync))
	{
		$orig{$m} = \&{"PostgreSQL::Test::Cluster::$m"};
	}
	*PostgreSQL::Test::Cluster::init = \&_init;
	*PostgreSQL::Test::Cluster::psql = \&_psql;
	*PostgreSQL::Test::Cluster::poll_query_until = \&_poll_query_until;
	*PostgreSQL::Test::Cluster::wait_for_catchup = \&_wait_for_catchup;
	*PostgreSQL::Test::Cluster::wait_for_subscription_sync =
	  \&_wait_for_subscription_sync;
	_load_skips();
	_install_todo();
	return;
}

# ---------------------------------------------------------------- wrappers

sub _init
{
	my ($self) = @_;
	my @r = $orig{init}->(@_);
	$self->append_conf('postgresql.conf', $engine_conf);
	return @r;
}

sub _psql
{
	my ($self, $dbname, $sql) = @_;
	_before_sql($self, $dbname, $sql) if defined $sql && !ref $sql;
	return $orig{psql}->(@_);
}

sub _poll_query_until
{
	my ($self, $dbname, $query) = @_;
	my $ok = $orig{poll_query_until}->(@_);
	if (   $ok
		&& !$in_sync_wait
		&& defined $query
		&& $query =~ /pg_subscription_rel/i
		&& $query =~ /srsubstate/i
		&& _is_subscriber_db($self, $dbname))
	{
		_attach_ready($self, $dbname, undef, 1);
	}
	return $ok;
}

sub _wait_for_catchup
{
	my ($self, $standby_name) = @_;
	my $name =
	  Scalar::Util::blessed($standby_name) ? $standby_name->name : $standby_name;
	_attach_named($name);
	my @r = $orig{wait_for_catchup}->(@_);
	# it may have become ready while the built-in worker caught up
	_attach_named($name);
	return @r;
}

# Attach the ready subscriptions called $name of every subscriber database.
sub _attach_named
{
	my ($name) = @_;
	return unless defined $name;
	foreach my $sd (@subscriber_dbs)
	{
		my ($node, $db) = @$sd;
		next unless defined $node->{_pid};    # stopped
		_attach_ready($node, $db, $name, 0);
	}
	return;
}

sub _wait_for_subscription_sync
{
	my ($self, $publisher, $subname, $dbname) = @_;
	# same argument check as the original, which would croak after its wait
	return $orig{wait_for_subscription_sync}->(@_)
	  if defined $publisher && !defined $subname;
	$dbname //= 'postgres';
	{
		# its own poll of pg_subscription_rel is not an attach point
		local $in_sync_wait = 1;
		$orig{wait_for_subscription_sync}->($self, undef, undef, $dbname);
	}
	_attach_ready($self, $dbname, $subname, 1)
	  if _is_subscriber_db($self, $dbname);
	$publisher->wait_for_catchup($subname) if defined $publisher;
	return;
}

# ---------------------------------------------------------------- helpers

# Run SQL with the original psql; returns stdout, dies on error.
sub _sql
{
	my ($node, $db, $sql) = @_;
	my ($out, $err);
	$orig{psql}->(
		$node, $db, $sql,
		stdout => \$out,
		stderr => \$err,
		on_error_die => 1,
		on_error_stop => 1);
	return $out;
}

sub _poll
{
	my ($node, $db, $query, $what) = @_;
	return 1 if $orig{poll_query_until}->($node, $db, $query);
	_log("timed out waiting for $what on ", $node->name);
	return 0;
}

sub _key
{
	my ($node, $db) = @_;
	return $node->port . "/$db";
}

sub _is_subscriber_db
{
	my ($node, $db) = @_;
	return $have_ext{ _key($node, $db // 'postgres') } ? 1 : 0;
}

sub _register
{
	my ($node, $db) = @_;
	my $k = _key($node, $db);
	return if $have_ext{$k};
	_sql($node, $db, 'CREATE EXTENSION IF NOT EXISTS parallel_apply');
	$have_ext{$k} = 1;
	push @subscriber_dbs, [ $node, $db ];
	_log("CREATE EXTENSION parallel_apply in database \"$db\" of ",
		$node->name);
	return;
}

sub _is_attached
{
	my ($node, $db, $sub) = @_;
	return 0 unless _is_subscriber_db($node, $db);
	return _sql($node, $db,
		'SELECT count(*) FROM parallel_apply.stat_subscription WHERE subname = '
		  . _q($sub)) ne '0';
}

# Subscription names in a command: unquoted names are folded to lower case.
sub _ident
{
	my ($s) = @_;
	if ($s =~ /^"(.*)"$/s)
	{
		(my $n = $1) =~ s/""/"/g;
		return $n;
	}
	return lc $s;
}

# Before the test's SQL runs on $node: react to subscription commands.
sub _before_sql
{
	my ($node, $db, $sql) = @_;
	$db //= 'postgres';
	return unless $sql =~ /SUBSCRIPTION/i;

	_register($node, $db) if $sql =~ /\bCREATE\s+SUBSCRIPTION\b/i;

	my %done;
	while ($sql =~
		/\bALTER\s+SUBSCRIPTION\s+("(?:[^"]|"")+"|\w+)\s+(\w+)(?:\s+(\w+))?/gi)
	{
		my ($sub, $verb, $what) = (_ident($1), uc $2, uc($3 // ''));
		my $action;
		if ($verb eq 'DISABLE')
		{
			$action = 'disable';
		}
		elsif ($verb eq 'ENABLE'
			|| ($verb =~ /^(?:REFRESH|SET|ADD|DROP)$/ && $what eq 'PUBLICATION'))
		{
			$action = 'detach';
		}
		next unless $action;
		next if $done{$sub}++;
		next unless _is_attached($node, $db, $sub);
		if ($action eq 'disable')
		{
			_log("before \"ALTER SUBSCRIPTION $sub $verb\": detach $sub and keep it disabled");
			_sql($node, $db,
				    "BEGIN; SELECT parallel_apply.detach(" . _q($sub) . "); "
				  . "ALTER SUBSCRIPTION \"$sub\" DISABLE; COMMIT;");
		}
		else
		{
			_log("before \"ALTER SUBSCRIPTION $sub $verb"
				  . ($what ? " $what" : '')
				  . "\": detach $sub");
			_sql($node, $db, "SELECT parallel_apply.detach(" . _q($sub) . ")");
		}
		$stats{detach}++;
	}
	return;
}

# Hand every ready subscription of ($node, $db) -- only $name if given -- to
# the engine.  With $wait, first wait until its tables have left 's' for 'r'
# (unless some table is in another state, i.e. not about to be ready).
sub _attach_ready
{
	my ($node, $db, $name, $wait) = @_;
	return unless _is_subscriber_db($node, $db);
	my $only = defined $name ? ' AND s.subname = ' . _q($name) : '';
	my $mine =
	  "s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())$only";

	if ($wait)
	{
		_poll(
			$node, $db,
			qq{SELECT count(*) FILTER (WHERE r.srsubstate <> 'r') = 0
			       OR count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')) > 0
			   FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
			   WHERE s.subenabled AND $mine},
			"tables in state 'r'");
	}

	my $ready = _sql(
		$node, $db,
		qq{SELECT s.subname FROM pg_subscription s
		   WHERE $mine AND s.subenabled AND s.subtwophasestate = 'd'
		     AND s.subslotname IS NOT NULL
		     AND NOT EXISTS (SELECT 1 FROM parallel_apply.stat_subscription a
		                     WHERE a.subid = s.oid)
		     AND NOT EXISTS (SELECT 1 FROM pg_subscription_rel r
		                     WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
		   ORDER BY 1});
	foreach my $sub (grep { $_ ne '' } split /\n/, $ready)
	{
		_log("attach $sub on ", $node->name, " (database \"$db\")");
		my $t0 = Time::HiRes::time();
		_sql($node, $db, 'SELECT parallel_apply.attach(' . _q($sub) . ')');
		my $q = _q($sub);
		_poll(
			$node, $db,
			qq{SELECT (SELECT count(*) FROM parallel_apply.stat_subscription
			           WHERE subname = $q AND state = 'streaming'
			             AND leader_pid IS NOT NULL) = 1
			      AND (SELECT count(*) FROM pg_stat_subscription
			           WHERE subname = $q AND pid IS NOT NULL) = 0},
			"parallel_apply streaming for $sub")
		  or die "PgSuite: parallel_apply did not take over subscription \"$sub\" on "
		  . $node->name . "\n";
		_log(sprintf("%s is applied by parallel_apply (after %.1fs)",
				$sub, Time::HiRes::time() - $t0));
		$stats{attach}++;
		push @attached_names, $sub;
	}
	return;
}

# ---------------------------------------------------------------- N/A checks

sub _load_skips
{
	my $script = File::Basename::basename($0, '.pl');
	my $file = File::Basename::dirname(__FILE__) . '/pg_suite_skips.txt';
	open my $fh, '<', $file or die "PgSuite: cannot open $file: $!\n";
	while (my $line = <$fh>)
	{
		chomp $line;
		next if $line =~ /^\s*(?:#|$)/;
		my ($f, $re, $reason) = split /\t+/, $line, 3;
		die "PgSuite: bad line in $file: $line\n" unless defined $reason;
		push @skips, [ qr/$re/, $reason ] if $f eq $script;
	}
	close $fh;
	return;
}

# Checks listed in pg_suite_skips.txt run as TODO tests.
sub _install_todo
{
	return unless @skips;
	my $orig_ok = \&Test::Builder::ok;
	no warnings 'redefine';
	*Test::Builder::ok = sub {
		my ($tb, $test, $name) = @_;
		local $Test::Builder::Level = $Test::Builder::Level + 1;
		foreach my $s (@skips)
		{
			next unless defined $name && $name =~ $s->[0];
			$tb->todo_start("not applicable with parallel_apply: $s->[1]");
			my $r = $orig_ok->(@_);
			$tb->todo_end;
			return $r;
		}
		return $orig_ok->(@_);
	};
	return;
}

if ($active)
{
	require PostgreSQL::Test::Cluster;
	require PostgreSQL::Test::Utils;
	require Test::Builder;
	require File::Basename;
	require Scalar::Util;
	require Time::HiRes;
	_install();
}

END
{
	if ($active)
	{
		_log("summary: $stats{attach} attach(es)",
			(@attached_names ? " (@attached_names)" : ''),
			", $stats{detach} detach(es) around subscription commands");
	}
}

1;
