
# Copyright (c) parallel_apply authors
#
# The engine applies as the subscription's current owner (DESIGN.md
# invariant 10; security issue, item 2).  ALTER SUBSCRIPTION ... OWNER TO
# alice (a superuser for the ALTER, as PostgreSQL 15 requires, demoted
# afterwards) restarts the engine as alice, as PostgreSQL 15's worker
# restarts: its leader and workers then run as alice, and privilege checks
# are hers.  Before, the engine kept applying as the previous owner (here the
# bootstrap superuser), so an ENABLE ALWAYS trigger of a low-privilege table
# owner ran with superuser rights: it made its owner a superuser.
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

pa_both($pub, $sub, q{
CREATE TABLE open_t (id int PRIMARY KEY);
CREATE TABLE secret (id int PRIMARY KEY);
CREATE TABLE bobs (id int PRIMARY KEY);
});
$sub->safe_psql('postgres', q{
CREATE ROLE alice LOGIN SUPERUSER;
CREATE ROLE bob LOGIN;
GRANT ALL ON open_t TO alice;
ALTER TABLE bobs OWNER TO bob;
GRANT ALL ON bobs TO alice;
});
pa_subscribe($pub, $sub, 'sub');
pa_attach($sub, 'sub');

$sub->safe_psql('postgres', q{
ALTER SUBSCRIPTION sub OWNER TO alice;
ALTER ROLE alice NOSUPERUSER;
});

if (pa_engine())
{
	pa_poll($sub, q{
SELECT count(*) = 3 AND bool_and(usename = 'alice') FROM pg_stat_activity
WHERE backend_type IN ('parallel_apply leader', 'parallel_apply worker')},
		't', 'the engine runs as the new owner');
}

# alice may write open_t
$pub->safe_psql('postgres', 'INSERT INTO open_t VALUES (1)');
pa_check_equal($pub, $sub, 'open_t');

# bob's trigger runs with the privileges of the applying role
$sub->safe_psql('postgres', q{
CREATE FUNCTION bob_escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	ALTER ROLE bob SUPERUSER;
	RETURN NEW;
END $$;
ALTER FUNCTION bob_escalate() OWNER TO bob;
CREATE TRIGGER bob_escalate BEFORE INSERT ON bobs FOR EACH ROW EXECUTE FUNCTION bob_escalate();
ALTER TABLE bobs ENABLE ALWAYS TRIGGER bob_escalate;
});
my $pos = pa_log_pos($sub);
$pub->safe_psql('postgres', 'INSERT INTO bobs VALUES (1)');
pa_wait_log($sub, qr/ERROR:  (?:permission denied to alter role|must be superuser to alter superuser roles or change superuser attribute)/, $pos);
is($sub->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'bob'"),
	'f', "bob's trigger did not make bob a superuser");
$sub->safe_psql('postgres', 'DROP TRIGGER bob_escalate ON bobs');
pa_check_equal($pub, $sub, 'bobs');

# and she may not write secret: the change fails as PostgreSQL 15's worker
# fails it, until she is granted the right
$pos = pa_log_pos($sub);
$pub->safe_psql('postgres', 'INSERT INTO secret VALUES (1)');
pa_wait_log($sub, qr/ERROR:  permission denied for table secret/, $pos);
is($sub->safe_psql('postgres', 'SELECT count(*) FROM secret'), '0',
	'nothing written to a table the owner may not write');
$sub->safe_psql('postgres', 'GRANT ALL ON secret TO alice');
pa_check_equal($pub, $sub, 'secret', 'open_t');

done_testing();
