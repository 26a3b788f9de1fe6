/*-------------------------------------------------------------------------
 *
 * sqlapi.c
 *	  The SQL API: attach, detach, the statistics functions behind the views,
 *	  and the DROP SUBSCRIPTION hook.
 *
 * Owns: the attach marker (replication origin
 * "parallel_apply_attached_<subid>") and the rules for handing a
 * subscription between the built-in apply worker and the engine.
 *
 * Invariants kept here:
 *	- a subscription is never applied by both the built-in worker and the
 *	  engine: attach disables it (as ALTER SUBSCRIPTION ... DISABLE) in the
 *	  same transaction that creates the marker, and the leader waits for the
 *	  built-in worker to exit before it connects; detach stops the engine
 *	  and waits for every one of its processes to exit before it re-enables
 *	  the subscription;
 *	- both sides use the subscription's own slot and origin (pg_<subid>), so
 *	  nothing is lost or applied twice across attach/detach (invariant 2);
 *	- only a superuser or the subscription's owner may attach or detach;
 *	- DROP SUBSCRIPTION of an attached subscription stops the engine first,
 *	  so that the slot and the origin are free to be dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "parallel_apply.h"
#include "replication/origin.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(pa_attach);
PG_FUNCTION_INFO_V1(pa_detach);
PG_FUNCTION_INFO_V1(pa_stat_subscription);
PG_FUNCTION_INFO_V1(pa_stat_workers);

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static bool xact_callback_registered = false;
static bool wake_launcher_at_commit = false;
static List *stopping_subs = NIL;	/* subids whose stop we requested */

static void
pa_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;

	/*
	 * The stop request ends with the transaction: after a commit the
	 * subscription is detached or dropped, and the launcher, which starts
	 * leaders only for attached subscriptions, releases the slot; after an
	 * abort it stays attached and the engine runs again.
	 */
	if (stopping_subs != NIL)
	{
		LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
		foreach(lc, stopping_subs)
		{
			PaSub	   *sub = pa_find_sub(lfirst_oid(lc));

			if (sub && sub->stop_requester == MyProcPid)
				sub->stop_requested = false;
		}
		LWLockRelease(pa_shared->lock);
	}
	if (stopping_subs != NIL || wake_launcher_at_commit)
		pa_wake_launcher();
	list_free(stopping_subs);
	stopping_subs = NIL;
	wake_launcher_at_commit = false;
}

static void
register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(pa_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * Look up a subscription of the current database by name, with a clear
 * error when it does not exist or lives in another database.
 */
static Oid
lookup_subscription(const char *name)
{
	Oid			subid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Oid			otherdb = InvalidOid;

	subid = GetSysCacheOid2(SUBSCRIPTIONNAME, Anum_pg_subscription_oid,
							ObjectIdGetDatum(MyDatabaseId), CStringGetDatum(name));
	if (OidIsValid(subid))
		return subid;

	rel = table_open(SubscriptionRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_subscription form = (Form_pg_subscription) GETSTRUCT(tup);

		if (strcmp(NameStr(form->subname), name) == 0)
		{
			otherdb = form->subdbid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	if (OidIsValid(otherdb))
	{
		char	   *dbname = get_database_name(otherdb);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" belongs to database \"%s\"",
						name, dbname ? dbname : "?"),
				 errhint("Connect to database \"%s\" to attach it.",
						 dbname ? dbname : "?")));
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("subscription \"%s\" does not exist", name)));
	return InvalidOid;			/* keep compiler quiet */
}

static void
check_owner(Oid subid, const char *name)
{
	if (!pg_subscription_ownercheck(subid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_SUBSCRIPTION, name);
}

static void
run_alter_subscription(const char *name, const char *action)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "ALTER SUBSCRIPTION %s %s", quote_identifier(name), action);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not run \"%s\"", sql.data);
	SPI_finish();
	pfree(sql.data);
}

/*
 * Stop the engine of an attached subscription and wait until none of its
 * processes is left.  If the calling transaction aborts, the stop request
 * is withdrawn (pa_xact_callback) and the launcher starts the engine again.
 */
