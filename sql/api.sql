--
-- parallel_apply SQL API: objects, GUC defaults, views, and the checks
-- attach()/detach() make before touching a subscription.
--
-- There is no publisher here: subscriptions are created WITH (connect = false)
-- and point at a socket directory that does not exist.
--
CREATE EXTENSION parallel_apply;

-- functions and views
SELECT p.proname, pg_get_function_result(p.oid) AS result, p.prosecdef,
       p.proisstrict
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'parallel_apply'
  AND p.proname IN ('attach', 'detach', 'pause', 'resume',
                    'reset_subscription_stats')
ORDER BY 1;
SELECT c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'parallel_apply'
  AND (c.relname LIKE 'stat%' OR c.relname LIKE 'conflict%')
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
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'parallel_apply.stat_relations'::regclass AND attnum > 0
ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'parallel_apply.stat_conflicts'::regclass AND attnum > 0
ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
FROM pg_attribute
WHERE attrelid = 'parallel_apply.conflict_history'::regclass AND attnum > 0
ORDER BY attnum;
-- only superusers read the history unless granted; pg_dump keeps its rows
SELECT relacl FROM pg_class WHERE oid = 'parallel_apply.conflict_history'::regclass;
SELECT extconfig = ARRAY['parallel_apply.conflict_history'::regclass::oid] AS dumped
FROM pg_extension WHERE extname = 'parallel_apply';

-- nothing attached yet
SELECT * FROM parallel_apply.stat_subscription;
SELECT * FROM parallel_apply.stat_workers;
SELECT * FROM parallel_apply.stat_relations;
SELECT * FROM parallel_apply.stat_conflicts;

-- GUC defaults
SHOW parallel_apply.workers;
SHOW parallel_apply.queue_memory;
SHOW parallel_apply.retry_interval;
SHOW parallel_apply.ri_full_index;
SHOW parallel_apply.conflict_log;
ALTER SYSTEM SET parallel_apply.conflict_log = nowhere;
ALTER SYSTEM SET parallel_apply.ri_full_index = sometimes;
SELECT name, min_val, max_val
FROM pg_settings WHERE name = 'parallel_apply.workers';

-- retry_interval has a floor: 0 would restart a failing engine in a loop
ALTER SYSTEM SET parallel_apply.retry_interval = 0;

-- unknown subscription, NULL
SELECT parallel_apply.attach('nosuch');
SELECT parallel_apply.detach('nosuch');
SELECT parallel_apply.pause('nosuch');
SELECT parallel_apply.resume('nosuch');
SELECT parallel_apply.attach(NULL);
SELECT parallel_apply.detach(NULL);
SELECT parallel_apply.pause(NULL);
SELECT parallel_apply.resume(NULL);
SELECT parallel_apply.reset_subscription_stats('nosuch');
SELECT parallel_apply.reset_subscription_stats(NULL);

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
SELECT parallel_apply.detach('regress_pa_elsewhere');

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

-- parallel_apply.max_subscriptions (4 here) holds at commit: attaches in
-- one transaction count each other
CREATE SUBSCRIPTION regress_pa_m1 CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
CREATE SUBSCRIPTION regress_pa_m2 CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
CREATE SUBSCRIPTION regress_pa_m3 CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
CREATE SUBSCRIPTION regress_pa_m4 CONNECTION 'dbname=regress_pa_nowhere host=/nonexistent port=1'
  PUBLICATION p WITH (connect = false);
BEGIN;
SELECT parallel_apply.attach('regress_pa_m1');
SELECT parallel_apply.attach('regress_pa_m2');
SELECT parallel_apply.attach('regress_pa_m3'), parallel_apply.attach('regress_pa_m4');
SELECT parallel_apply.attach('regress_pa_ok');
ROLLBACK;
SELECT count(*) FROM parallel_apply.stat_subscription;

SELECT parallel_apply.detach('regress_pa_ok');
SELECT parallel_apply.attach('regress_pa_ok');
SELECT subenabled FROM pg_subscription WHERE subname = 'regress_pa_ok';
SELECT s.subname, a.subid = s.oid AS subid_ok,
       a.state IN ('starting', 'streaming', 'stopped') AS state_ok
FROM parallel_apply.stat_subscription a JOIN pg_subscription s ON s.subname = a.subname;
SELECT parallel_apply.attach('regress_pa_ok');
SET ROLE regress_pa_user;
SELECT parallel_apply.detach('regress_pa_ok');
SELECT parallel_apply.pause('regress_pa_ok');
SELECT parallel_apply.resume('regress_pa_ok');
SELECT parallel_apply.reset_subscription_stats('regress_pa_ok');
SELECT count(*) FROM parallel_apply.conflict_history;
RESET ROLE;

