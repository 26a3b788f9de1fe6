/* parallel_apply--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION parallel_apply" to load this file. \quit

-- Every object is created, and every call made, in the extension's own
-- schema by name: the script never relies on search_path.  The module
-- refuses CREATE EXTENSION in a pre-existing schema owned by a
-- non-superuser or holding objects (src/sqlapi.c).

CREATE FUNCTION @extschema@.check_preloaded()
RETURNS void
AS 'MODULE_PATHNAME', 'pa_check_preloaded_sql'
LANGUAGE C STRICT;

-- refuses, with a hint, when the module is not in shared_preload_libraries
SELECT @extschema@.check_preloaded();

-- attach, detach, pause and resume are not STRICT: a NULL name is an error
CREATE FUNCTION @extschema@.attach(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_attach'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.attach(name) IS
'hand a subscription to parallel_apply: disables the built-in apply worker and applies the subscription in parallel on its own slot and origin';

CREATE FUNCTION @extschema@.detach(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_detach'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.detach(name) IS
'stop parallel_apply for a subscription and re-enable its built-in apply worker';

CREATE FUNCTION @extschema@.pause(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_pause'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.pause(name) IS
'stop applying an attached subscription until resume(), across server restarts; nothing applies it meanwhile';

CREATE FUNCTION @extschema@.resume(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_resume'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.resume(name) IS
'apply a paused subscription again';

CREATE FUNCTION @extschema@.stat_subscription_internal(
	OUT subid oid,
	OUT subname name,
	OUT state text,
	OUT leader_pid integer,
	OUT workers integer,
	OUT received_lsn pg_lsn,
	OUT applied_lsn pg_lsn,
	OUT flushed_lsn pg_lsn,
	OUT transactions_applied bigint,
	OUT dependency_waits bigint,
	OUT serial_retries bigint,
	OUT restarts bigint,
	OUT paced_reads bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pa_stat_subscription'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.stat_workers_internal(
	OUT subid oid,
	OUT subname name,
	OUT worker_type text,
	OUT worker_id integer,
	OUT pid integer,
	OUT transactions_applied bigint,
	OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pa_stat_workers'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION @extschema@.stat_relations_internal(
	OUT subid oid,
	OUT subname name,
	OUT relid regclass,
	OUT replica_identity text,
	OUT lookup_index regclass,
	OUT rows_looked_up bigint,
	OUT rows_not_found bigint,
	OUT seq_scans bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pa_stat_relations'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW @extschema@.stat_subscription AS
	SELECT * FROM @extschema@.stat_subscription_internal();

COMMENT ON VIEW @extschema@.stat_subscription IS
'one row per subscription of this database attached to parallel_apply';

CREATE VIEW @extschema@.stat_workers AS
	SELECT * FROM @extschema@.stat_workers_internal();

COMMENT ON VIEW @extschema@.stat_workers IS
'one row per running leader and apply worker of parallel_apply in this database';

CREATE VIEW @extschema@.stat_relations AS
	SELECT * FROM @extschema@.stat_relations_internal();

COMMENT ON VIEW @extschema@.stat_relations IS
'one row per (attached subscription, local relation) in which a worker looked rows up: how it finds them and how often';

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
GRANT SELECT ON @extschema@.stat_subscription, @extschema@.stat_workers,
	@extschema@.stat_relations TO PUBLIC;
