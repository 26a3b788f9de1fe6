/*-------------------------------------------------------------------------
 *
 * sqlapi.c
 *	  The SQL API: attach, detach, the statistics functions behind the views,
 *	  and the DROP SUBSCRIPTION hook.
 *
 * Owns: the attach and pause markers (replication origins
 * "parallel_apply_attached_<subid>" and "parallel_apply_paused_<subid>"),
 * the rules for handing a subscription between the built-in apply worker
 * and the engine, and the checks on CREATE and DROP EXTENSION.
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
 *	- only a superuser or the subscription's owner may attach, detach,
 *	  pause or resume;
 *	- markers are created and dropped holding ExclusiveLock on
 *	  pg_replication_origin until commit, and checked after taking it, so
 *	  concurrent calls see each other's result (a second attach fails with
 *	  "already attached", and parallel_apply.max_subscriptions holds at
 *	  commit);
 *	- DROP SUBSCRIPTION of an attached subscription locks the subscription
 *	  (which a starting leader needs too) and stops the engine first, so
 *	  that the slot and the origin are free to be dropped and no leader
 *	  starts behind it;
 *	- the extension is never created in a schema someone else prepared, and
 *	  never dropped while a subscription of the database is attached.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/genam.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "pa_lookup.h"
#include "parallel_apply.h"
#include "replication/origin.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(pa_attach);
PG_FUNCTION_INFO_V1(pa_detach);
PG_FUNCTION_INFO_V1(pa_pause);
PG_FUNCTION_INFO_V1(pa_resume);
PG_FUNCTION_INFO_V1(pa_stat_subscription);
PG_FUNCTION_INFO_V1(pa_stat_workers);
PG_FUNCTION_INFO_V1(pa_stat_relations);
PG_FUNCTION_INFO_V1(pa_stat_conflicts);
PG_FUNCTION_INFO_V1(pa_reset_subscription_stats);

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;
static bool xact_callback_registered = false;
static bool wake_launcher_at_commit = false;
static List *stopping_subs = NIL;	/* subids whose stop we requested */

static List *attached_here(List **names, List **paused);

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
	if (stopping_subs != NIL || wake_launcher_at_commit)
	{
		int			i;

		LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
		foreach(lc, stopping_subs)
		{
			PaSub	   *sub = pa_find_sub(lfirst_oid(lc));

			if (sub && sub->stop_requester == MyProcPid)
				sub->stop_requested = false;
		}
		for (i = 0; i < PA_MAX_STOPPING; i++)
		{
			if (pa_shared->stopping[i].requester == MyProcPid)
			{
				pa_shared->stopping[i].subid = InvalidOid;
				pa_shared->stopping[i].requester = 0;
			}
		}
		pa_shared->changes++;	/* what the launcher read may be stale */
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
 * The subscription name argument of attach, detach, pause and resume.  The
 * functions are not STRICT, so that a NULL is an error rather than a silent
 * no-op.
 */
static char *
subscription_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("subscription name must not be null")));
	return NameStr(*PG_GETARG_NAME(0));
}

/*
 * Look up a subscription of the current database by name, with a clear
 * error when it does not exist or lives in another database (where the user
 * may "verb" it).
 */
static Oid
lookup_subscription(const char *name, const char *verb)
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
				 errhint("Connect to database \"%s\" and call parallel_apply.%s() there.",
						 dbname ? dbname : "?", verb)));
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
	for (i = 0; i < PA_MAX_STOPPING; i++)
		if (!OidIsValid(pa_shared->stopping[i].subid))
			break;
	if (i == PA_MAX_STOPPING)
	{
		LWLockRelease(pa_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not stop parallel_apply for subscription \"%s\"", name),
				 errdetail("%d stops of parallel_apply are in progress already.", PA_MAX_STOPPING),
				 errhint("Try again when some of them are done.")));
	}
	pa_shared->stopping[i].subid = subid;
	pa_shared->stopping[i].requester = MyProcPid;
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
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		stopping_subs = lappend_oid(stopping_subs, subid);
		MemoryContextSwitchTo(old);
	}
	if (sub == NULL)
		return;					/* no slot: nothing runs, nor will */

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

