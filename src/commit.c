/*-------------------------------------------------------------------------
 *
 * commit.c
 *	  Commit order and progress: the commit watermark, the commit-order
 *	  locks, and the hand-over of the subscription's replication origin.
 *
 * Owns: PaSub->committed_seq (the watermark: seq of the last transaction
 * committed in order) and the advisory locks
 * (MyDatabaseId, subid, seq, PA_LOCKTAG_COMMIT_ORDER).
 *
 * Invariants kept here:
 *	- commit order (1): a worker commits a group of consecutive
 *	  transactions first..last only once the watermark is first - 1, and
 *	  advances it to last only after its commit;
 *	- exactly once (2): the origin's LSN advances inside the same local
 *	  commit as the transaction's rows.  PG15 lets one process at a time own
 *	  an origin session, so the worker whose turn has come sets the session
 *	  up, sets replorigin_session_origin_lsn/_timestamp, commits, and resets
 *	  it before it advances the watermark; the next worker can only set it
 *	  up after that;
 *	- every wait for another transaction's commit is a heavyweight-lock
 *	  wait (4): the worker applying seq holds the lock of seq in exclusive
 *	  mode from the moment it starts the transaction until after it
 *	  commits; a waiter takes it in share mode.  A waiter whose target has
 *	  not started yet waits on the lock of whatever its target's worker is
 *	  applying, so a cycle through rows that an earlier transaction holds
 *	  is always visible to the deadlock detector.  Only the instant between
 *	  two transactions of a worker, when it holds no lock at all, is
 *	  bridged by a condition variable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_subscription.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pa_commit.h"
#include "pa_queue.h"
#include "pgstat.h"
#include "storage/lock.h"

static PaSub *my_sub = NULL;
static PaWorker *my_worker = NULL;
static RepOriginId my_origin = InvalidRepOriginId;
static pid_t my_leader = 0;

void
pa_commit_init(PaSub *sub, PaWorker *me, RepOriginId originid,
			   pid_t leader_pid)
{
	my_sub = sub;
	my_worker = me;
	my_origin = originid;
	my_leader = leader_pid;
}

/*
 * Say in pg_stat_activity what the worker does: the remote transaction it
 * applies (PaWorker.cur_xid, cur_lsn) and, while it waits, the commit it
 * waits for (wait_seq, wait_turn); idle when it applies none.
 */
void
pa_report_activity(void)
{
	char		buf[256];
	uint64		wait = pg_atomic_read_u64(&my_worker->wait_seq);

	if (!TransactionIdIsValid(my_worker->cur_xid))
	{
		/* "" rather than NULL, which would keep the last line */
		pgstat_report_activity(STATE_IDLE, "");
		return;
	}
	if (XLogRecPtrIsInvalid(my_worker->cur_lsn))
	{
		/* a streamed transaction, applied while it streams */
		if (wait == 0)
			snprintf(buf, sizeof(buf), "applying streamed transaction %u, in progress on the publisher",
					 my_worker->cur_xid);
		else
			snprintf(buf, sizeof(buf), "streamed transaction %u, in progress on the publisher: waiting for an earlier transaction to commit",
					 my_worker->cur_xid);
	}
	else if (wait == 0)
		snprintf(buf, sizeof(buf), "applying remote transaction %u finished at %X/%X",
				 my_worker->cur_xid, LSN_FORMAT_ARGS(my_worker->cur_lsn));
	else
	{
		PaTxn	   *txn = &my_sub->txns[wait % PA_MAX_INFLIGHT];
		TransactionId xid = txn->remote_xid;
		XLogRecPtr	lsn = txn->final_lsn;

		if (pg_atomic_read_u64(&txn->seq) != wait)
			xid = InvalidTransactionId; /* done and reused: nothing to name */
		if (my_worker->wait_turn)
			snprintf(buf, sizeof(buf), "remote transaction %u finished at %X/%X: waiting for its commit turn",
					 my_worker->cur_xid, LSN_FORMAT_ARGS(my_worker->cur_lsn));
		else if (TransactionIdIsValid(xid))
			snprintf(buf, sizeof(buf), "remote transaction %u finished at %X/%X: waiting for remote transaction %u finished at %X/%X to commit",
					 my_worker->cur_xid, LSN_FORMAT_ARGS(my_worker->cur_lsn),
					 xid, LSN_FORMAT_ARGS(lsn));
		else
			snprintf(buf, sizeof(buf), "remote transaction %u finished at %X/%X: waiting for an earlier transaction to commit",
					 my_worker->cur_xid, LSN_FORMAT_ARGS(my_worker->cur_lsn));
	}
	pgstat_report_activity(STATE_RUNNING, buf);
}

