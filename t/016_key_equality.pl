
# Copyright (c) parallel_apply authors
#
# Differential test: keys whose equal values are sent with different bytes.
#
# The dependency tracker hashes key values.  Where byte equality is not the
# subscriber's equality, two transactions that touch the same key value
# spelled differently ('Foo' and 'FOO' in citext) must still get the same
# hash, or the second may run before the first has committed: a unique
# violation (or a deadlock), and the engine then has to re-apply the window
# serially.  Each case below is a table pair with such a key:
#
#  (a) citext: ca (id int PRIMARY KEY, k citext NOT NULL UNIQUE), REPLICA
#      IDENTITY FULL on the publisher (so a DELETE or UPDATE sends the whole
#      old row and the value it frees is visible to the tracker; with the
#      default identity a freed non-identity unique value is a documented
#      blind spot, not what this test is about), and cb (k citext NOT NULL,
#      v int) with REPLICA IDENTITY USING INDEX on a unique index of k;
#  (b) interval: ib (id int PRIMARY KEY, k interval NOT NULL UNIQUE) FULL,
#      and ia (k interval PRIMARY KEY, v int): '1 day', '24:00:00' and
#      '0 days 24:00:00' are equal intervals, as are '30 days' and '1 mon';
#  (c) a nondeterministic ICU collation ci (und-u-ks-level2, case
#      insensitive): na (id int PRIMARY KEY, k text COLLATE ci NOT NULL
#      UNIQUE) FULL, and nb (k text COLLATE ci PRIMARY KEY, v int); skipped
#      with a message when the server has no ICU;
#  (d) a partitioned target on the subscriber whose leaf partitions have
#      unique indexes on u that only the leaves have (not the parent); the
#      publisher's pt (id int PRIMARY KEY, u int NOT NULL, v int) is a plain
#      table; values of u are freed (DELETE, UPDATE of u, moves between
#      leaves) and reused by later transactions in the same leaf;
#  (e) numeric: mb (id int PRIMARY KEY, k numeric NOT NULL UNIQUE) FULL, and
#      ma (k numeric PRIMARY KEY, v int): '1.0', '1.00', '1' (the
#      subscription is in text mode, the default).
#
# For each case, with parallel_apply.workers = 4 and group_size = 1:
#  - a backlog: the subscription is detached and disabled while the
#    publisher runs 1500 one-statement transactions over a small
#    key space (40 values per table, each value written in several
#    spellings; values deleted or moved away are reused at once by later
#    transactions with another spelling, and some transactions delete 'Foo'
#    and insert 'FOO' together), plus filler transactions on another table;
#    then attach and catch up;
#  - forced probes: a session on the subscriber holds a row lock on the row
#    the publisher then deletes (or moves to another value), and the next
#    publisher transaction takes the freed value in another spelling.  The
#    worker applying the DELETE waits for our lock; if the tracker missed
#    the equality, the second transaction runs on another worker at once and
#    fails on the unique index.  Once the engine is settled (everything
#    sent, one worker waiting for our lock, no other worker applying)
#    the lock is released;
#  - then: every table equal on both sides (ordered md5), no ERROR in the
#    subscriber log, and with the engine serial_retries = 0 (stat_subscription
#    counts from the attach).
# A case whose backlog or probes the subscriber does not apply (a crash of
# one of its processes is noticed at once, not after a timeout) fails with
# one test and the file goes on with the next case; (c) runs last.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PaSession;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $txns = $ENV{PA_016_TXNS} || 1500;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\n");

pa_both($pub, $sub, 'CREATE EXTENSION citext');

# ICU: a nondeterministic collation needs it
my $icu = 1;
{
	my ($ret, $out, $err) = $sub->psql('postgres',
		"CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)");
	if ($ret != 0)
	{
		$icu = 0;
		note "no ICU collation on this server, case (c) is skipped: $err";
	}
	else
	{
		$pub->safe_psql('postgres',
			"CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)");
	}
}

