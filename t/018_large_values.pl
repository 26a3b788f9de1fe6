
# Copyright (c) parallel_apply authors
#
# Single changes of several megabytes: the leader's transaction buffer and
# outboxes, and a worker's reassembly buffer, are given back once such a
# message has passed (they are not kept at their peak size), and must be
# re-created in a memory context that lives on.  The leader once re-created
# them in its per-message context and crashed the whole subscriber, in a
# loop, at the next transaction after a 3 MB row (review of the outbox
# change).
#
#  - a 3 MB row in a small transaction (buffered), then multi-row
#    transactions;
#  - a 3 MB row after 100 kB of the same transaction (sent on as it arrives)
#    with the smallest queue memory, so the rest goes through the outbox;
#  - a streamed transaction with 2 MB rows (replayed from its spool);
#  - a transaction with a 2 MB row that fails on the subscriber and is
#    skipped with ALTER SUBSCRIPTION ... SKIP (the worker's skip path).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher',
	conf => "logical_decoding_work_mem = 64kB\n");
my $sub = pa_subscriber('subscriber', workers => 2,
	conf => "parallel_apply.queue_memory = 128kB\n");

pa_both($pub, $sub, q{
CREATE TABLE big (id int PRIMARY KEY, v text);
CREATE TABLE small (id int PRIMARY KEY, v int);
CREATE TABLE small2 (id int PRIMARY KEY, v text);
CREATE TABLE uq (id int PRIMARY KEY, code text UNIQUE, v text);
});
# values that do not compress away: pgoutput sends them as they are, and a
# toasted value is sent whole on INSERT
$pub->safe_psql('postgres', q{
CREATE FUNCTION blob(n int) RETURNS text LANGUAGE sql AS
$$ SELECT string_agg(md5(g::text), '') FROM generate_series(1, n / 32) g $$;
ALTER TABLE big ALTER COLUMN v SET STORAGE EXTERNAL;
});
pa_subscribe($pub, $sub, 'sub', with => 'streaming = on');
pa_attach($sub, 'sub');

# five transactions of 200 rows each (a few kB: their buffer must grow)
sub small_txns
{
	my ($from) = @_;
	for my $i (0 .. 4)
	{
		my $a = $from + 200 * $i;
		$pub->safe_psql('postgres',
			"INSERT INTO small SELECT g, g FROM generate_series($a, $a + 199) g");
	}
}

# 1. buffered (a compressible value: the publisher still sends 3 MB)
$pub->safe_psql('postgres', "INSERT INTO small2 VALUES (0, repeat('x', 3000000))");
for my $i (1 .. 5)
{
	$pub->safe_psql('postgres',
		"INSERT INTO small2 SELECT g, md5(g::text) FROM generate_series($i * 1000, $i * 1000 + 999) g");
}
$pub->safe_psql('postgres', 'INSERT INTO big VALUES (1, blob(3000000))');
small_txns(1);
pa_check_equal($pub, $sub, 'small2');
pa_check_equal($pub, $sub, 'big', 'small');

# 2. sent on as it arrives, through the outbox
$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO small SELECT g, g FROM generate_series(2001, 4000) g;
INSERT INTO big VALUES (2, blob(3000000));
UPDATE big SET v = blob(3000000) || 'x' WHERE id = 1;
COMMIT;
});
small_txns(5001);
pa_check_equal($pub, $sub, 'big', 'small');

# 3. streamed, replayed from the spool
$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO big SELECT g, blob(2000000) FROM generate_series(3, 5) g;
INSERT INTO small SELECT g, g FROM generate_series(7001, 9000) g;
COMMIT;
});
small_txns(10001);
pa_check_equal($pub, $sub, 'big', 'small');
is($pub->safe_psql('postgres',
	"SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = 'sub'"),
	't', 'the publisher streamed a transaction');

# 4. a failing transaction with a 2 MB row, skipped
my $logpos = pa_log_pos($sub);
$sub->safe_psql('postgres', "INSERT INTO uq VALUES (100, 'taken', 'local')");
$pub->safe_psql('postgres', q{
BEGIN;
INSERT INTO uq VALUES (1, 'taken', blob(2000000));
INSERT INTO small VALUES (20000, 0);
COMMIT;
});
small_txns(30001);
my $violation_re = pa_unique_violation_re('uq_code_key');
# the transaction streams: applied while it streams, its first error has no
# finish LSN yet; the serial re-apply spills it and names the LSN at commit
pa_wait_log($sub,
	qr/(?:$violation_re)[^\n]*\n(?:[^\n]*\n){0,3}?[^\n]*CONTEXT:[^\n]* finished at/,
	$logpos);
my ($lsn) = pa_log_since($sub, $logpos) =~
  /(?:$violation_re)[^\n]*\n(?:[^\n]*\n){0,3}?[^\n]*CONTEXT:[^\n]* finished at ([0-9A-F]+\/[0-9A-F]+)/;
ok(defined $lsn, 'finish LSN of the failing transaction: ' . ($lsn // 'none'));
$sub->safe_psql('postgres', "ALTER SUBSCRIPTION sub SKIP (lsn = '$lsn')");
pa_poll($sub, "SELECT subskiplsn = '0/0' FROM pg_subscription WHERE subname = 'sub'",
	't', 'subskiplsn cleared');
pa_poll($sub, 'SELECT count(*) = 1000 FROM small WHERE id > 30000 AND id < 40000', 't',
	'transactions after the skipped one applied');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM small WHERE id = 20000'),
	'0', 'the skipped transaction is not applied');
small_txns(40001);
$pub->safe_psql('postgres', 'DELETE FROM small WHERE id = 20000');
pa_check_equal($pub, $sub, 'big');
pa_poll($sub, 'SELECT count(*) = 1000 FROM small WHERE id > 40000', 't',
	'later transactions applied');

if (pa_engine())
{
	is($sub->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')}),
		3, 'the leader and its workers still run');
}
pa_check_log_clean($sub, 0);
unlike(pa_log_since($sub, 0), qr/terminated by signal/, 'no process crashed');

done_testing();