/*
 * Serialize the creation and removal of markers (attach, detach, pause,
 * resume, DROP SUBSCRIPTION and DROP EXTENSION here; a leader dropping its
 * own marker): an advisory lock of the engine's own, in ExclusiveLock until
 * the transaction ends.  Taking it processes the invalidations of whoever
 * held it before, so checks made after it see their committed result.  It
 * is the last lock any of them takes (after pg_subscription and the
 * subscription, in PostgreSQL's own order), so it cannot close a cycle.
 */
void
pa_lock_markers(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, InvalidOid, 0, 0, PA_LOCKTAG_MARKERS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	AcceptInvalidationMessages();
}

/*
 * Lock the subscription as ALTER SUBSCRIPTION does (pg_subscription, then
 * the subscription itself), before the marker lock.
 */
static void
lock_subscription(Oid subid)
{
	LockRelationOid(SubscriptionRelationId, RowExclusiveLock);
	LockSharedObject(SubscriptionRelationId, subid, 0, AccessExclusiveLock);
}

/* Attached subscriptions other than subid, as the catalogs say now */
static int
count_attached_except(Oid subid)
{
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	int			n = 0;

	rel = table_open(ReplicationOriginRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, snap, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_replication_origin_roname,
									 RelationGetDescr(rel), &isnull);
		Oid			other;

		if (!isnull &&
			sscanf(TextDatumGetCString(d), PA_ATTACH_MARKER_FMT, &other) == 1 &&
			other != subid &&
			SearchSysCacheExists1(SUBSCRIPTIONOID, ObjectIdGetDatum(other)))
			n++;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
	return n;
}

/*
 * attach() hands the subscription to a launcher that must exist: refuse,
 * and say what to fix, when none runs.  A launcher that is starting (the
 * server just started, or the launcher restarts after a crash) is waited
 * for, for a bounded time.
 */
static void
check_launcher(void)
{
	int			i;

	for (i = 0;; i++)
	{
		pid_t		pid;
		bool		connecting;

		LWLockAcquire(pa_shared->lock, LW_SHARED);
		pid = pa_shared->launcher_pid;
		connecting = pa_shared->launcher_connecting;
		LWLockRelease(pa_shared->lock);
		if (pid != 0)
			return;
		if (connecting && i >= 20)	/* 2 s: connecting does not take long */
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the parallel_apply launcher is not running"),
					 errdetail("It could not connect to database \"%s\" named by parallel_apply.database.",
							   pa_database),
					 errhint("Create that database, or set parallel_apply.database to an existing one and restart the server.")));
		if (i >= 100)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the parallel_apply launcher is not running"),
					 errdetail("It did not start within 10 seconds."),
					 errhint("The server log says why; you might need to increase max_worker_processes.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
check_attached(Oid subid, const char *name)
{
	if (!pa_subscription_is_attached(subid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" is not attached to parallel_apply", name)));
}

/* refuse unless the subscription is paused (paused) or not (!paused) */
static void
check_paused(Oid subid, const char *name, bool paused)
{
	if (pa_subscription_is_paused(subid) != paused)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 paused ?
				 errmsg("subscription \"%s\" is not paused", name) :
				 errmsg("subscription \"%s\" is already paused", name)));
}

/*
 * What attach, detach, pause and resume start with: the subscription named
 * by the first argument, which the user must own, in this database.
 */
static Oid
target_subscription(FunctionCallInfo fcinfo, const char *verb, char **name)
{
	Oid			subid;

	pa_check_preloaded();
	*name = subscription_arg(fcinfo);
	subid = lookup_subscription(*name, verb);
	check_owner(subid, *name);
	return subid;
}

