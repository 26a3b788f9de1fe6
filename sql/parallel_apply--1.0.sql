/* parallel_apply--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION parallel_apply" to load this file. \quit

CREATE FUNCTION check_preloaded()
RETURNS void
AS 'MODULE_PATHNAME', 'pa_check_preloaded_sql'
LANGUAGE C STRICT;

-- refuses, with a hint, when the module is not in shared_preload_libraries
SELECT check_preloaded();

CREATE FUNCTION attach(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_attach'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION attach(name) IS
'hand a subscription to parallel_apply: disables the built-in apply worker and applies the subscription in parallel on its own slot and origin';

CREATE FUNCTION detach(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_detach'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION detach(name) IS
'stop parallel_apply for a subscription and re-enable its built-in apply worker';

CREATE FUNCTION stat_subscription_internal(
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

CREATE FUNCTION stat_workers_internal(
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

CREATE VIEW stat_subscription AS
	SELECT * FROM stat_subscription_internal();

COMMENT ON VIEW stat_subscription IS
'one row per subscription of this database attached to parallel_apply';

CREATE VIEW stat_workers AS
	SELECT * FROM stat_workers_internal();

COMMENT ON VIEW stat_workers IS
'one row per running leader and apply worker of parallel_apply in this database';

GRANT USAGE ON SCHEMA parallel_apply TO PUBLIC;
GRANT SELECT ON stat_subscription, stat_workers TO PUBLIC;
