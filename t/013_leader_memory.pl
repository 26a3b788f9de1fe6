
# Copyright (c) parallel_apply authors
#
# The leader's memory is bounded whatever a transaction's size (DESIGN.md
# invariant 8, review F5): one remote transaction inserts 5,000,000 rows
# into a table with a primary key and a second unique index, so that the
# dependency tracker sees 10,000,000 keys.  A transaction records at most
# parallel_apply.max_transaction_keys of them (default 65536); past that, its
# changes are table-level barriers.  Before that budget existed the
# latest-writer table kept one entry per key (several hundred MB), and
# dynahash never gives memory back.
#
# The leader's memory is read with pg_log_backend_memory_contexts() while the
# transaction is applied and after it committed; its "Grand total" must stay
# under 64MB.  Then a small transaction after it must still depend on it
# (table-level barrier) and the tables end equal.
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
	plan skip_all => 'measures the engine leader';
}

my $rows = 5_000_000;
my $bound = 64 * 1024 * 1024;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 2);

pa_both($pub, $sub, q{
CREATE TABLE big (id int PRIMARY KEY, u int NOT NULL UNIQUE);
CREATE TABLE other (id int PRIMARY KEY, v int);
});
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

my $leader = $sub->safe_psql('postgres',
	"SELECT leader_pid FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
ok($leader =~ /^\d+$/, 'leader runs');

# Ask the leader for its memory contexts; return its grand total in bytes.
sub leader_memory
{
	my $pos = pa_log_pos($sub);
	$sub->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($leader)");
	pa_wait_log($sub, qr/Grand total: \d+ bytes/, $pos);
	my @totals = (pa_log_since($sub, $pos) =~ /Grand total: (\d+) bytes/g);
	return $totals[-1];
}

sub received
{
	return $sub->safe_psql('postgres',
		"SELECT received_lsn FROM parallel_apply.stat_subscription WHERE subname = 'sub'");
}

my $before = leader_memory();
note "leader memory before: $before bytes";

# the transaction: BEGIN, 5M inserts, COMMIT.  Without streaming, the
# publisher sends it only once it has committed.
$pub->safe_psql('postgres',
	"INSERT INTO big SELECT g, $rows - g FROM generate_series(1, $rows) g");
my $end_lsn = $pub->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

# Sample the leader's memory each time it has received 32MB more of the
# stream, until the transaction has committed on the subscriber.
my $max = $before;
my $samples = 0;
for (;;)
{
	my $m = leader_memory();
	$max = $m if $m > $max;
	$samples++;
	my $target = $sub->safe_psql('postgres',
		"SELECT '" . received() . "'::pg_lsn + 32 * 1024 * 1024");
	$sub->poll_query_until('postgres',
		"SELECT received_lsn >= '$target' OR applied_lsn >= '$end_lsn' FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	) or last;
	last if $sub->safe_psql('postgres',
		"SELECT applied_lsn >= '$end_lsn' FROM parallel_apply.stat_subscription WHERE subname = 'sub'"
	) eq 't';
}
pa_poll($sub, "SELECT count(*) = $rows FROM big", 't',
	'the 5M-row transaction applied');

my $after = leader_memory();
$max = $after if $after > $max;
note "leader memory: max $max bytes over $samples samples, after $after bytes";
cmp_ok($max, '<', $bound,
	"leader memory stays under 64MB while a 10M-key transaction is applied");

# the keys the big transaction did not record: later changes of big depend
# on it through the table-level barrier, so they cannot be lost or reordered
$pub->safe_psql('postgres', q{
DELETE FROM big WHERE id <= 10;
UPDATE big SET u = -u WHERE id BETWEEN 11 AND 20;
INSERT INTO big VALUES (1, -1);
INSERT INTO other VALUES (1, 1);
});

foreach my $t ('big', 'other')
{
	my $q = "SELECT count(*) || ':' || coalesce(sum(id), 0) || ':' || coalesce(sum(u), 0) || ':' || coalesce(sum(hashint8(id::bigint * 7919 + u)), 0) FROM $t";
	$q =~ s/\bu\b/v/g if $t eq 'other';
	my $want = $pub->safe_psql('postgres', $q);
	pa_poll($sub, "SELECT ($q) = '$want'", 't', "$t equal");
	is($sub->safe_psql('postgres', $q), $want, "table $t equal on both sides");
}

is($sub->safe_psql('postgres',
	"SELECT serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
	'0', 'no serial retry');

done_testing();