static void
stop_engine(Oid subid, const char *name)
{
	PaSub	   *sub;
	int			i;

	register_xact_callback();

	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	sub = pa_find_sub(subid);
	if (sub != NULL)
	{
		Latch	   *latch = sub->leader_latch;

		sub->stop_requested = true;
		sub->stop_requester = MyProcPid;

		if (latch != NULL)
			SetLatch(latch);
	}
	LWLockRelease(pa_shared->lock);
	if (sub == NULL)
		return;					/* no slot: nothing runs */
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		stopping_subs = lappend_oid(stopping_subs, subid);
		MemoryContextSwitchTo(old);
	}

	for (i = 0; pa_sub_has_processes(sub); i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (i == 100)			/* 10 s: the leader is stuck somewhere */
		{
			pid_t		pid = sub->leader_pid;

			if (pid != 0)
				kill(pid, SIGTERM);
		}
		if (i == 600)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("could not stop parallel_apply for subscription \"%s\"", name),
					 errdetail("Its processes did not exit within 60 seconds.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

Datum
pa_attach(PG_FUNCTION_ARGS)
{
	char	   *name = NameStr(*PG_GETARG_NAME(0));
	Oid			subid;
	Subscription *sub;
	List	   *notready;
	char	   *marker;
	int			i;
	int			used = 0;

	pa_check_preloaded();
	subid = lookup_subscription(name);
	check_owner(subid, name);
	sub = GetSubscription(subid, false);

	if (pa_subscription_is_attached(subid))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("subscription \"%s\" is already attached to parallel_apply", name)));
	if (sub->twophasestate != LOGICALREP_TWOPHASE_STATE_DISABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot attach subscription \"%s\" because two_phase is enabled", name),
				 errdetail("parallel_apply does not apply prepared transactions.")));
	if (sub->slotname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot attach subscription \"%s\" because it has no replication slot", name),
				 errhint("Set one with ALTER SUBSCRIPTION ... SET (slot_name = ...).")));

	notready = GetSubscriptionNotReadyRelations(subid);
	if (notready != NIL)
	{
		SubscriptionRelState *rs = linitial(notready);
		char	   *nsp = get_namespace_name(get_rel_namespace(rs->relid));
		char	   *rel = get_rel_name(rs->relid);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot attach subscription \"%s\" before all its tables are synchronized", name),
				 errdetail("Table \"%s.%s\" is in state \"%c\".",
						   nsp ? nsp : "?", rel ? rel : "?", rs->state),
				 errhint("Wait until every row of pg_subscription_rel for the subscription has srsubstate = 'r'.")));
	}

	LWLockAcquire(pa_shared->lock, LW_SHARED);
	for (i = 0; i < pa_shared->nsubs; i++)
		if (pa_shared->subs[i].in_use && pa_shared->subs[i].subid != subid)
			used++;
	LWLockRelease(pa_shared->lock);
	if (used >= pa_shared->nsubs)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("cannot attach subscription \"%s\": %d subscriptions are attached already",
						name, used),
				 errhint("Increase parallel_apply.max_subscriptions.")));

	if (sub->enabled)
		run_alter_subscription(name, "DISABLE");

	marker = pa_attach_marker_name(subid);
	(void) replorigin_create(marker);

	register_xact_callback();
	wake_launcher_at_commit = true;
	PG_RETURN_VOID();
}

Datum
pa_detach(PG_FUNCTION_ARGS)
{
	char	   *name = NameStr(*PG_GETARG_NAME(0));
	Oid			subid;

	pa_check_preloaded();
	subid = lookup_subscription(name);
	check_owner(subid, name);

	if (!pa_subscription_is_attached(subid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" is not attached to parallel_apply", name)));

	stop_engine(subid, name);
	replorigin_drop_by_name(pa_attach_marker_name(subid), false, true);
	run_alter_subscription(name, "ENABLE");
	PG_RETURN_VOID();
}

