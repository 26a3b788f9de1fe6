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
	OUT paced_reads bigint,
	OUT last_msg_send_time timestamptz,
	OUT last_msg_receipt_time timestamptz,
	OUT latest_end_lsn pg_lsn,
	OUT latest_end_time timestamptz,
	OUT apply_lag interval,
	OUT pending_bytes bigint,
	OUT pending_transactions bigint,
	OUT apply_error_count bigint,
	OUT last_error_time timestamptz,
	OUT last_error text,
	OUT last_error_xid xid,
	OUT last_error_lsn pg_lsn,
	OUT streams_applied bigint,
	OUT streams_open integer,
	OUT streams_spilled bigint,
	OUT bytes_spilled bigint,
	OUT active_workers integer,
	OUT active_workers_reason text,
	OUT active_workers_changes bigint)
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
	OUT state text,
	OUT remote_xid xid,
	OUT finish_lsn pg_lsn,
	OUT xact_start timestamptz,
	OUT waiting_for text,
	OUT waiting_for_xid xid,
	OUT waiting_for_lsn pg_lsn,
	OUT stream_xid xid,
	OUT active boolean)
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

CREATE FUNCTION @extschema@.stat_conflicts_internal(
	OUT subid oid,
	OUT subname name,
	OUT confl_insert_exists bigint,
	OUT confl_update_origin_differs bigint,
	OUT confl_update_exists bigint,
	OUT confl_update_missing bigint,
	OUT confl_delete_origin_differs bigint,
	OUT confl_delete_missing bigint,
	OUT confl_multiple_unique_conflicts bigint,
	OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pa_stat_conflicts'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW @extschema@.stat_conflicts AS
	SELECT * FROM @extschema@.stat_conflicts_internal();

COMMENT ON VIEW @extschema@.stat_conflicts IS
'one row per subscription of this database attached to parallel_apply: the conflicts its workers met, per type, as PostgreSQL 18''s pg_stat_subscription_stats counts them (kept in shared memory: across engine restarts, not server restarts)';

-- not STRICT: a NULL name is an error
CREATE FUNCTION @extschema@.reset_subscription_stats(subscription name)
RETURNS void
AS 'MODULE_PATHNAME', 'pa_reset_subscription_stats'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.reset_subscription_stats(name) IS
'set the conflict counters and apply_error_count of an attached subscription to zero (its owner or a superuser)';

-- One row per conflict: (subscription, finish LSN, change, type, index).
-- Written by the apply workers, as superuser, in a transaction of their
-- own; a transaction that meets the same conflict again (a retry) counts
-- an attempt.  Purge it with DELETE (README, "Conflicts").
CREATE TABLE @extschema@.conflict_history (
	time timestamptz NOT NULL,
	last_time timestamptz NOT NULL,
	attempts integer NOT NULL,
	subid oid NOT NULL,
	subname name NOT NULL,
	relid oid NOT NULL,
	relation text NOT NULL,
	conflict_type text NOT NULL,
	index_name text,
	remote_xid xid NOT NULL,
	finish_lsn pg_lsn NOT NULL,
	change integer NOT NULL,
	remote_commit_time timestamptz,
	local_origin text,
	local_xid xid,
	local_commit_time timestamptz,
	key jsonb,
	local_row jsonb,
	remote_row jsonb,
	replica_identity jsonb,
	resolution text NOT NULL
);

CREATE UNIQUE INDEX conflict_history_conflict ON @extschema@.conflict_history
	(subid, finish_lsn, change, conflict_type, (coalesce(index_name, '')));

CREATE INDEX conflict_history_time ON @extschema@.conflict_history (time);

COMMENT ON TABLE @extschema@.conflict_history IS
'the conflicts parallel_apply met: one row per (subscription, finish_lsn, change, conflict_type, index_name), with attempts counting how often it was met';

-- pg_dump keeps its rows
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conflict_history', '');

GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
GRANT SELECT ON @extschema@.stat_subscription, @extschema@.stat_workers,
	@extschema@.stat_relations, @extschema@.stat_conflicts TO PUBLIC;