static inline void
set_tag(LOCKTAG *tag, uint64 seq)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, my_sub->subid, (uint32) seq,
						 PA_LOCKTAG_COMMIT_ORDER);
}

static inline void
set_stream_tag(LOCKTAG *tag, int worker)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, my_sub->subid, (uint32) worker,
						 PA_LOCKTAG_STREAM);
}

/*
 * The stream lock: held by a worker while a streamed transaction is open in
 * it, before it has a place in commit order and so a commit-order lock.  A
 * transaction that waits for the stream's commit waits on it, so that a
 * cycle through rows the stream holds is visible to the deadlock detector.
 */
void
pa_stream_lock_acquire(void)
{
	LOCKTAG		tag;

	set_stream_tag(&tag, my_worker - my_sub->workers);
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
}

void
pa_stream_lock_release(void)
{
	LOCKTAG		tag;

	set_stream_tag(&tag, my_worker - my_sub->workers);
	LockRelease(&tag, ExclusiveLock, true);
}

/* The worker starts applying txn: take its commit lock and say so */
void
pa_commit_start(PaTxn *txn)
{
	LOCKTAG		tag;

	set_tag(&tag, pg_atomic_read_u64(&txn->seq));
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
	pg_atomic_write_u32(&txn->lock_held, 1);
	ConditionVariableBroadcast(&my_sub->cv);
}

static void
wait_on_lock(uint64 seq)
{
	LOCKTAG		tag;

	set_tag(&tag, seq);
	(void) LockAcquire(&tag, ShareLock, true, false);
	LockRelease(&tag, ShareLock, true);
}

/* Has transaction seq committed (the watermark reached it)? */
bool
pa_is_committed(uint64 seq)
{
	return pg_atomic_read_u64(&my_sub->committed_seq) >= seq;
}

/*
 * Wait until transaction seq has committed (the watermark reached it); turn:
 * it is the one just before ours, whose commit is our commit turn.  Returns
 * true if we had to wait.  While waiting, stat_workers and pg_stat_activity
 * say for what.
 */
static bool
wait_for_commit(uint64 seq, bool turn)
{
	bool		waited = false;

	for (;;)
	{
		PaTxn	   *txn;
		uint64		cur;
		bool		ours;

		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_read_u64(&my_sub->committed_seq) >= seq)
			break;
		if (!waited && my_worker != NULL)
		{
			my_worker->wait_turn = turn;
			pg_atomic_write_u64(&my_worker->wait_seq, seq);
			pa_report_activity();
		}
		waited = true;

		txn = &my_sub->txns[seq % PA_MAX_INFLIGHT];
		ours = (pg_atomic_read_u64(&txn->seq) == seq);
		pg_read_barrier();		/* seq is published after worker */

		/*
		 * A lock wait resets our latch, which would swallow a condition
		 * variable wake-up: leave the condition variable's list first.
		 */
		if (ours && pg_atomic_read_u32(&txn->lock_held))
		{
			ConditionVariableCancelSleep();
			wait_on_lock(seq);
			continue;
		}
		/* its worker still applies it as a stream: wait on its stream lock */
		if (ours && txn->worker != my_worker - my_sub->workers &&
			pg_atomic_read_u32(&my_sub->workers[txn->worker].stream_xid) !=
			InvalidTransactionId)
		{
			LOCKTAG		tag;

			ConditionVariableCancelSleep();
			set_stream_tag(&tag, txn->worker);
			(void) LockAcquire(&tag, ShareLock, true, false);
			LockRelease(&tag, ShareLock, true);
			continue;
		}
		cur = ours ?
			pg_atomic_read_u64(&my_sub->workers[txn->worker].current_seq) : 0;
		if (cur != 0 && cur < seq)
		{
			ConditionVariableCancelSleep();
			wait_on_lock(cur);	/* its worker is busy with an earlier one */
			continue;
		}

		/*
		 * The first call only registers us; the loop then checks again.  The
		 * sleep is bounded so that we also notice a leader that is gone
		 * (it stops its workers when it exits, but a worker never relies on
		 * that alone: DESIGN.md invariant 7).
		 */
		(void) ConditionVariableTimedSleep(&my_sub->cv, 1000, PG_WAIT_EXTENSION);
		if (my_sub->leader_pid != my_leader)
			proc_exit(0);
	}
	ConditionVariableCancelSleep();
	if (waited && my_worker != NULL)
	{
		pg_atomic_write_u64(&my_worker->wait_seq, 0);
		pa_report_activity();
	}
	return waited;
}