Datum
pa_attach(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			subid = target_subscription(fcinfo, "attach", &name);
	Subscription *sub;
	List	   *notready;
	char	   *marker;
	int			used;

	check_launcher();
	lock_subscription(subid);
	pa_lock_markers();
	CommandCounterIncrement();	/* see our own earlier attaches too */
	if (!OidIsValid(get_extension_oid("parallel_apply", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"parallel_apply\" was dropped concurrently")));
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

	/* counted under the marker lock, so the limit holds at commit */
	used = count_attached_except(subid);
	if (used >= pa_shared->nsubs)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg_plural("cannot attach subscription \"%s\": %d subscription is attached already",
							   "cannot attach subscription \"%s\": %d subscriptions are attached already",
							   used, name, used),
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
	char	   *name;
	Oid			subid = target_subscription(fcinfo, "detach", &name);

	check_attached(subid, name);

	stop_engine(subid, name);
	lock_subscription(subid);
	pa_lock_markers();
	check_attached(subid, name);	/* a concurrent detach won */
	replorigin_drop_by_name(pa_attach_marker_name(subid), false, true);
	replorigin_drop_by_name(pa_pause_marker_name(subid), true, true);

	/* PostgreSQL refuses to enable a subscription without a slot */
	if (GetSubscription(subid, false)->slotname == NULL)
		ereport(NOTICE,
				(errmsg("subscription \"%s\" stays disabled because it has no replication slot", name),
				 errhint("Set one with ALTER SUBSCRIPTION ... SET (slot_name = ...), then enable it.")));
	else
		run_alter_subscription(name, "ENABLE");
	PG_RETURN_VOID();
}

/*
 * pause(): stop the engine of an attached subscription, and keep it
 * stopped (across restarts of the server too) until resume().  Nothing
 * applies the subscription meanwhile: it stays disabled and attached, and
 * its slot keeps what the publisher writes.
 */
Datum
pa_pause(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			subid = target_subscription(fcinfo, "pause", &name);

	check_attached(subid, name);
	check_paused(subid, name, false);

	stop_engine(subid, name);
	LockSharedObject(SubscriptionRelationId, subid, 0, AccessExclusiveLock);
	pa_lock_markers();
	check_attached(subid, name);	/* as it is now that we hold the lock */
	check_paused(subid, name, false);
	(void) replorigin_create(pa_pause_marker_name(subid));
	PG_RETURN_VOID();
}

Datum
pa_resume(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			subid = target_subscription(fcinfo, "resume", &name);

	LockSharedObject(SubscriptionRelationId, subid, 0, AccessExclusiveLock);
	pa_lock_markers();
	check_attached(subid, name);
	check_paused(subid, name, true);
	replorigin_drop_by_name(pa_pause_marker_name(subid), false, true);

	register_xact_callback();
	wake_launcher_at_commit = true;
	PG_RETURN_VOID();
}

/* Is object (classid, objid) a member of extension extoid? */
static bool
extension_member(Oid classid, Oid objid, Oid extoid)
{
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		member = false;

	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_classid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(classid));
	ScanKeyInit(&key[1], Anum_pg_depend_objid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(objid));
	scan = systable_beginscan(rel, DependDependerIndexId, true, NULL, 2, key);
	while (!member && (tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		member = (dep->refclassid == ExtensionRelationId &&
				  dep->refobjid == extoid &&
				  dep->deptype == DEPENDENCY_EXTENSION);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return member;
}

static void
refuse_schema(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot create extension \"parallel_apply\" in existing schema \"parallel_apply\""),
			 errdetail_internal("%s", detail),
			 errhint("Drop or rename the schema, then run CREATE EXTENSION again.")));
}

/*
 * The extension is created only in a schema of its own.  Its control file
 * names the schema, and CREATE EXTENSION adopts one that exists: a schema
 * prepared by a non-superuser (a database owner may create it), or one
 * where others may create objects, would let them plant functions that the
 * superuser's documented calls, such as parallel_apply.attach('s'), resolve
 * to.  Checked by the install script's first statement, in the schema
 * CREATE EXTENSION chose (by whatever path it was reached: CASCADE too):
 * its owner must be a superuser, no non-superuser may create in it, and it
 * may hold nothing but the extension's own objects.
 */
