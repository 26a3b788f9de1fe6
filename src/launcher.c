/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The static background worker that starts a leader for every attached
 *	  subscription, in whatever database it lives.
 *
 * Owns: the assignment of PaSub slots to attached subscriptions and the
 * lifetime of leaders (start, restart after parallel_apply.retry_interval).
 *
 * A subscription is attached while a replication origin named
 * "parallel_apply_attached_<subid>" exists.  pg_replication_origin and
 * pg_subscription are shared catalogs, so the launcher, connected to
 * parallel_apply.database, sees every database's attachments, and the marker
 * is created and dropped transactionally by attach/detach.  The launcher runs
 * at server start and after every crash restart (the postmaster restarts
 * it), so attachments survive both with no further configuration.
 *
 * A paused subscription (parallel_apply.pause()) also has a marker,
 * "parallel_apply_paused_<subid>", with the same transactional properties.
 *
 * The launcher never starts a leader for a subscription that is enabled
 * (the built-in apply worker owns it then), paused, without a replication
 * slot or with two_phase on (it says so once, and waits for the catalog to
 * change: ALTER SUBSCRIPTION of an attached subscription wakes it), nor
 * while attach/detach/pause/DROP is stopping it, nor while a previous leader
 * of the slot is still exiting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_subscription.h"
#include "miscadmin.h"
#include "pa_lookup.h"
#include "parallel_apply.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
	bool		started_once;
} LauncherSlot;

typedef struct AttachedSub
{
	Oid			subid;
	Oid			dbid;
	Oid			owner;
	NameData	name;
	bool		enabled;
	bool		paused;
	bool		has_slot;
	bool		two_phase;
} AttachedSub;

static LauncherSlot *lslots;

/* subscriptions the launcher said it cannot start, until that changes */
static List *reported_unstartable = NIL;

char *
pa_attach_marker_name(Oid subid)
{
	return psprintf(PA_ATTACH_MARKER_FMT, subid);
}

char *
pa_pause_marker_name(Oid subid)
{
	return psprintf(PA_PAUSE_MARKER_FMT, subid);
}

static bool
marker_exists(char *name)
{
	bool		result;

	result = (replorigin_by_name(name, true) != InvalidRepOriginId);
	pfree(name);
	return result;
}

/* Caller must be in a transaction */
bool
pa_subscription_is_attached(Oid subid)
{
	return marker_exists(pa_attach_marker_name(subid));
}

/* Caller must be in a transaction */
bool
pa_subscription_is_paused(Oid subid)
{
	return marker_exists(pa_pause_marker_name(subid));
}

void
pa_launcher_register(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "parallel_apply");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pa_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "parallel_apply launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "parallel_apply launcher");
	RegisterBackgroundWorker(&bgw);
}

/*
 * Read every attached subscription from the shared catalogs.  attach and
 * detach wake us from their commit callback, before their catalog cache
 * invalidations are sent, so both catalogs are read with a fresh snapshot
 * rather than through the caches.
 */
static List *
scan_attached(void)
{
	List	   *result = NIL;
	List	   *markers = NIL;
	List	   *paused = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	rel = table_open(ReplicationOriginRelationId, AccessShareLock);
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_replication_origin_roname,
									 RelationGetDescr(rel), &isnull);
		Oid			subid;
		char	   *name;

		if (isnull)
			continue;
		name = TextDatumGetCString(d);
		if (sscanf(name, PA_ATTACH_MARKER_FMT, &subid) == 1)
			markers = lappend_oid(markers, subid);
		else if (sscanf(name, PA_PAUSE_MARKER_FMT, &subid) == 1)
			paused = lappend_oid(paused, subid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	rel = table_open(SubscriptionRelationId, AccessShareLock);
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_subscription form = (Form_pg_subscription) GETSTRUCT(tup);

		if (list_member_oid(markers, form->oid))
		{
			AttachedSub *a = palloc(sizeof(AttachedSub));
			bool		isnull;

			a->subid = form->oid;
			a->dbid = form->subdbid;
			a->owner = form->subowner;
			a->name = form->subname;
			a->enabled = form->subenabled;
			a->paused = list_member_oid(paused, form->oid);
			(void) heap_getattr(tup, Anum_pg_subscription_subslotname,
								RelationGetDescr(rel), &isnull);
			a->has_slot = !isnull;
			a->two_phase = (form->subtwophasestate != LOGICALREP_TWOPHASE_STATE_DISABLED);
			result = lappend(result, a);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	UnregisterSnapshot(snap);
	return result;
}

static void
start_leader(int slotno, AttachedSub *a)
{
	BackgroundWorker bgw;
	PaWorkerArgs args;
	PaSub	   *sub = &pa_shared->subs[slotno];
	MemoryContext old;
	bool		ok;

	memset(&bgw, 0, sizeof(bgw));
	memset(&args, 0, sizeof(args));
	args.subid = a->subid;
	args.dbid = a->dbid;
	args.owner = a->owner;
	args.slot = slotno;
	args.worker = -1;

	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "parallel_apply");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pa_leader_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN,
			 "parallel_apply leader for subscription %u", a->subid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "parallel_apply leader");
	bgw.bgw_main_arg = Int32GetDatum(slotno);
	bgw.bgw_notify_pid = MyProcPid;
	memcpy(bgw.bgw_extra, &args, sizeof(args));

	/* a stop request waits for it too (pa_sub_has_processes) */
	pg_atomic_write_u64(&sub->leader_registered, (uint64) GetCurrentTimestamp());
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&bgw, &lslots[slotno].handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		pg_atomic_write_u64(&sub->leader_registered, 0);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("out of background worker slots"),
				 errdetail("parallel_apply could not start the leader for subscription %u.", a->subid),
				 errhint("You might need to increase max_worker_processes.")));
		lslots[slotno].handle = NULL;
		lslots[slotno].next_start =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pa_retry_interval_ms);
		return;
	}
	if (lslots[slotno].started_once)
		pg_atomic_fetch_add_u64(&sub->restarts, 1);
	lslots[slotno].started_once = true;
}