static void
pa_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, DropSubscriptionStmt) && pa_shared != NULL)
	{
		DropSubscriptionStmt *stmt = (DropSubscriptionStmt *) parsetree;
		Oid			subid;

		subid = GetSysCacheOid2(SUBSCRIPTIONNAME, Anum_pg_subscription_oid,
								ObjectIdGetDatum(MyDatabaseId),
								CStringGetDatum(stmt->subname));
		if (OidIsValid(subid) && pa_subscription_is_attached(subid))
		{
			check_owner(subid, stmt->subname);
			stop_engine(subid, stmt->subname);
			replorigin_drop_by_name(pa_attach_marker_name(subid), true, true);
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
pa_sqlapi_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pa_process_utility;
}

static const char *
sub_state_name(PaSub *sub)
{
	if (sub == NULL || sub->leader_pid == 0)
		return "stopped";
	switch (sub->state)
	{
		case PA_SUB_STARTING:
			return "starting";
		case PA_SUB_STREAMING:
			return "streaming";
		default:
			return "stopped";
	}
}

static const char *
worker_state_name(PaWorkerState state)
{
	switch (state)
	{
		case PA_WORKER_IDLE:
			return "idle";
		case PA_WORKER_APPLYING:
			return "applying";
		case PA_WORKER_WAITING:
			return "waiting";
		default:
			return "exiting";
	}
}

/* Attached subscriptions of the current database, as (oid, name) pairs */
static List *
attached_here(List **names)
{
	List	   *oids = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	*names = NIL;
	rel = table_open(SubscriptionRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_subscription form = (Form_pg_subscription) GETSTRUCT(tup);

		if (form->subdbid == MyDatabaseId && pa_subscription_is_attached(form->oid))
		{
			oids = lappend_oid(oids, form->oid);
			*names = lappend(*names, pstrdup(NameStr(form->subname)));
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return oids;
}

#define LSN_OR_NULL(lsn, v, n, i) \
	do { if ((lsn) == InvalidXLogRecPtr) (n)[i] = true; else (v)[i] = LSNGetDatum(lsn); } while (0)

Datum
pa_stat_subscription(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	ListCell   *lc1,
			   *lc2;

	pa_check_preloaded();
	InitMaterializedSRF(fcinfo, 0);
	oids = attached_here(&names);

	LWLockAcquire(pa_shared->lock, LW_SHARED);
	forboth(lc1, oids, lc2, names)
	{
		Datum		values[13];
		bool		nulls[13];
		PaSub	   *sub = pa_find_sub(lfirst_oid(lc1));

		memset(nulls, 0, sizeof(nulls));
		memset(values, 0, sizeof(values));
		values[0] = ObjectIdGetDatum(lfirst_oid(lc1));
		values[1] = CStringGetDatum(lfirst(lc2));
		values[1] = DirectFunctionCall1(namein, values[1]);
		values[2] = CStringGetTextDatum(sub_state_name(sub));
		if (sub == NULL || sub->leader_pid == 0)
		{
			int			i;

			for (i = 3; i < 13; i++)
				nulls[i] = true;
		}
		else
		{
			values[3] = Int32GetDatum(sub->leader_pid);
			values[4] = Int32GetDatum(sub->nworkers);
			LSN_OR_NULL(pg_atomic_read_u64(&sub->received_lsn), values, nulls, 5);
			LSN_OR_NULL(pg_atomic_read_u64(&sub->applied_lsn), values, nulls, 6);
			LSN_OR_NULL(pg_atomic_read_u64(&sub->flushed_lsn), values, nulls, 7);
		}
		if (sub != NULL)
		{
			nulls[8] = nulls[9] = nulls[10] = nulls[11] = nulls[12] = false;
			values[8] = Int64GetDatum(pg_atomic_read_u64(&sub->txns_applied));
			values[9] = Int64GetDatum(pg_atomic_read_u64(&sub->dependency_waits));
			values[10] = Int64GetDatum(pg_atomic_read_u64(&sub->serial_retries));
			values[11] = Int64GetDatum(pg_atomic_read_u64(&sub->restarts));
			values[12] = Int64GetDatum(pg_atomic_read_u64(&sub->paced_reads));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

Datum
pa_stat_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	ListCell   *lc1,
			   *lc2;

	pa_check_preloaded();
	InitMaterializedSRF(fcinfo, 0);
	oids = attached_here(&names);

	LWLockAcquire(pa_shared->lock, LW_SHARED);
	forboth(lc1, oids, lc2, names)
	{
		PaSub	   *sub = pa_find_sub(lfirst_oid(lc1));
		Datum		subname = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc2)));
		Datum		values[7];
		bool		nulls[7];
		int			i;

		if (sub == NULL || sub->leader_pid == 0)
			continue;

		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(sub->subid);
		values[1] = subname;
		values[2] = CStringGetTextDatum("leader");
		values[3] = Int32GetDatum(0);
		values[4] = Int32GetDatum(sub->leader_pid);
		values[5] = Int64GetDatum(pg_atomic_read_u64(&sub->txns_applied));
		values[6] = CStringGetTextDatum(sub_state_name(sub));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

		for (i = 0; i < PA_MAX_WORKERS; i++)
		{
			PaWorker   *w = &sub->workers[i];
			pid_t		pid = w->pid;

			if (pid == 0)
				continue;
			values[2] = CStringGetTextDatum("apply");
			values[3] = Int32GetDatum(i + 1);
			values[4] = Int32GetDatum(pid);
			values[5] = Int64GetDatum(pg_atomic_read_u64(&w->applied));
			values[6] = CStringGetTextDatum(worker_state_name(w->state));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pa_check_preloaded_sql);

Datum
pa_check_preloaded_sql(PG_FUNCTION_ARGS)
{
	pa_check_preloaded();
	PG_RETURN_VOID();
}