my %ddl = (
	# (a) citext
	ca => {
		pub => 'CREATE TABLE ca (id int PRIMARY KEY, k citext NOT NULL UNIQUE); ALTER TABLE ca REPLICA IDENTITY FULL',
		sub => 'CREATE TABLE ca (id int PRIMARY KEY, k citext NOT NULL UNIQUE)',
	},
	cb => {
		both => 'CREATE TABLE cb (k citext NOT NULL, v int); CREATE UNIQUE INDEX cb_k ON cb (k); ALTER TABLE cb REPLICA IDENTITY USING INDEX cb_k',
	},
	# (b) interval
	ib => {
		pub => 'CREATE TABLE ib (id int PRIMARY KEY, k interval NOT NULL UNIQUE); ALTER TABLE ib REPLICA IDENTITY FULL',
		sub => 'CREATE TABLE ib (id int PRIMARY KEY, k interval NOT NULL UNIQUE)',
	},
	ia => { both => 'CREATE TABLE ia (k interval PRIMARY KEY, v int)' },
	# (c) nondeterministic collation
	na => {
		pub => 'CREATE TABLE na (id int PRIMARY KEY, k text COLLATE ci NOT NULL UNIQUE); ALTER TABLE na REPLICA IDENTITY FULL',
		sub => 'CREATE TABLE na (id int PRIMARY KEY, k text COLLATE ci NOT NULL UNIQUE)',
	},
	nb => { both => 'CREATE TABLE nb (k text COLLATE ci PRIMARY KEY, v int)' },
	# (d) unique indexes only on the leaves of a partitioned target
	pt => {
		pub => 'CREATE TABLE pt (id int PRIMARY KEY, u int NOT NULL, v int)',
		sub => q{
CREATE TABLE pt (id int PRIMARY KEY, u int NOT NULL, v int) PARTITION BY RANGE (id);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (MINVALUE) TO (500);
CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM (500) TO (MAXVALUE);
CREATE UNIQUE INDEX pt_1_u ON pt_1 (u);
CREATE UNIQUE INDEX pt_2_u ON pt_2 (u);
},
	},
	# (e) numeric
	mb => {
		pub => 'CREATE TABLE mb (id int PRIMARY KEY, k numeric NOT NULL UNIQUE); ALTER TABLE mb REPLICA IDENTITY FULL',
		sub => 'CREATE TABLE mb (id int PRIMARY KEY, k numeric NOT NULL UNIQUE)',
	},
	ma => { both => 'CREATE TABLE ma (k numeric PRIMARY KEY, v int)' },
	f => { both => 'CREATE TABLE f (id int PRIMARY KEY, v int)' },
);
my @tables = ('ca', 'cb', 'ib', 'ia', ($icu ? ('na', 'nb') : ()), 'pt', 'mb', 'ma', 'f');
foreach my $t (@tables)
{
	my $d = $ddl{$t};
	$pub->safe_psql('postgres', $d->{both} // $d->{pub});
	$sub->safe_psql('postgres', $d->{both} // $d->{sub});
}
$pub->safe_psql('postgres', 'INSERT INTO f SELECT i, 0 FROM generate_series(1, 50) i');

pa_subscribe($pub, $sub, 'sub', tables => \@tables);
pa_check_equal($pub, $sub, @tables);
pa_attach($sub, 'sub');

# ---------------------------------------------------------------- spellings
# Each key class (an integer) has several spellings, equal for the
# subscriber's type but different in bytes.
sub case_spellings
{
	my ($c) = @_;
	my $w = "foo$c";
	return ($w, uc $w, ucfirst $w, 'fOo' . $c);
}

sub interval_spellings
{
	my ($c) = @_;
	my @s = ("$c days", (24 * $c) . ':00:00', ($c - 1) . ' days 24:00:00');
	push @s, ($c / 30) . ' mons' if $c % 30 == 0;
	return @s;
}

sub numeric_spellings
{
	my ($c) = @_;
	my $x = $c / 2;
	my @s = (sprintf('%.1f', $x), sprintf('%.2f', $x), sprintf('%.3f', $x));
	unshift @s, "$x" if $x == int($x);
	return @s;
}

my %spell = (
	ca => \&case_spellings,
	cb => \&case_spellings,
	na => \&case_spellings,
	nb => \&case_spellings,
	ib => \&interval_spellings,
	ia => \&interval_spellings,
	mb => \&numeric_spellings,
	ma => \&numeric_spellings,
);

my $classes = 40;
my $case_logpos = 0;    # subscriber log offset where the running case began
my $crashed = 0;

sub q_lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'" }

# ---------------------------------------------------------------- workload
# Models, so that each statement does what it means on the publisher.
#  id tables (ca, ib, na, mb): rows id => [class, spelling]
#  key tables (cb, ia, nb, ma): rows class => [spelling, v]
# Freed classes are kept most recent first and reused at once, in another
# spelling than the one that was freed.
my %model;
my $next_id = 1;

sub model_of
{
	my ($t) = @_;
	$model{$t} //= { rows => {}, used => {}, free => [], last => {}, recent => [] };
	return $model{$t};
}

sub other_spelling
{
	my ($t, $c, $not) = @_;
	my @s = $spell{$t}->($c);
	my @o = grep { !defined $not || $_ ne $not } @s;
	return $o[ int(rand(@o)) ];
}

# a class nobody holds: the one freed last (usually), else any free one
sub take_class
{
	my ($m) = @_;
	while (@{ $m->{free} } && rand() < 0.9)
	{
		my $c = shift @{ $m->{free} };
		return $c unless $m->{used}{$c};
	}
	my @f = grep { !$m->{used}{$_} } 1 .. $classes;
	return undef unless @f;
	return $f[ int(rand(@f)) ];
}

sub free_class
{
	my ($m, $c, $spelling) = @_;
	delete $m->{used}{$c};
	$m->{last}{$c} = $spelling;
	unshift @{ $m->{free} }, $c;
}

sub pick_row
{
	my ($m) = @_;
	my @recent = grep { exists $m->{rows}{$_} } @{ $m->{recent} };
	return $recent[ int(rand(@recent)) ] if @recent && rand() < 0.7;
	my @all = sort { $a <=> $b } keys %{ $m->{rows} };
	return undef unless @all;
	return $all[ int(rand(@all)) ];
}

sub touch
{
	my ($m, $r) = @_;
	push @{ $m->{recent} }, $r;
	shift @{ $m->{recent} } while @{ $m->{recent} } > 5;
}

# one transaction on an id table: (id int PRIMARY KEY, k UNIQUE)
sub gen_id_table
{
	my ($t) = @_;
	my $m = model_of($t);
	my $r = rand();
	my $n = scalar keys %{ $m->{rows} };
	if ($r < 0.30 || $n < 5)
	{
		my $c = take_class($m);
		if (defined $c)
		{
			my $s = other_spelling($t, $c, $m->{last}{$c});
			my $id = $next_id++;
			$m->{rows}{$id} = [ $c, $s ];
			$m->{used}{$c} = 1;
			touch($m, $id);
			return "INSERT INTO $t VALUES ($id, " . q_lit($s) . ");";
		}
	}
	my $id = pick_row($m);
	my ($c, $s) = @{ $m->{rows}{$id} };
	if ($r < 0.50)
	{
		delete $m->{rows}{$id};
		free_class($m, $c, $s);
		return "DELETE FROM $t WHERE id = $id;";
	}
	if ($r < 0.62)
	{
		# the value changes spelling only: same key, other bytes
		my $s2 = other_spelling($t, $c, $s);
		$m->{rows}{$id}[1] = $s2;
		touch($m, $id);
		return "UPDATE $t SET k = " . q_lit($s2) . " WHERE id = $id;";
	}
	if ($r < 0.80)
	{
		# the row moves to another value: its value is freed
		my $c2 = take_class($m);
		if (defined $c2)
		{
			my $s2 = other_spelling($t, $c2, $m->{last}{$c2});
			$m->{used}{$c2} = 1;
			free_class($m, $c, $s);
			$m->{rows}{$id} = [ $c2, $s2 ];
			touch($m, $id);
			return "UPDATE $t SET k = " . q_lit($s2) . " WHERE id = $id;";
		}
	}
	# delete 'Foo' and insert 'FOO' in one transaction
	my $s2 = other_spelling($t, $c, $s);
	my $id2 = $next_id++;
	delete $m->{rows}{$id};
	$m->{rows}{$id2} = [ $c, $s2 ];
	touch($m, $id2);
	return "BEGIN; DELETE FROM $t WHERE k = " . q_lit(other_spelling($t, $c, undef))
	  . "; INSERT INTO $t VALUES ($id2, " . q_lit($s2) . "); COMMIT;";
}

# one transaction on a key table: (k PRIMARY KEY or identity index, v int)
sub gen_key_table
{
	my ($t) = @_;
	my $m = model_of($t);
	my $r = rand();
	my $n = scalar keys %{ $m->{rows} };
	if ($r < 0.30 || $n < 5)
	{
		my $c = take_class($m);
		if (defined $c)
		{
			my $s = other_spelling($t, $c, $m->{last}{$c});
			$m->{rows}{$c} = [ $s, 0 ];
			$m->{used}{$c} = 1;
			touch($m, $c);
			return "INSERT INTO $t VALUES (" . q_lit($s) . ", 0);";
		}
	}
	my $c = pick_row($m);
	my ($s, $v) = @{ $m->{rows}{$c} };
	# the publisher finds the row by any spelling
	my $where = 'k = ' . q_lit(other_spelling($t, $c, undef));
	if ($r < 0.50)
	{
		delete $m->{rows}{$c};
		free_class($m, $c, $s);
		return "DELETE FROM $t WHERE $where;";
	}
	if ($r < 0.60)
	{
		$m->{rows}{$c}[1]++;
		touch($m, $c);
		return "UPDATE $t SET v = v + 1 WHERE $where;";
	}
	if ($r < 0.75)
	{
		# the key changes spelling only (the publisher sends the old key)
		my $s2 = other_spelling($t, $c, $s);
		$m->{rows}{$c}[0] = $s2;
		touch($m, $c);
		return "UPDATE $t SET k = " . q_lit($s2) . " WHERE $where;";
	}
	if ($r < 0.88)
	{
		my $c2 = take_class($m);
		if (defined $c2)
		{
			my $s2 = other_spelling($t, $c2, $m->{last}{$c2});
			delete $m->{rows}{$c};
			free_class($m, $c, $s);
			$m->{rows}{$c2} = [ $s2, $v ];
			$m->{used}{$c2} = 1;
			touch($m, $c2);
			return "UPDATE $t SET k = " . q_lit($s2) . " WHERE $where;";
		}
	}
	# delete 'Foo' and insert 'FOO' in one transaction
	my $s2 = other_spelling($t, $c, $s);
	$m->{rows}{$c} = [ $s2, 0 ];
	touch($m, $c);
	return "BEGIN; DELETE FROM $t WHERE $where; INSERT INTO $t VALUES (" . q_lit($s2) . ", 0); COMMIT;";
}

# one transaction on pt: u unique within each leaf (id < 500, id >= 500)
sub leaf { return $_[0] < 500 ? 1 : 2 }

sub pt_take_u
{
	my ($m, $leaf) = @_;
	my $free = $m->{free_u}{$leaf} //= [];
	while (@$free && rand() < 0.9)
	{
		my $u = shift @$free;
		return $u unless $m->{used_u}{$leaf}{$u};
	}
	my @f = grep { !$m->{used_u}{$leaf}{$_} } 1 .. $classes;
	return undef unless @f;
	return $f[ int(rand(@f)) ];
}

sub pt_free_u
{
	my ($m, $leaf, $u) = @_;
	delete $m->{used_u}{$leaf}{$u};
	unshift @{ $m->{free_u}{$leaf} }, $u;
}

sub gen_pt
{
	my $m = model_of('pt');
	my $r = rand();
	my $n = scalar keys %{ $m->{rows} };
	if ($r < 0.30 || $n < 5)
	{
		my $leaf = rand() < 0.5 ? 1 : 2;
		my @ids = grep { !exists $m->{rows}{$_} } ($leaf == 1 ? (1 .. 60) : (500 .. 560));
		my $u = pt_take_u($m, $leaf);
		if (@ids && defined $u)
		{
			my $id = $ids[ int(rand(@ids)) ];
			$m->{rows}{$id} = $u;
			$m->{used_u}{$leaf}{$u} = 1;
			touch($m, $id);
			return "INSERT INTO pt VALUES ($id, $u, 0);";
		}
	}
	my $id = pick_row($m);
	my $u = $m->{rows}{$id};
	my $leaf = leaf($id);
	if ($r < 0.55)
	{
		delete $m->{rows}{$id};
		pt_free_u($m, $leaf, $u);
		return "DELETE FROM pt WHERE id = $id;";
	}
	if ($r < 0.65)
	{
		touch($m, $id);
		return "UPDATE pt SET v = v + 1 WHERE id = $id;";
	}
	if ($r < 0.85)
	{
		my $u2 = pt_take_u($m, $leaf);
		if (defined $u2)
		{
			$m->{used_u}{$leaf}{$u2} = 1;
			pt_free_u($m, $leaf, $u);
			$m->{rows}{$id} = $u2;
			touch($m, $id);
			return "UPDATE pt SET u = $u2 WHERE id = $id;";
		}
	}
	# the row moves to the other leaf (with the same u if that is free there)
	my $id2 = $leaf == 1 ? $id + 500 : $id - 500;
	my $other = 3 - $leaf;
	if (!exists $m->{rows}{$id2} && !$m->{used_u}{$other}{$u})
	{
		delete $m->{rows}{$id};
		pt_free_u($m, $leaf, $u);
		$m->{rows}{$id2} = $u;
		$m->{used_u}{$other}{$u} = 1;
		touch($m, $id2);
		return "UPDATE pt SET id = $id2 WHERE id = $id;";
	}
	touch($m, $id);
	return "UPDATE pt SET v = v + 1 WHERE id = $id;";
}

my %kind = (
	ca => 'id', ib => 'id', na => 'id', mb => 'id',
	cb => 'key', ia => 'key', nb => 'key', ma => 'key',
	pt => 'pt');

sub gen_for
{
	my ($t) = @_;
	return gen_pt() if $kind{$t} eq 'pt';
	return gen_id_table($t) if $kind{$t} eq 'id';
	return gen_key_table($t);
}

sub workload
{
	my ($seed, @t) = @_;
	srand($seed);
	my @sql;
	for (1 .. $txns)
	{
		if (rand() < 0.2)
		{
			my $id = 1 + int(rand(50));
			push @sql, "UPDATE f SET v = v + 1 WHERE id = $id;";
		}
		else
		{
			push @sql, gen_for($t[ int(rand(@t)) ]);
		}
	}
	return join("\n", @sql) . "\n";
}

# ---------------------------------------------------------------- phases

sub engine_stat
{
	my ($col) = @_;
	return $sub->safe_psql('postgres',
		"SELECT $col FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
}

# The publisher's walsender has sent everything up to its current position,
# exactly one apply process waits for a lock (ours) and, with the engine, no
# other apply worker is applying; true in two polls in a row (so the leader
# had time to dispatch what it received, and an apply worker given a
# transaction that does not depend on the locked one would have run it).
sub wait_settled
{
	my ($label) = @_;
	my $lsn = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my $sent = "SELECT coalesce(bool_and(sent_lsn >= '$lsn'), false) FROM pg_stat_replication WHERE application_name = 'sub'";
	my $waiting = q{SELECT count(*) FROM pg_stat_activity
	  WHERE backend_type IN ('parallel_apply worker', 'logical replication worker')
	    AND wait_event_type = 'Lock'};
	my $q =
	  pa_engine()
	  ? qq{SELECT ($waiting) = 1
		  AND (SELECT count(*) FROM parallel_apply.stat_workers w
		       WHERE w.worker_type = 'apply' AND w.state = 'applying'
		         AND w.pid NOT IN (SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock')) = 0}
	  : qq{SELECT ($waiting) = 1};
	my $row = 0;
	return 1 if pa_wait_until($PostgreSQL::Test::Utils::timeout_default, sub {
		my $ok = $pub->safe_psql('postgres', $sent) eq 't'
		  && $sub->safe_psql('postgres', $q) eq 't';
		$row = $ok ? $row + 1 : 0;
		return $row >= 2;
	});
	pa_diag($sub);
	die "$label: the subscriber did not settle with its apply waiting for our lock";
}

# Wait until the subscriber has applied everything the publisher wrote, as
# pa_catchup does, but give up at once (false) if a server process of the
# subscriber dies: a crashing engine restarts the subscriber in a loop and
# would otherwise only show up as a timeout.
my $crash_re = qr/terminated by signal|PANIC:/;

sub catchup
{
	my ($label) = @_;
	my $target = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	my $crashed = 0;
	my $caught = pa_wait_until($PostgreSQL::Test::Utils::timeout_default, sub {
		return 1 if pa_replayed($pub, 'sub', $target);
		my $log = pa_log_since($sub, $case_logpos);
		return 0 unless $log =~ $crash_re;
		my @lines = $log =~ /^(.*(?:terminated by signal|PANIC:).*)$/mg;
		diag("$label: the subscriber crashed while applying:\n"
			  . join("\n", @lines[ 0 .. ($#lines < 2 ? $#lines : 2) ])
			  . "\n(" . scalar(@lines) . ' such lines)');
		$crashed = 1;
		return 1;
	});
	return 1 if $caught && !$crashed;
	diag("$label: timed out waiting for the subscriber to catch up") unless $crashed;
	return 0;
}

# A forced probe: hold a lock on the subscriber's row ($lock_sql, a SELECT
# ... FOR UPDATE), let the publisher run @txns (one transaction each: the
# first one writes the locked row), wait until the engine settles, release.
sub probe
{
	my ($label, $lock_sql, @txns) = @_;
	catchup($label) or die "$label: the subscriber did not catch up before the probe\n";
	my $locker = session_start($sub);
	session_query($locker, 'BEGIN');
	my $got = session_query($locker, $lock_sql);
	die "$label: lock query found no row\n" if $got eq '';
	$pub->safe_psql('postgres', $_) foreach @txns;
	wait_settled($label);
	session_query($locker, 'COMMIT');
	session_quit($locker);
	catchup($label) or die "$label: the subscriber did not catch up after the probe\n";
	note "$label: done";
	return;
}

sub check_case
{
	my ($label, $logpos, @t) = @_;
	pa_check_equal($pub, $sub, @t, 'f');
	my $log = pa_log_since($sub, $logpos);
	my @errors = $log =~ /^(.*(?:ERROR|FATAL):  .*)$/mg;
	is(scalar @errors, 0, "$label: no ERROR or FATAL in the subscriber log")
	  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
	pa_check_log_clean($sub, $logpos, "$label: subscriber");
  SKIP:
	{
		skip 'PA_NO_ENGINE set', 2 unless pa_engine();
		my ($applied, $waits, $retries) =
		  split /\|/, engine_stat('transactions_applied, dependency_waits, serial_retries');
		note "$label: transactions_applied $applied, dependency_waits $waits, serial_retries $retries";
		is($retries, '0', "$label: no serial retry was needed");
		is(engine_stat('state'), 'streaming', "$label: engine streaming");
	}
	return;
}

# One case: a backlog over its tables, then its probes, then the checks.
# A subscriber that crashes or stops catching up fails the case (one test)
# and the test goes on with the next case.
sub run_case
{
	my ($label, $seed, $tables, $probes) = @_;
	my $sql = workload($seed, @$tables);
	pa_stop_applying($sub, 'sub');
	my $logpos = $case_logpos = pa_log_pos($sub);
	$pub->safe_psql('postgres', $sql);
	pa_resume_applying($sub, 'sub');
	my $ok = catchup("$label, backlog");
	if ($ok)
	{
		my $counts = join(', ',
			map { "$_ " . $pub->safe_psql('postgres', "SELECT count(*) FROM $_") } @$tables);
		note "$label: backlog of $txns transactions applied; rows now $counts";
		$ok = eval { $probes->(); 1 };
		diag("$label: $@") unless $ok;
	}
	if (!ok($ok, "$label: the subscriber applied the backlog and the probes"))
	{
		$crashed = 1 if pa_log_since($sub, $logpos) =~ $crash_re;
		return;
	}
	check_case($label, $logpos, @$tables);
	return;
}

# Probes for an id table: the locked row is deleted and its value taken by
# a new row in another spelling; then the new row (locked) moves to value
# $moved and another row takes the freed value in a third spelling.
sub id_table_probes
{
	my ($t, $s1, $s2, $s3, $other, $moved) = @_;
	my ($a, $b, $c) = (90001, 90002, 90003);
	$pub->safe_psql('postgres',
		"INSERT INTO $t VALUES ($a, " . q_lit($s1) . "), ($c, " . q_lit($other) . ")");
	probe("$t: delete " . q_lit($s1) . ', insert ' . q_lit($s2),
		"SELECT id FROM $t WHERE id = $a FOR UPDATE",
		"DELETE FROM $t WHERE id = $a",
		"INSERT INTO $t VALUES ($b, " . q_lit($s2) . ")");
	probe("$t: move " . q_lit($s2) . ' away, another row takes ' . q_lit($s3),
		"SELECT id FROM $t WHERE id = $b FOR UPDATE",
		"UPDATE $t SET k = " . q_lit($moved) . " WHERE id = $b",
		"UPDATE $t SET k = " . q_lit($s3) . " WHERE id = $c");
	return;
}

# Probe for a key table: the locked row is deleted, and the next
# transaction inserts its key in another spelling.
sub key_table_probe
{
	my ($t, $s1, $s2) = @_;
	$pub->safe_psql('postgres', "INSERT INTO $t VALUES (" . q_lit($s1) . ", 0)");
	probe("$t: delete " . q_lit($s1) . ', insert ' . q_lit($s2),
		"SELECT v FROM $t WHERE k = " . q_lit($s1) . " FOR UPDATE",
		"DELETE FROM $t WHERE k = " . q_lit($s2),
		"INSERT INTO $t VALUES (" . q_lit($s2) . ", 1)");
	return;
}

run_case('(a) citext', 16001, [qw(ca cb)], sub {
	id_table_probes('ca', 'Probe', 'PROBE', 'probe', 'other', 'moved');
	key_table_probe('cb', 'Probe', 'pROBE');
});

run_case('(b) interval', 16002, [qw(ib ia)], sub {
	id_table_probes('ib', '1000 days', '24000:00:00', '999 days 24:00:00', '5000 days', '7000 days');
	key_table_probe('ia', '1000 days', '24000:00:00');
	key_table_probe('ia', '3000 days', '100 mons');
});

run_case('(d) leaf-only unique indexes', 16004, ['pt'], sub {
	# leaf 1: the locked row is deleted, its u taken by a new row
	$pub->safe_psql('postgres', 'INSERT INTO pt VALUES (450, 77, 0), (452, 78, 0)');
	probe('pt: delete u = 77, insert u = 77',
		'SELECT id FROM pt WHERE id = 450 FOR UPDATE',
		'DELETE FROM pt WHERE id = 450',
		'INSERT INTO pt VALUES (451, 77, 0)');
	probe('pt: u = 77 moves to 79, another row takes 77',
		'SELECT id FROM pt WHERE id = 451 FOR UPDATE',
		'UPDATE pt SET u = 79 WHERE id = 451',
		'UPDATE pt SET u = 77 WHERE id = 452');
	# the row moves to leaf 2, its u is reused in leaf 1
	probe('pt: a row moves to the other leaf, its u is reused',
		'SELECT id FROM pt WHERE id = 452 FOR UPDATE',
		'UPDATE pt SET id = 952 WHERE id = 452',
		'INSERT INTO pt VALUES (453, 77, 0)');
});

run_case('(e) numeric', 16005, [qw(mb ma)], sub {
	id_table_probes('mb', '1000.5', '1000.50', '1000.500', '2000', '3000.0');
	key_table_probe('ma', '1000.0', '1000.00');
	key_table_probe('ma', '2000', '2000.000');
});

# (c) last: the other cases report even if this one brings the subscriber down
SKIP:
{
	skip 'no ICU: nondeterministic collations unavailable', 1 unless $icu;
	run_case('(c) nondeterministic collation', 16003, [qw(na nb)], sub {
		id_table_probes('na', 'Probe', 'PROBE', 'probe', 'other', 'moved');
		key_table_probe('nb', 'Probe', 'pROBE');
	});
}

$sub->stop($crashed ? 'immediate' : 'fast');
$pub->stop;
done_testing();
