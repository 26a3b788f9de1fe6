
# Copyright (c) parallel_apply authors
#
# The workers do not inherit a default isolation level that would make them
# fail against each other (review F13; security issue, item 11).  With
# default_transaction_isolation = serializable set on the subscriber's
# database, concurrent workers that read and write overlapping index ranges
# take SSI predicate locks and raise serialization failures between
# themselves, which the single built-in worker never can; each failure
# costs an engine restart.  The workers run read committed, as PostgreSQL's
# own apply worker effectively does (it is alone).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = pa_publisher('publisher');
my $sub = pa_subscriber('subscriber', workers => 4,
	conf => "parallel_apply.group_size = 1\n");

pa_both($pub, $sub, 'CREATE TABLE t (id int PRIMARY KEY, grp int, v int)');
# a subscriber-side trigger that reads other rows, as audit triggers do:
# under serializable, its reads take predicate locks that concurrent
# workers' inserts conflict with
$sub->safe_psql('postgres', q{
CREATE INDEX t_grp ON t (grp);
CREATE TABLE audit (id int, seen bigint);
CREATE FUNCTION audit_t() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.audit SELECT NEW.id, count(*) FROM public.t WHERE grp = NEW.grp;
	RETURN NEW;
END $$;
CREATE TRIGGER audit_t AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION audit_t();
ALTER TABLE t ENABLE ALWAYS TRIGGER audit_t;
});
$pub->safe_psql('postgres',
	'INSERT INTO t SELECT g, g % 10, 0 FROM generate_series(1, 2000) g');
pa_subscribe($pub, $sub, 'sub');
$sub->safe_psql('postgres',
	"ALTER DATABASE postgres SET default_transaction_isolation = 'serializable'");
pa_attach($sub, 'sub');

if (pa_engine())
{
	is($sub->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'parallel_apply worker'}), '4', 'four workers run');
}

# many small independent transactions, as a backlog: they are spread over
# the workers and applied concurrently
pa_stop_applying($sub, 'sub');
$pub->safe_psql('postgres', join("\n",
	map { "INSERT INTO t VALUES (" . (10000 + $_) . ", $_ % 3, $_);" } (1 .. 2000)));
my $pos = pa_log_pos($sub);
pa_resume_applying($sub, 'sub');

pa_check_equal($pub, $sub, 't');
unlike(pa_log_since($sub, $pos), qr/could not serialize access/,
	'no serialization failure between workers');
if (pa_engine())
{
	is($sub->safe_psql('postgres',
		"SELECT serial_retries FROM parallel_apply.stat_subscription WHERE subname = 'sub'"),
		'0', 'no serial retry');
}

done_testing();