-- conflict counters: zero after attach; a reset zeroes them and says when
SELECT subname, confl_insert_exists, confl_update_origin_differs,
       confl_update_exists, confl_update_missing, confl_delete_origin_differs,
       confl_delete_missing, confl_multiple_unique_conflicts,
       stats_reset IS NULL AS never_reset
FROM parallel_apply.stat_conflicts;
SELECT parallel_apply.reset_subscription_stats('regress_pa_ok');
SELECT subname, confl_insert_exists + confl_update_origin_differs +
       confl_update_exists + confl_update_missing +
       confl_delete_origin_differs + confl_delete_missing +
       confl_multiple_unique_conflicts AS conflicts,
       stats_reset > now() - interval '1 hour' AS reset_now
FROM parallel_apply.stat_conflicts;
SELECT parallel_apply.reset_subscription_stats('regress_pa_m1');

-- pause and resume
SELECT parallel_apply.resume('regress_pa_ok');
SELECT parallel_apply.pause('regress_pa_ok');
SELECT subname, state, leader_pid FROM parallel_apply.stat_subscription;
SELECT parallel_apply.pause('regress_pa_ok');
SELECT parallel_apply.resume('regress_pa_ok');
SELECT state <> 'paused' AS resumed FROM parallel_apply.stat_subscription;
SELECT parallel_apply.resume('regress_pa_ok');
SELECT parallel_apply.pause('regress_pa_m1');
SELECT parallel_apply.pause('regress_pa_ok');

-- the extension cannot be dropped while a subscription is attached
DROP EXTENSION parallel_apply;
DROP SCHEMA parallel_apply CASCADE;

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
ALTER SUBSCRIPTION regress_pa_m1 SET (slot_name = NONE);
ALTER SUBSCRIPTION regress_pa_m2 SET (slot_name = NONE);
ALTER SUBSCRIPTION regress_pa_m3 SET (slot_name = NONE);
ALTER SUBSCRIPTION regress_pa_m4 SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_m1;
DROP SUBSCRIPTION regress_pa_m2;
DROP SUBSCRIPTION regress_pa_m3;
DROP SUBSCRIPTION regress_pa_m4;
\c regress_pa_otherdb
ALTER SUBSCRIPTION regress_pa_elsewhere SET (slot_name = NONE);
DROP SUBSCRIPTION regress_pa_elsewhere;
\c :regress_db
DROP DATABASE regress_pa_otherdb;
DROP TABLE regress_pa_tab;
DROP ROLE regress_pa_user;
SELECT count(*) FROM pg_subscription;
SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'parallel_apply%';
DROP EXTENSION parallel_apply;
-- like any schema named in a control file, it outlives the extension
DROP SCHEMA parallel_apply;

-- the extension is not created in a schema somebody else prepared: one
-- owned by a non-superuser (a database owner, who could plant functions in
-- it) ...
CREATE ROLE regress_pa_dbowner;
CREATE SCHEMA parallel_apply AUTHORIZATION regress_pa_dbowner;
CREATE EXTENSION parallel_apply;
DROP SCHEMA parallel_apply;
-- ... or one where a non-superuser may create objects ...
CREATE SCHEMA parallel_apply;
GRANT CREATE ON SCHEMA parallel_apply TO PUBLIC;
CREATE EXTENSION parallel_apply;
REVOKE CREATE ON SCHEMA parallel_apply FROM PUBLIC;
GRANT CREATE ON SCHEMA parallel_apply TO regress_pa_dbowner;
CREATE EXTENSION parallel_apply;
REVOKE CREATE ON SCHEMA parallel_apply FROM regress_pa_dbowner;
-- ... or one that holds objects already
CREATE FUNCTION parallel_apply.attach(text) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE EXTENSION parallel_apply;
DROP FUNCTION parallel_apply.attach(text);
-- an empty schema of a superuser is used
CREATE EXTENSION parallel_apply;
CREATE EXTENSION parallel_apply;
SELECT n.nspname, r.rolsuper
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
  JOIN pg_roles r ON r.oid = n.nspowner
WHERE e.extname = 'parallel_apply';
DROP EXTENSION parallel_apply;
DROP SCHEMA parallel_apply;
DROP ROLE regress_pa_dbowner;
