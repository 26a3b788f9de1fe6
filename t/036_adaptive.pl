
# Copyright (c) parallel_apply authors
#
# Adaptive worker use (parallel_apply.adaptive, src/adapt.c): the leader
# spreads independent transactions over only as many workers as make the
# subscription apply faster.
#
#   1. A backlog whose apply is expensive (a trigger on the subscriber burns
#      CPU for every row, about a millisecond) and independent: two workers
#      apply it nearly twice as fast as one on this 2-CPU machine, so the
#      active set grows ("widened to 2 workers: ...").
#   2. The same cost, but every transaction updates one row: each depends on
#      the one before, so it goes behind it on the same worker whatever the
#      set; a wider set would apply no faster, and the leader, which counts
#      the transactions that began a run with no uncommitted dependency,
#      does not even try one (before, it tried 2 workers and went back:
#      "back to 1 workers: the 1 added got almost no independent work").
#   3. parallel_apply.adaptive = off: all workers active, as before.
# In each, both sides end equal; stat_subscription shows the set's size
# and why it last changed, stat_workers which workers are active.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

if (!pa_engine())
{
	plan skip_all => 'PA_NO_ENGINE set: adaptive worker use is the engine\'s';
}

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4, adaptive => 1);
my $rows = $ENV{PA_036_ROWS} || 4000;

foreach my $t (qw(cheap hot))
{
	$pub->safe_psql('postgres', "CREATE TABLE $t (id int PRIMARY KEY, v int)");
	$sub->safe_psql('postgres', "CREATE TABLE $t (id int PRIMARY KEY, v int)");
}
# about a millisecond of CPU per row; the apply runs triggers marked ALWAYS
$sub->safe_psql('postgres', q{
CREATE FUNCTION burn() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE x bigint := 0;
BEGIN
	FOR i IN 1..30000 LOOP x := x + i; END LOOP;
	RETURN NEW;
END $$;
CREATE TRIGGER burn BEFORE INSERT ON cheap FOR EACH ROW EXECUTE FUNCTION burn();
ALTER TABLE cheap ENABLE ALWAYS TRIGGER burn;
CREATE TRIGGER burn BEFORE UPDATE ON hot FOR EACH ROW EXECUTE FUNCTION burn();
ALTER TABLE hot ENABLE ALWAYS TRIGGER burn;
});
$pub->safe_psql('postgres', 'INSERT INTO hot VALUES (1, 0)');
pa_subscribe($pub, $sub, 'sub', tables => [qw(cheap hot)]);
pa_attach($sub, 'sub');
pa_catchup($pub, 'sub');

my $state = q{SELECT active_workers || '|' || active_workers_reason
	FROM parallel_apply.stat_subscription WHERE subname = 'sub'};
my $active = q{SELECT string_agg(worker_id || ':' || active, ' ' ORDER BY worker_id)
	FROM parallel_apply.stat_workers WHERE subname = 'sub' AND worker_type = 'apply'};

like($sub->safe_psql('postgres', $state), qr/^1\|started with 1 of 4 workers \(parallel_apply\.adaptive\)$/,
	'the engine starts with one active worker of four');
is($sub->safe_psql('postgres', $active), '1:true 2:false 3:false 4:false',
	'stat_workers: only worker 1 is active');
is(pa_stat($sub, 'sub', 'active_workers_changes'), '0',
	'where the leader starts is no change of the active set');

# A backlog of $rows one-row transactions into table $t, applied while we
# sample the view every 100 ms; returns the distinct states seen.
sub backlog
{
	my ($t, $sql) = @_;
	pa_stop_applying($sub, 'sub');
	$pub->safe_psql('postgres', qq{
DO \$\$ BEGIN
	FOR i IN 1 .. $rows LOOP
		$sql;
		COMMIT;
	END LOOP;
END \$\$;});
	my $check = "SELECT count(*) || ':' || sum(v) FROM $t";
	my $target = $pub->safe_psql('postgres', $check);
	pa_resume_applying($sub, 'sub');
	my %seen;
	my $done = pa_wait_until(180, sub {
		$seen{ $sub->safe_psql('postgres', $state) } = 1;
		return $sub->safe_psql('postgres', $check) eq $target;
	});
	ok($done, "$t: the backlog of $rows transactions was applied") or pa_diag($sub);
	# a measurement under way when the backlog ended is judged within ~2 s
	pa_wait_until(30, sub {
		my $st = $sub->safe_psql('postgres', $state);
		$seen{$st} = 1;
		return $st !~ /\|trying/;
	});
	pa_catchup($pub, 'sub');
	pa_check_equal($pub, $sub, $t);
	note "$t: states seen:\n" . join("\n", sort keys %seen);
	note "$t: per worker: " . $sub->safe_psql('postgres', q{SELECT string_agg(worker_id || '=' || transactions_applied, ' ' ORDER BY worker_id) FROM parallel_apply.stat_workers WHERE subname = 'sub'});
	return keys %seen;
}

# 1. spreading pays
my @seen = backlog('cheap', 'INSERT INTO cheap VALUES (i, 0)');
my @widened = grep { /^\d+\|widened to \d+ workers: \d+ transactions\/s against \d+ with \d+$/ } @seen;
ok(scalar @widened, 'expensive independent apply: the active set widened')
  or diag(join("\n", @seen));
ok((grep { /^(\d+)\|/ && $1 >= 2 } @seen), 'expensive independent apply: two or more workers active');
my $changes = pa_stat($sub, 'sub', 'active_workers_changes');
ok($changes >= 1, "active_workers_changes counts the widening ($changes)");

# 2. spreading does not pay: every transaction depends on the one before
@seen = backlog('hot', 'UPDATE hot SET v = v + 1 WHERE id = 1');
is(join("\n", sort @seen), '1|started with 1 of 4 workers (parallel_apply.adaptive)',
	'dependent apply: the active set stayed at one worker');
# the leader restarted for this backlog (pa_resume_applying): its count
# starts at 0, and a trial would count 2 (there and back)
is(pa_stat($sub, 'sub', 'active_workers_changes'), '0',
	'dependent apply: no wider set was tried');

# 3. adaptive off: every worker active, as before
$sub->safe_psql('postgres', 'ALTER SYSTEM SET parallel_apply.adaptive = off');
$sub->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(pa_poll_for($sub, $state, '4|all 4 workers (parallel_apply.adaptive is off)', 30),
	'adaptive off: all four workers active, and the view says why');
is($sub->safe_psql('postgres', $active), '1:true 2:true 3:true 4:true',
	'adaptive off: stat_workers shows every worker active');
$pub->safe_psql('postgres', 'INSERT INTO cheap SELECT i, 1 FROM generate_series(100001, 100100) i');
pa_catchup($pub, 'sub');
pa_check_equal($pub, $sub, qw(cheap hot));
is(pa_stat($sub, 'sub', 'serial_retries'), '0', 'no serial retry');

$sub->stop;
$pub->stop;
done_testing();