/* Notice leaders that exited; their restart waits retry_interval */
static void
reap_leaders(TimestampTz now)
{
	int			i;

	for (i = 0; i < pa_shared->nsubs; i++)
	{
		pid_t		pid;

		if (lslots[i].handle &&
			GetBackgroundWorkerPid(lslots[i].handle, &pid) == BGWH_STOPPED)
		{
			pfree(lslots[i].handle);
			lslots[i].handle = NULL;
			/* if it never ran */
			pg_atomic_write_u64(&pa_shared->subs[i].leader_registered, 0);
			lslots[i].next_start =
				TimestampTzPlusMilliseconds(now, pa_retry_interval_ms);
			if (pa_shared->subs[i].restart_now)
			{
				/* a serial retry of the window a worker failed in */
				pa_shared->subs[i].restart_now = false;
				lslots[i].next_start = now;
			}
		}
	}
}

/* Release the slots of subscriptions no longer attached.  Caller holds the lock. */
static void
release_slots(List *attached)
{
	int			i;

	for (i = 0; i < pa_shared->nsubs; i++)
	{
		PaSub	   *sub = &pa_shared->subs[i];
		bool		still = false;
		ListCell   *lc;

		if (!sub->in_use)
			continue;
		foreach(lc, attached)
		{
			if (((AttachedSub *) lfirst(lc))->subid == sub->subid)
				still = true;
		}
		if (!still && lslots[i].handle == NULL && !pa_sub_has_processes(sub))
		{
			pa_rel_stats_forget(sub->subid);
			sub->in_use = false;
			sub->stop_requested = false;
		}
	}
}

/*
 * The slot of an attached subscription, assigning a free one if it has
 * none; NULL (with a warning) if all are in use.  Caller holds the lock.
 */
static PaSub *
slot_for(AttachedSub *a)
{
	PaSub	   *sub = pa_find_sub(a->subid);
	int			i;

	if (sub != NULL)
		return sub;
	for (i = 0; i < pa_shared->nsubs; i++)
	{
		if (!pa_shared->subs[i].in_use &&
			lslots[i].handle == NULL &&
			!pa_sub_has_processes(&pa_shared->subs[i]))
			break;
	}
	if (i == pa_shared->nsubs)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("cannot start parallel_apply for subscription %u: all %d slots are in use",
						a->subid, pa_shared->nsubs),
				 errhint("Increase parallel_apply.max_subscriptions.")));
		return NULL;
	}
	sub = &pa_shared->subs[i];
	sub->in_use = true;
	sub->subid = a->subid;
	pa_rel_stats_forget(a->subid);	/* a new attachment starts afresh */
	sub->stop_requested = false;
	sub->state = PA_SUB_STOPPED;
	pa_sub_reset(sub);
	lslots[i].next_start = 0;
	lslots[i].started_once = false;
	return sub;
}

/*
 * Can the engine run the subscription as it is?  If not, say why once, until
 * the subscription changes; ALTER SUBSCRIPTION of an attached subscription
 * wakes the launcher (sqlapi.c), so it starts as soon as it can.
 */
static bool
startable(AttachedSub *a)
{
	bool		reported = list_member_oid(reported_unstartable, a->subid);
	MemoryContext old;

	if (a->has_slot && !a->two_phase)
	{
		if (reported)
			reported_unstartable = list_delete_oid(reported_unstartable, a->subid);
		return true;
	}
	if (reported)
		return false;

	if (!a->has_slot)
		ereport(LOG,
				(errmsg("parallel_apply cannot start subscription \"%s\": it has no replication slot",
						NameStr(a->name)),
				 errhint("Set one with ALTER SUBSCRIPTION ... SET (slot_name = ...), or detach the subscription with parallel_apply.detach(), which leaves it disabled.")));
	else
		ereport(LOG,
				(errmsg("parallel_apply cannot start subscription \"%s\": two_phase is enabled",
						NameStr(a->name)),
				 errdetail("parallel_apply does not apply prepared transactions."),
				 errhint("Detach the subscription with parallel_apply.detach().")));
	old = MemoryContextSwitchTo(TopMemoryContext);
	reported_unstartable = lappend_oid(reported_unstartable, a->subid);
	MemoryContextSwitchTo(old);
	return false;
}

