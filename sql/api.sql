--
-- parallel_apply SQL API: objects, GUC defaults, views, and the checks
-- attach()/detach() make before touching a subscription.
--
-- There is no publisher here: subscriptions are created WITH (connect = false)
-- and point at a socket directory that does not exist.
--
CREATE EXTENSION parallel_apply;

-- functions and views
SELECT p.proname, pg_get_function_result(p.oid) AS result, p.prosecdef
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'parallel_apply' AND p.proname IN ('attach', 'detach')
ORDER BY 1;
SELECT c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'parallel_apply' AND c.relname LIKE 'stat%'
ORDER BY 1;

-- view columns
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'parallel_apply.stat_subscription'::regclass AND attnum > 0
ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'parallel_apply.stat_workers'::regclass AND attnum > 0
ORDER BY attnum;

-- nothing attached yet
SELECT * FROM parallel_apply.stat_subscription;
SELECT * FROM parallel_apply.stat_workers;

-- GUC defaults
SHOW parallel_apply.workers;
SHOW parallel_apply.queue_memory;
SHOW parallel_apply.retry_interval;
SELECT name, min_val, max_val
FROM pg_settings WHERE name = 'parallel_apply.workers';

-- unknown subscription
SELECT parallel_apply.attach('nosuch');
SELECT parallel_apply.detach('nosuch');

-- no replication slot
CREATE SUBSCRIPTION regress_pa_noslot
  CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false, slot_name = NONE);
SELECT parallel_apply.attach('regress_pa_noslot');

-- two_phase
CREATE SUBSCRIPTION regress_pa_2pc
  CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false, two_phase = true);
ALTER SUBSCRIPTION regress_pa_2pc SET (slot_name = 'regress_pa_2pc_slot');
SELECT parallel_apply.attach('regress_pa_2pc');

-- a table that is not synchronized yet.  Without a publisher no table sync
-- can run, so the pg_subscription_rel row is made by hand.
CREATE TABLE regress_pa_tab (id int PRIMARY KEY);
CREATE SUBSCRIPTION regress_pa_notready
  CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
SET allow_system_table_mods = on;
INSERT INTO pg_subscription_rel (srsubid, srrelid, srsubstate, srsublsn)
  SELECT oid, 'regress_pa_tab'::regclass, 'd', NULL
  FROM pg_subscription WHERE subname = 'regress_pa_notready';
RESET allow_system_table_mods;
SELECT parallel_apply.attach('regress_pa_notready');

-- a subscription of another database
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_pa_otherdb;
\c regress_pa_otherdb
CREATE SUBSCRIPTION regress_pa_elsewhere
  CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
\c :regress_db
SELECT parallel_apply.attach('regress_pa_elsewhere');

-- a subscription that can be attached (it will fail to connect, in the
-- background, which does not matter here)
CREATE SUBSCRIPTION regress_pa_ok
  CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);

-- not the owner
CREATE ROLE regress_pa_user LOGIN;
SET ROLE regress_pa_user;
SELECT parallel_apply.attach('regress_pa_ok');
RESET ROLE;

SELECT parallel_apply.detach('regress_pa_ok');
SELECT parallel_apply.attach('regress_pa_ok');
SELECT subenabled FROM pg_subscription WHERE subname = 'regress_pa_ok';
SELECT s.subname, a.subid = s.oid AS subid_ok,
       a.state IN ('starting', 'streaming', 'stopped') AS state_ok
FROM parallel_apply.stat_subscription a JOIN pg_subscription s ON s.subname = a.subname;
SELECT parallel_apply.attach('regress_pa_ok');
SET ROLE regress_pa_user;
SELECT parallel_apply.detach('regress_pa_ok');
RESET ROLE;
SELECT parallel_apply.detach('regress_pa_ok');
SELECT subenabled FROM pg_subscription WHERE subname = 'regress_pa_ok';
SELECT count(*) FROM parallel_apply.stat_subscription;
SELECT parallel_apply.detach('regress_pa_ok');

-- cleanup: without a slot, DROP SUBSCRIPTION does not connect
ALTER SUBSCRIPTION regress_pa_ok DISABLE;
ALTER SUBSCRIPTION regress_pa_ok SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_ok;
ALTER SUBSCRIPTION regress_pa_notready SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_notready;
ALTER SUBSCRIPTION regress_pa_2pc SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_2pc;
DROP SUBSCRIPTION regress_pa_noslot;
\c regress_pa_otherdb
ALTER SUBSCRIPTION regress_pa_elsewhere SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_elsewhere;
\c :regress_db
DROP DATABASE regress_pa_otherdb;
DROP TABLE regress_pa_tab;
DROP ROLE regress_pa_user;
SELECT count(*) FROM pg_subscription;
DROP EXTENSION parallel_apply;
