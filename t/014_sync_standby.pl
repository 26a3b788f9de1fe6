
# Copyright (c) parallel_apply authors
#
# synchronous_commit toward the subscriber's own synchronous standbys
# (DESIGN.md invariant 3, review F7).  The subscriber S has a synchronous
# physical standby S'; the subscription has synchronous_commit = on.  The
# built-in worker's commits wait for S' (SyncRepWaitForLSN), so it never
# tells the publisher a position is flushed before S' has it; after a
# failover to S', nothing the publisher was told is flushed is missing.
# The engine's workers commit asynchronously, so the leader must report as
# flushed only what S' confirmed.
#
# With S' stopped, the engine goes on applying (the rows appear on S) and
# reports them received (write_lsn passes them), but the flush position the
# publisher holds (pg_stat_replication.flush_lsn, and the slot's
# confirmed_flush_lsn) stays behind.  Once S' is back, it advances.
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
	# the built-in worker blocks in its commit instead: nothing to observe
	# on the subscriber side while the standby is down
	plan skip_all => 'checks the engine leader';
}

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2, allows_streaming => 1);

pa_both($pub, $sub, 'CREATE TABLE t (id int PRIMARY KEY, v text)');
pa_subscribe($pub, $sub, 'sub', with => 'synchronous_commit = on');

# the subscriber's synchronous standby
$sub->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($sub, 'b', has_streaming => 1);
$standby->start;
$sub->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'\n");
$sub->reload;
pa_poll($sub,
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = 'standby' AND sync_state = 'sync'",
	't', 'standby is synchronous');

pa_attach($sub, 'sub');

sub positions
{
	return $pub->safe_psql('postgres', q{
SELECT r.write_lsn, r.flush_lsn, s.confirmed_flush_lsn
FROM pg_stat_replication r, pg_replication_slots s
WHERE r.application_name = 'sub' AND s.slot_name = 'sub'});
}

# with the standby up, flushes are confirmed
$pub->safe_psql('postgres', "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g");
my $lsn1 = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
pa_poll($pub,
	"SELECT confirmed_flush_lsn >= '$lsn1' FROM pg_replication_slots WHERE slot_name = 'sub'",
	't', 'flush confirmed while the standby runs');
pa_poll($standby, 'SELECT count(*) = 100 FROM t', 't', 'rows reached the standby');

# standby down: the engine applies, reports the rows received, not flushed
$standby->stop;
$pub->safe_psql('postgres', "INSERT INTO t SELECT g, 'b' FROM generate_series(101, 200) g");
my $lsn2 = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
pa_poll($sub, 'SELECT count(*) = 200 FROM t', 't', 'rows applied on the subscriber');
pa_poll($pub,
	"SELECT write_lsn >= '$lsn2' FROM pg_stat_replication WHERE application_name = 'sub'",
	't', 'the subscriber reported the rows received');
# the status update that reported them received carried the flush position
my ($w, $f, $c) = split /\|/, positions();
note "standby down: write $w, flush $f, confirmed_flush $c, inserts ended at $lsn2";
is($pub->safe_psql('postgres', "SELECT '$f'::pg_lsn < '$lsn2'"), 't',
	'flush position reported to the publisher stays behind the unconfirmed rows');
is($pub->safe_psql('postgres', "SELECT '$c'::pg_lsn < '$lsn2'"), 't',
	'confirmed_flush_lsn of the slot stays behind the unconfirmed rows');

# a transaction of the subscriber needs the standby too: more publisher load
# does not change that
$pub->safe_psql('postgres', "UPDATE t SET v = 'c' WHERE id <= 50");
my $lsn3 = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
pa_poll($pub,
	"SELECT write_lsn >= '$lsn3' FROM pg_stat_replication WHERE application_name = 'sub'",
	't', 'the subscriber reported the update received');
is($pub->safe_psql('postgres',
	"SELECT confirmed_flush_lsn < '$lsn2' FROM pg_replication_slots WHERE slot_name = 'sub'"),
	't', 'confirmed_flush_lsn still behind while the standby is down');

# standby back: everything is confirmed
$standby->start;
pa_poll($pub,
	"SELECT confirmed_flush_lsn >= '$lsn3' FROM pg_replication_slots WHERE slot_name = 'sub'",
	't', 'flush confirmed once the standby is back');
pa_check_equal($pub, $sub, 't');
pa_poll($standby, "SELECT count(*) = 200 AND count(*) FILTER (WHERE v = 'c') = 50 FROM t",
	't', 'the standby has every row the publisher was told is flushed');

$standby->stop;
done_testing();