/*
 * Start the leaders that should run and may.  Caller holds the lock.
 * Returns ms to wait before the next pass.
 */
static long
start_leaders(List *attached, TimestampTz now)
{
	long		wait = pa_launcher_naptime_ms;
	ListCell   *lc;
	List	   *still = NIL;

	/* forget what was said of subscriptions no longer attached */
	foreach(lc, attached)
	{
		AttachedSub *a = lfirst(lc);

		if (list_member_oid(reported_unstartable, a->subid))
			still = lappend_oid(still, a->subid);
	}
	if (list_length(still) != list_length(reported_unstartable))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		list_free(reported_unstartable);
		reported_unstartable = list_copy(still);
		MemoryContextSwitchTo(old);
	}

	foreach(lc, attached)
	{
		AttachedSub *a = lfirst(lc);
		PaSub	   *sub;
		int			slotno;

		if (a->enabled)
			continue;			/* the built-in apply worker owns it */
		if (a->paused || !startable(a))
			continue;
		if ((sub = slot_for(a)) == NULL)
			continue;
		slotno = sub - pa_shared->subs;

		if (pa_stop_pending(a->subid) || lslots[slotno].handle != NULL)
			continue;
		if (pa_sub_has_processes(sub))
		{
			wait = Min(wait, 100);	/* a previous leader is exiting */
			continue;
		}
		if (now < lslots[slotno].next_start)
		{
			long		ms = (lslots[slotno].next_start - now) / 1000 + 1;

			wait = Min(wait, ms);
			continue;
		}
		start_leader(slotno, a);
	}
	return wait;
}

/*
 * One pass: start what should run, free slots nobody needs.  Returns ms to
 * wait.  attached was read when PaShared->changes was "changes": if a
 * transaction ended a stop request or attached something since, the scan
 * may be stale (a pause committed after it began would not be in it, and
 * its stop request is gone), so nothing is started and the caller scans
 * again at once.
 */
static long
launcher_pass(List *attached, uint32 changes)
{
	TimestampTz now = GetCurrentTimestamp();
	long		wait = 0;

	reap_leaders(now);
	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	if (pa_shared->changes == changes)
	{
		release_slots(attached);
		wait = start_leaders(attached, now);
	}
	LWLockRelease(pa_shared->lock);
	return wait;
}

/* attach() refuses while no launcher runs (sqlapi.c) */
static void
launcher_exit(int code, Datum arg)
{
	LWLockReleaseAll();			/* an error may have left ours held */
	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	pa_shared->launcher_latch = NULL;
	pa_shared->launcher_pid = 0;
	LWLockRelease(pa_shared->lock);
}

static void
connect_error_callback(void *arg)
{
	errcontext("parallel_apply launcher connecting to database \"%s\" named by parallel_apply.database",
			   pa_database);
}

void
pa_launcher_main(Datum main_arg)
{
	MemoryContext passcxt;
	ErrorContextCallback errcallback;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/*
	 * pg_subscription can be read with no database, but the replication
	 * origin catalog cannot (its relcache entry is built from pg_class), so
	 * the launcher connects to parallel_apply.database.  If that fails, the
	 * flag stays set and attach() says what to fix.
	 */
	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	pa_shared->launcher_connecting = true;
	LWLockRelease(pa_shared->lock);
	errcallback.callback = connect_error_callback;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	BackgroundWorkerInitializeConnection(pa_database, NULL, 0);
	error_context_stack = errcallback.previous;

	lslots = MemoryContextAllocZero(TopMemoryContext,
									sizeof(LauncherSlot) * pa_shared->nsubs);
	passcxt = AllocSetContextCreate(TopMemoryContext, "parallel_apply launcher",
									ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(pa_shared->lock, LW_EXCLUSIVE);
	pa_shared->launcher_latch = MyLatch;
	pa_shared->launcher_pid = MyProcPid;
	pa_shared->launcher_connecting = false;
	LWLockRelease(pa_shared->lock);
	before_shmem_exit(launcher_exit, (Datum) 0);

	for (;;)
	{
		List	   *attached;
		long		wait;
		uint32		changes;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(passcxt);
		LWLockAcquire(pa_shared->lock, LW_SHARED);
		changes = pa_shared->changes;
		LWLockRelease(pa_shared->lock);
		StartTransactionCommand();
		old = MemoryContextSwitchTo(passcxt);
		attached = scan_attached();
		MemoryContextSwitchTo(old);
		CommitTransactionCommand();

		old = MemoryContextSwitchTo(passcxt);
		wait = launcher_pass(attached, changes);
		MemoryContextSwitchTo(old);
		pgstat_report_stat(true);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