bool
pa_wait_for_commit(uint64 seq)
{
	return wait_for_commit(seq, false);
}

/*
 * Commit the open local transaction (if any), which holds the consecutive
 * transactions first..last, in order: wait until first - 1 has committed,
 * commit with the origin advanced to the end of last, then advance the
 * watermark and release the commit-order locks.  Returns the local commit's
 * end LSN.
 */
XLogRecPtr
pa_commit_group(uint64 first, uint64 last, const PaMsgCommit *commit)
{
	XLogRecPtr	local_end = InvalidXLogRecPtr;
	uint64		seq;

	if (first > 1)
		(void) wait_for_commit(first - 1, true);

	if (IsTransactionState())
	{
		replorigin_session_setup(my_origin);
		replorigin_session_origin_lsn = commit->end_lsn;
		replorigin_session_origin_timestamp = commit->committime;
		CommitTransactionCommand();
		replorigin_session_reset();
		replorigin_session_origin_lsn = InvalidXLogRecPtr;
		replorigin_session_origin_timestamp = 0;
		local_end = XactLastCommitEnd;
		pgstat_report_stat(false);
	}

	for (seq = first; seq <= last; seq++)
		my_sub->txns[seq % PA_MAX_INFLIGHT].local_end = local_end;
	pg_atomic_write_u64(&my_sub->last_commit_time, (uint64) commit->committime);
	if (my_sub->has_error)		/* a hint; pa_sub_clear_error() checks */
		pa_sub_clear_error(my_sub, my_sub->txns[last % PA_MAX_INFLIGHT].final_lsn);
	pg_write_barrier();
	pg_atomic_write_u64(&my_sub->committed_seq, last);

	for (seq = first; seq <= last; seq++)
	{
		LOCKTAG		tag;

		set_tag(&tag, seq);
		pg_atomic_write_u32(&my_sub->txns[seq % PA_MAX_INFLIGHT].lock_held, 0);
		LockRelease(&tag, ExclusiveLock, true);
	}
	ConditionVariableBroadcast(&my_sub->cv);
	return local_end;
}

/*
 * ALTER SUBSCRIPTION ... SKIP: the skipped transaction's local commit clears
 * subskiplsn, in the same commit that advances the origin past it, as the
 * built-in worker does.  Runs inside the transaction the caller commits.
 */
void
pa_clear_skip_lsn(Oid subid, XLogRecPtr finish_lsn)
{
	Relation	rel;
	HeapTuple	tup;
	Form_pg_subscription form;

	PushActiveSnapshot(GetTransactionSnapshot());
	LockSharedObject(SubscriptionRelationId, subid, 0, AccessShareLock);
	rel = table_open(SubscriptionRelationId, RowExclusiveLock);
	tup = SearchSysCacheCopy1(SUBSCRIPTIONOID, ObjectIdGetDatum(subid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for subscription %u", subid);
	form = (Form_pg_subscription) GETSTRUCT(tup);
	if (form->subskiplsn == finish_lsn)
	{
		Datum		values[Natts_pg_subscription];
		bool		nulls[Natts_pg_subscription];
		bool		replaces[Natts_pg_subscription];

		memset(values, 0, sizeof(values));
		memset(nulls, false, sizeof(nulls));
		memset(replaces, false, sizeof(replaces));
		values[Anum_pg_subscription_subskiplsn - 1] = LSNGetDatum(InvalidXLogRecPtr);
		replaces[Anum_pg_subscription_subskiplsn - 1] = true;
		tup = heap_modify_tuple(tup, RelationGetDescr(rel), values, nulls, replaces);
		CatalogTupleUpdate(rel, &tup->t_self, tup);
	}
	heap_freetuple(tup);
	table_close(rel, NoLock);
	PopActiveSnapshot();
}