/*
 * The schema of an extension, and its owner if owner is not NULL
 * (PostgreSQL 15 does not export its own lookup)
 */
Oid
pa_extension_schema(Oid extoid, Oid *owner)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nspid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		nspid = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
		if (owner != NULL)
			*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nspid))
		elog(ERROR, "could not find extension %u", extoid);
	return nspid;
}

static void
check_extension_schema(Oid extoid)
{
	Oid			nspid = pa_extension_schema(extoid, NULL);
	HeapTuple	tup;
	Form_pg_namespace form;
	Datum		d;
	bool		isnull;
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema %u", nspid);
	form = (Form_pg_namespace) GETSTRUCT(tup);
	if (!superuser_arg(form->nspowner))
		refuse_schema(psprintf(_("The schema is owned by role \"%s\", which is not a superuser."),
							   GetUserNameFromId(form->nspowner, false)));
	d = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (!isnull)
	{
		Acl		   *acl = DatumGetAclP(d);
		AclItem    *items = ACL_DAT(acl);
		int			i;

		for (i = 0; i < ACL_NUM(acl); i++)
		{
			Oid			grantee = items[i].ai_grantee;

			if ((ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE) &&
				(grantee == ACL_ID_PUBLIC || !superuser_arg(grantee)))
				refuse_schema(grantee == ACL_ID_PUBLIC ?
							  pstrdup(_("Every role may create objects in the schema.")) :
							  psprintf(_("Role \"%s\", which is not a superuser, may create objects in the schema."),
									   GetUserNameFromId(grantee, false)));
		}
	}
	ReleaseSysCache(tup);

	/* every object in a schema depends on it */
	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(nspid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->classid == ExtensionRelationId && dep->objid == extoid)
			continue;			/* the extension itself */
		if (!extension_member(dep->classid, dep->objid, extoid))
			refuse_schema(_("The schema already contains objects."));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * DROP EXTENSION (or DROP SCHEMA ... CASCADE, or anything else that drops
 * the extension) while a subscription of the database is attached would
 * leave the engine running without its SQL API: refuse.
 */
static void
pa_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == ExtensionRelationId &&
		pa_shared != NULL &&
		objectId == get_extension_oid("parallel_apply", true))
	{
		List	   *names;
		List	   *oids;

		/* in the order of the others: pg_subscription, then the markers */
		LockRelationOid(SubscriptionRelationId, AccessShareLock);
		pa_lock_markers();		/* an attach in progress commits first */
		oids = attached_here(&names, NULL);
		if (oids != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop extension \"parallel_apply\" while subscription \"%s\" is attached",
							(char *) linitial(names)),
					 errhint("Detach it with parallel_apply.detach() or drop the subscription first.")));
	}
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

			/*
			 * Stop the engine (the request keeps the launcher from starting
			 * a leader until we commit), then lock as DROP SUBSCRIPTION will
			 * (pg_subscription, the subscription), then the markers.
			 */
			stop_engine(subid, stmt->subname);
			LockRelationOid(SubscriptionRelationId, AccessExclusiveLock);
			LockSharedObject(SubscriptionRelationId, subid, 0, AccessExclusiveLock);
			pa_lock_markers();
			replorigin_drop_by_name(pa_attach_marker_name(subid), true, true);
			replorigin_drop_by_name(pa_pause_marker_name(subid), true, true);
		}
	}
	else if (IsA(parsetree, AlterSubscriptionStmt) && pa_shared != NULL)
	{
		AlterSubscriptionStmt *stmt = (AlterSubscriptionStmt *) parsetree;
		Oid			subid;

		/* the launcher re-reads an attached subscription once it changed */
		subid = GetSysCacheOid2(SUBSCRIPTIONNAME, Anum_pg_subscription_oid,
								ObjectIdGetDatum(MyDatabaseId),
								CStringGetDatum(stmt->subname));
		if (OidIsValid(subid) && pa_subscription_is_attached(subid))
		{
			register_xact_callback();
			wake_launcher_at_commit = true;
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
	prev_object_access_hook = object_access_hook;
	object_access_hook = pa_object_access;
}

static const char *
sub_state_name(PaSub *sub, bool paused)
{
	if (paused)
		return "paused";
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

/*
 * Attached subscriptions of the current database, as (oid, name) pairs,
 * and (if paused is not NULL) whether each is paused
 */
static List *
attached_here(List **names, List **paused)
{
	List	   *oids = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	*names = NIL;
	if (paused)
		*paused = NIL;
	rel = table_open(SubscriptionRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_subscription form = (Form_pg_subscription) GETSTRUCT(tup);

		if (form->subdbid == MyDatabaseId && pa_subscription_is_attached(form->oid))
		{
			oids = lappend_oid(oids, form->oid);
			*names = lappend(*names, pstrdup(NameStr(form->subname)));
			if (paused)
				*paused = lappend_int(*paused,
									  pa_subscription_is_paused(form->oid));
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return oids;
}

/*
 * The start of every statistics function: a materialized result over the
 * attached subscriptions of this database (and whether each is paused, if
 * paused is not NULL), with PaShared->lock held in shared mode, which the
 * caller releases.
 */
static List *
stat_begin(FunctionCallInfo fcinfo, List **names, List **paused)
{
	List	   *oids;

	pa_check_preloaded();
	InitMaterializedSRF(fcinfo, 0);
	oids = attached_here(names, paused);
	LWLockAcquire(pa_shared->lock, LW_SHARED);
	return oids;
}

#define LSN_OR_NULL(lsn, v, n, i) \
	do { (n)[i] = ((lsn) == InvalidXLogRecPtr); if (!(n)[i]) (v)[i] = LSNGetDatum(lsn); } while (0)

#define TIME_OR_NULL(t, v, n, i) \
	do { (n)[i] = ((t) == 0); if (!(n)[i]) (v)[i] = TimestampTzGetDatum(t); } while (0)

/*
 * stat_subscription's columns 13-19: what the publisher sent last, and how
 * far behind the subscription is (only while a leader runs)
 */
static void
stat_lag(PaSub *sub, TimestampTz now, Datum *values, bool *nulls)
{
	XLogRecPtr	received = pg_atomic_read_u64(&sub->received_lsn);
	XLogRecPtr	applied = pg_atomic_read_u64(&sub->applied_lsn);
	uint64		dispatched = pg_atomic_read_u64(&sub->dispatched_seq);
	uint64		committed = pg_atomic_read_u64(&sub->committed_seq);
	TimestampTz last_commit = (TimestampTz) pg_atomic_read_u64(&sub->last_commit_time);
	int64		pending_bytes = (received > applied) ? (int64) (received - applied) : 0;
	int64		pending_txns = (dispatched > committed) ? (int64) (dispatched - committed) : 0;
	Interval   *lag = (Interval *) palloc0(sizeof(Interval));

	if (sub->leader_pid == 0)
	{
		int			i;

		for (i = 13; i <= 19; i++)
			nulls[i] = true;
		return;
	}
	TIME_OR_NULL((TimestampTz) pg_atomic_read_u64(&sub->last_msg_send_time), values, nulls, 13);
	TIME_OR_NULL((TimestampTz) pg_atomic_read_u64(&sub->last_msg_receipt_time), values, nulls, 14);
	LSN_OR_NULL(pg_atomic_read_u64(&sub->latest_end_lsn), values, nulls, 15);
	TIME_OR_NULL((TimestampTz) pg_atomic_read_u64(&sub->latest_end_time), values, nulls, 16);

	/* behind: now minus the commit time of the last transaction applied */
	if (pending_bytes > 0 || pending_txns > 0)
	{
		if (last_commit == 0)
			nulls[17] = true;	/* none applied yet: not known */
		else if (now > last_commit)
			lag->time = now - last_commit;
	}
	values[17] = IntervalPGetDatum(lag);
	values[18] = Int64GetDatum(pending_bytes);
	values[19] = Int64GetDatum(pending_txns);
}

/*
 * stat_subscription's columns 20-24: apply errors.  The message may hold
 * row values, so only superusers, members of pg_read_all_stats and the
 * subscription's owner see it.
 */
static void
stat_error(PaSub *sub, Oid subid, bool read_all_stats, Datum *values,
		   bool *nulls)
{
	bool		has_error;
	TimestampTz time = 0;
	TransactionId xid = InvalidTransactionId;
	XLogRecPtr	lsn = InvalidXLogRecPtr;
	char		message[PA_ERROR_LEN];

	values[20] = Int64GetDatum(pg_atomic_read_u64(&sub->apply_errors));
	nulls[20] = false;
	SpinLockAcquire(&sub->error_lock);
	has_error = sub->has_error;
	if (has_error)
	{
		time = sub->error_time;
		xid = sub->error_xid;
		lsn = pg_atomic_read_u64(&sub->error_lsn);
		memcpy(message, sub->error_message, PA_ERROR_LEN);
	}
	SpinLockRelease(&sub->error_lock);

	nulls[21] = nulls[22] = nulls[23] = nulls[24] = true;
	if (!has_error)
		return;
	TIME_OR_NULL(time, values, nulls, 21);
	if (read_all_stats || pg_subscription_ownercheck(subid, GetUserId()))
	{
		message[PA_ERROR_LEN - 1] = '\0';
		values[22] = CStringGetTextDatum(message);
		nulls[22] = false;
	}
	if (TransactionIdIsValid(xid))
	{
		values[23] = TransactionIdGetDatum(xid);
		nulls[23] = false;
	}
	LSN_OR_NULL(lsn, values, nulls, 24);
}

Datum
pa_stat_subscription(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	List	   *paused;
	ListCell   *lc1,
			   *lc2,
			   *lc3;

	TimestampTz now = GetCurrentTimestamp();
	bool		read_all_stats = has_privs_of_role(GetUserId(),
												   ROLE_PG_READ_ALL_STATS);

	oids = stat_begin(fcinfo, &names, &paused);
	forthree(lc1, oids, lc2, names, lc3, paused)
	{
		Datum		values[32];
		bool		nulls[32];
		PaSub	   *sub = pa_find_sub(lfirst_oid(lc1));

		memset(nulls, 0, sizeof(nulls));
		memset(values, 0, sizeof(values));
		values[0] = ObjectIdGetDatum(lfirst_oid(lc1));
		values[1] = CStringGetDatum(lfirst(lc2));
		values[1] = DirectFunctionCall1(namein, values[1]);
		values[2] = CStringGetTextDatum(sub_state_name(sub, lfirst_int(lc3)));
		if (sub == NULL || sub->leader_pid == 0)
		{
			int			i;

			for (i = 3; i < 32; i++)
				nulls[i] = true;
		}
		else
		{
			char		reason[PA_REASON_LEN];

			values[3] = Int32GetDatum(sub->leader_pid);
			values[4] = Int32GetDatum(sub->nworkers);
			SpinLockAcquire(&sub->adapt_lock);
			strlcpy(reason, sub->active_reason, PA_REASON_LEN);
			SpinLockRelease(&sub->adapt_lock);
			values[29] = Int32GetDatum(pg_atomic_read_u32(&sub->active_workers));
			values[30] = CStringGetTextDatum(reason);
			values[31] = Int64GetDatum(pg_atomic_read_u64(&sub->active_changes));
			nulls[29] = (DatumGetInt32(values[29]) == 0);	/* not started yet */
			nulls[30] = (reason[0] == '\0');
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
			stat_lag(sub, now, values, nulls);
			stat_error(sub, lfirst_oid(lc1), read_all_stats, values, nulls);
			values[25] = Int64GetDatum(pg_atomic_read_u64(&sub->streams_applied));
			values[26] = Int32GetDatum(sub->leader_pid != 0 ?
									   pg_atomic_read_u32(&sub->streams_open) : 0);
			values[27] = Int64GetDatum(pg_atomic_read_u64(&sub->streams_spilled));
			values[28] = Int64GetDatum(pg_atomic_read_u64(&sub->bytes_spilled));
			nulls[25] = nulls[26] = nulls[27] = nulls[28] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

/*
 * stat_workers' columns 7-14 for an apply worker: the remote transaction it
 * applies (xid, finish LSN, since when), what it waits for: its commit
 * turn, or an earlier transaction's commit (whose xid and finish LSN), its
 * open stream, and whether it is in the active set (adapt.c).  Read
 * without a lock, as hints: each field is written by the
 * worker alone.
 */
static void
stat_worker_txn(PaSub *sub, PaWorker *w, Datum *values, bool *nulls)
{
	TransactionId xid = w->cur_xid;
	uint64		wait;
	int			i;

	TransactionId stream = pg_atomic_read_u32(&w->stream_xid);

	for (i = 7; i < 14; i++)
		nulls[i] = true;
	values[14] = BoolGetDatum(w - sub->workers <
							  (int) pg_atomic_read_u32(&sub->active_workers));
	nulls[14] = false;
	if (TransactionIdIsValid(stream))
	{
		values[13] = TransactionIdGetDatum(stream);
		nulls[13] = false;
	}
	if (!TransactionIdIsValid(xid))
		return;
	pg_read_barrier();			/* cur_xid is written last */
	values[7] = TransactionIdGetDatum(xid);
	nulls[7] = false;
	LSN_OR_NULL(w->cur_lsn, values, nulls, 8);	/* a stream's: at its commit */
	TIME_OR_NULL(w->cur_start, values, nulls, 9);

	wait = pg_atomic_read_u64(&w->wait_seq);
	if (wait != 0)
	{
		PaTxn	   *txn = &sub->txns[wait % PA_MAX_INFLIGHT];

		values[10] = CStringGetTextDatum(w->wait_turn ? "commit turn" : "earlier transaction");
		nulls[10] = false;
		if (pg_atomic_read_u64(&txn->seq) == wait)
		{
			values[11] = TransactionIdGetDatum(txn->remote_xid);
			values[12] = LSNGetDatum(txn->final_lsn);
			nulls[11] = nulls[12] = false;
		}
	}
}

Datum
pa_stat_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	ListCell   *lc1,
			   *lc2;

	oids = stat_begin(fcinfo, &names, NULL);
	forboth(lc1, oids, lc2, names)
	{
		PaSub	   *sub = pa_find_sub(lfirst_oid(lc1));
		Datum		subname = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc2)));
		Datum		values[15];
		bool		nulls[15];
		int			i;

		if (sub == NULL || sub->leader_pid == 0)
			continue;

		memset(nulls, 0, sizeof(nulls));
		for (i = 7; i < 15; i++)
			nulls[i] = true;	/* the leader applies no transaction */
		values[0] = ObjectIdGetDatum(sub->subid);
		values[1] = subname;
		values[2] = CStringGetTextDatum("leader");
		values[3] = Int32GetDatum(0);
		values[4] = Int32GetDatum(sub->leader_pid);
		values[5] = Int64GetDatum(pg_atomic_read_u64(&sub->txns_applied));
		values[6] = CStringGetTextDatum(sub_state_name(sub, false));
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
			stat_worker_txn(sub, w, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

static const char *
replident_name(char replident)
{
	switch (replident)
	{
		case REPLICA_IDENTITY_DEFAULT:
			return "default";
		case REPLICA_IDENTITY_NOTHING:
			return "nothing";
		case REPLICA_IDENTITY_FULL:
			return "full";
		case REPLICA_IDENTITY_INDEX:
			return "index";
		default:
			return "?";
	}
}

/* One row per (attached subscription of this database, relation looked up in) */
Datum
pa_stat_relations(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	ListCell   *lc1,
			   *lc2;

	oids = stat_begin(fcinfo, &names, NULL);
	forboth(lc1, oids, lc2, names)
	{
		Datum		subname = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc2)));
		HASH_SEQ_STATUS status;
		PaRelStats *st;

		hash_seq_init(&status, pa_rel_stats);
		while ((st = hash_seq_search(&status)) != NULL)
		{
			Datum		values[8];
			bool		nulls[8];
			Oid			index = st->index;

			if (st->key.subid != lfirst_oid(lc1))
				continue;
			memset(nulls, 0, sizeof(nulls));
			values[0] = ObjectIdGetDatum(st->key.subid);
			values[1] = subname;
			values[2] = ObjectIdGetDatum(st->key.relid);
			values[3] = CStringGetTextDatum(replident_name(st->replident));
			values[4] = ObjectIdGetDatum(index);
			nulls[4] = !OidIsValid(index);
			values[5] = Int64GetDatum(pg_atomic_read_u64(&st->lookups));
			values[6] = Int64GetDatum(pg_atomic_read_u64(&st->not_found));
			values[7] = Int64GetDatum(pg_atomic_read_u64(&st->seq_scans));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

/* One row per attached subscription of this database: its conflict counters */
Datum
pa_stat_conflicts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *names;
	List	   *oids;
	ListCell   *lc1,
			   *lc2;

	oids = stat_begin(fcinfo, &names, NULL);
	forboth(lc1, oids, lc2, names)
	{
		PaSub	   *sub = pa_find_sub(lfirst_oid(lc1));
		Datum		values[2 + PA_NUM_CONFLICT_TYPES + 1];
		bool		nulls[2 + PA_NUM_CONFLICT_TYPES + 1];
		TimestampTz reset = 0;
		int			i;

		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(lfirst_oid(lc1));
		values[1] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc2)));
		for (i = 0; i < PA_NUM_CONFLICT_TYPES; i++)
			values[2 + i] = Int64GetDatum(sub ? pg_atomic_read_u64(&sub->conflicts[i]) : 0);
		if (sub != NULL)
			reset = (TimestampTz) pg_atomic_read_u64(&sub->conflicts_reset);
		values[2 + PA_NUM_CONFLICT_TYPES] = TimestampTzGetDatum(reset);
		nulls[2 + PA_NUM_CONFLICT_TYPES] = (reset == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pa_shared->lock);
	return (Datum) 0;
}

/* Set the conflict counters of an attached subscription to zero */
Datum
pa_reset_subscription_stats(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			subid = target_subscription(fcinfo, "reset_subscription_stats",
											&name);
	PaSub	   *sub;
	int			i;

	check_attached(subid, name);
	LWLockAcquire(pa_shared->lock, LW_SHARED);
	sub = pa_find_sub(subid);
	if (sub != NULL)
	{
		for (i = 0; i < PA_NUM_CONFLICT_TYPES; i++)
			pg_atomic_write_u64(&sub->conflicts[i], 0);
		pg_atomic_write_u64(&sub->apply_errors, 0);
		pg_atomic_write_u64(&sub->conflicts_reset,
							(uint64) GetCurrentTimestamp());
	}
	LWLockRelease(pa_shared->lock);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pa_check_preloaded_sql);

/*
 * The install script's first call: the preload, and (while the extension
 * is being created) its schema.
 */
Datum
pa_check_preloaded_sql(PG_FUNCTION_ARGS)
{
	pa_check_preloaded();
	if (creating_extension)
		check_extension_schema(CurrentExtensionObject);
	PG_RETURN_VOID();
}
