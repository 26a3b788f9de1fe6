/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  An apply worker: reads the transactions the leader gave it from its
 *	  dispatch queue, applies them, and commits them in the publisher's
 *	  order.
 *
 * Owns: the worker's process lifetime, reassembly of framed messages from
 * chunks (returning each chunk to the pool as soon as it is copied), and
 * the sequence of a transaction: BEGIN (take its commit-order lock), WAIT
 * (for a predecessor's commit), changes (src/apply.c), COMMIT (src/commit.c),
 * completion report to the leader.
 *
 * Commit groups: when the next transaction in the queue is already there
 * and is the very next one in commit order (the leader gives runs of
 * consecutive transactions to one worker), the worker applies it in the
 * same local transaction instead of committing, up to
 * parallel_apply.group_size transactions.  A transaction to be skipped, or
 * one of the serial window after a failure, is never in a group, and a
 * group that fails to commit is re-applied one transaction at a time before
 * any error is reported (group_commit_failed), so every error names the
 * transaction that raised it.  The group commits once, in
 * order, with the origin advanced to the end of its last transaction, so a
 * reader sees the state after that transaction, which the publisher had;
 * commit and hand-over costs are paid once per group.
 *
 * Streamed transactions applied while they stream: between STREAM_START
 * and STREAM_COMMIT (or the STREAM_ABORT of its top-level xid) the worker
 * applies one streamed transaction, chunk after chunk, in one open local
 * transaction, and receives nothing else.  Each new sub-transaction xid
 * opens a savepoint (an internal sub-transaction), in order of first
 * appearance; STREAM_ABORT of a sub-xid rolls back to its savepoint and
 * releases it and every later one, of an unknown sub-xid is ignored, of the
 * top-level xid rolls back the whole transaction.  While the stream is open
 * the worker holds its stream lock (commit.c), which a transaction that
 * comes after the stream in commit order waits on until the stream has its
 * commit-order lock.  At STREAM_COMMIT it takes the commit-order lock of
 * the place the leader gave it, releases its savepoints and commits in its
 * turn like any other transaction (or, when ALTER SUBSCRIPTION ... SKIP
 * names it, rolls it back and commits only the skip).
 *
 * Invariants kept here:
 *	- the worker runs as the subscription owner with
 *	  session_replication_role = replica and search_path = '';
 *	- it never applies a change before the transactions the leader said it
 *	  depends on have committed (or are in its own open group), and every
 *	  such wait is a heavyweight-lock wait (commit.c);
 *	- any error ends the process: the leader notices, stops the engine, and
 *	  the window is re-applied serially from the origin, so a half-applied
 *	  group is never committed (invariant 4);
 *	- the worker exits by itself when its leader is gone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "libpq/pqformat.h"
#include "catalog/pg_subscription.h"
#include "miscadmin.h"
#include "pa_apply.h"
#include "pa_commit.h"
#include "pa_conflict.h"
#include "pa_protocol.h"
#include "pa_queue.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

static PaWorkerArgs my_args;
static PaSub *my_sub;
static PaWorker *me;
static StringInfoData inbuf;
static char origin_name[NAMEDATALEN];
static char subname[NAMEDATALEN];	/* for messages */
static bool flush_commits = false;	/* subscription asks for durability */
static bool activity_running = false;	/* pg_stat_activity says we apply */

/*
 * The open commit group: consecutive transactions first..last applied in
 * the current local transaction, not committed yet.
 */
static uint64 group_first = 0;
static uint64 group_last = 0;

/*
 * The streamed transaction open in this worker (its top-level xid), and the
 * sub-transaction xids that have a savepoint, in order (an OID list: PG15
 * has no xid list; TransactionId and Oid are both uint32).
 */
static TransactionId stream_xid = InvalidTransactionId;
static List *stream_subxacts = NIL;

/*
 * Runs before PostgreSQL releases our locks at exit (registered after the
 * connection, so before ShutdownPostgres): waiters must not take our
 * commit-order lock, once released, for a commit that did not happen.
 */
static void
worker_before_exit(int code, Datum arg)
{
	uint64		seq = pg_atomic_read_u64(&me->current_seq);
	uint64		s;

	/* every transaction of the open group, not only the current one */
	for (s = (group_first != 0 ? group_first : seq); s != 0 && s <= seq; s++)
	{
		PaTxn	   *txn = &my_sub->txns[s % PA_MAX_INFLIGHT];

		if (pg_atomic_read_u64(&txn->seq) == s)
			pg_atomic_write_u32(&txn->lock_held, 0);
	}
	me->failed_seq = (code != 0) ? seq : 0;
	pg_atomic_write_u64(&me->current_seq, 0);
}

/* Last: free the worker slot and tell whoever waits for it */
static void
worker_detach(int code, Datum arg)
{
	me->state = PA_WORKER_FREE;
	me->latch = NULL;
	pg_write_barrier();
	me->pid = 0;
	ConditionVariableBroadcast(&my_sub->cv);
	pa_wake_launcher();
	{
		Latch	   *leader_latch = my_sub->leader_latch;

		if (leader_latch != NULL)
			SetLatch(leader_latch);
	}
}

static void
check_leader(void)
{
	if (my_sub->leader_pid != my_args.leader_pid)
		proc_exit(0);			/* our leader is gone; so are we */
}

/*
 * Take every chunk already queued for us (without waiting) into inbuf.
 * Returns true if a whole message is there.
 */
static bool
fill_inbuf(void)
{
	for (;;)
	{
		int			avail = inbuf.len - inbuf.cursor;
		PaChunk    *chunk;

		if (avail >= (int) sizeof(uint32))
		{
			uint32		len;

			memcpy(&len, inbuf.data + inbuf.cursor, sizeof(len));
			if (avail >= (int) (sizeof(uint32) + len))
				return true;
		}

		/* need more bytes: compact, then take the next chunk */
		if (avail == 0 && inbuf.maxlen > 1024 * 1024)
		{
			/* do not keep the memory of one huge message for long */
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			pfree(inbuf.data);
			initStringInfo(&inbuf);
			MemoryContextSwitchTo(old);
		}
		else if (inbuf.cursor > 0)
		{
			memmove(inbuf.data, inbuf.data + inbuf.cursor, avail);
			inbuf.len = avail;
			inbuf.cursor = 0;
			inbuf.data[avail] = '\0';
		}
		chunk = pa_chunk_receive(my_sub, my_args.worker);
		if (chunk == NULL)
			return false;
		appendBinaryStringInfo(&inbuf, chunk->data, chunk->len);
		pa_chunk_put(my_sub, chunk);
		pg_atomic_fetch_add_u64(&me->chunks_taken, 1);

		/*
		 * A leader waiting for a stream's worker to take more of its bounded
		 * share of queue memory (dispatch.c) waits for us, whatever the
		 * pool holds.
		 */
		if (TransactionIdIsValid(stream_xid) &&
			pg_atomic_read_u32(&my_sub->leader_waiting))
		{
			Latch	   *leader_latch = my_sub->leader_latch;

			if (leader_latch != NULL)
				SetLatch(leader_latch);
		}
	}
}

/* The kind of the next message and, for BEGIN, its header; no waiting */
static char
peek_message(PaMsgBegin *begin)
{
	char		kind;

	if (!fill_inbuf())
		return 0;
	kind = inbuf.data[inbuf.cursor + sizeof(uint32)];
	if (kind == PA_MSG_BEGIN && begin != NULL)
		memcpy(begin, inbuf.data + inbuf.cursor + sizeof(uint32) + 1,
			   sizeof(PaMsgBegin));
	return kind;
}

/* The next framed message; its bytes stay valid until the next call */
static void
next_message(StringInfo msg)
{
	bool		told_leader = false;

	for (;;)
	{
		if (fill_inbuf())
		{
			uint32		len;

			memcpy(&len, inbuf.data + inbuf.cursor, sizeof(len));
			msg->data = inbuf.data + inbuf.cursor + sizeof(uint32);
			msg->len = len;
			msg->maxlen = -1;
			msg->cursor = 0;
			inbuf.cursor += sizeof(uint32) + len;
			return;
		}

		/* tell the leader to wake us, check once more, then sleep */
		me->state = PA_WORKER_IDLE;
		if (activity_running)
		{
			pa_report_activity();	/* idle: cur_xid is invalid */
			activity_running = false;
		}
		pg_atomic_write_u32(&me->sleeping, 1);
		pg_memory_barrier();
		if (!fill_inbuf())
		{
			Latch	   *leader_latch = my_sub->leader_latch;

			/*
			 * Going idle: let the leader see our completions now, unless it
			 * paces its reads and so wakes by itself within 2 ms (waking it
			 * there makes it read in small bites; docs/benchmarks.md).  A
			 * leader waiting for queue memory is woken in any case: we hold
			 * none of it now.  Once per idle period only: a leader woken
			 * every second by idle workers would never see its own wait
			 * time out.
			 */
			if (leader_latch != NULL && !told_leader &&
				(!pg_atomic_read_u32(&my_sub->leader_pacing) ||
				 pg_atomic_read_u32(&my_sub->leader_waiting)))
			{
				SetLatch(leader_latch);
				told_leader = true;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		pg_atomic_write_u32(&me->sleeping, 0);
		CHECK_FOR_INTERRUPTS();
		check_leader();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * A group of several transactions failed to commit (a deferred trigger or
 * constraint raised, say): the error belongs to one of them, and which one
 * is not known.  Reporting it under any name would let ALTER SUBSCRIPTION
 * ... SKIP drop the wrong transaction, so it is logged as what it is and the
 * worker exits without counting an apply error; the leader re-applies the
 * group one transaction per local transaction (the serial window), where
 * the error, if it happens again, names the transaction that raised it.
 */
static void
group_commit_failed(uint64 n)
{
	ErrorData  *edata;
	XLogRecPtr	first_lsn = my_sub->txns[group_first % PA_MAX_INFLIGHT].final_lsn;
	XLogRecPtr	last_lsn = my_sub->txns[group_last % PA_MAX_INFLIGHT].final_lsn;

	/* outside the transaction's memory, which the abort frees */
	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	FlushErrorState();
	replorigin_session_origin_lsn = InvalidXLogRecPtr;
	replorigin_session_origin_timestamp = 0;
	AbortOutOfAnyTransaction();
	error_context_stack = NULL;
	pa_conflict_abort();		/* the group is applied again */
	me->group_failed = true;
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("parallel_apply worker %d of subscription \"%s\" could not commit a group of %d transactions: %s",
					my_args.worker + 1, subname, (int) n, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("The transactions finished between %X/%X and %X/%X on the publisher; they are re-applied one at a time, so that the error names the transaction that raises it.",
					 LSN_FORMAT_ARGS(first_lsn), LSN_FORMAT_ARGS(last_lsn))));
	proc_exit(1);
}

/* Commit the open group in order and report each of its transactions */
static void
commit_group(const PaMsgCommit *commit)
{
	XLogRecPtr	local_end = InvalidXLogRecPtr;
	uint64		seq;
	uint64		n = group_last - group_first + 1;

	if (n == 1)
	{
		/* an error at commit names the transaction, as PostgreSQL's does */
		pa_errctx.command = LOGICAL_REP_MSG_COMMIT;
		local_end = pa_commit_group(group_first, group_last, commit);
		pa_errctx.command = 0;
	}
	else
	{
		PG_TRY();
		{
			local_end = pa_commit_group(group_first, group_last, commit);
		}
		PG_CATCH();
		{
			group_commit_failed(n);
		}
		PG_END_TRY();
	}
	/* the group's conflicts, now that it committed */
	pa_conflict_commit();
	for (seq = group_first; seq <= group_last; seq++)
		pa_done_send(my_sub, &my_sub->txns[seq % PA_MAX_INFLIGHT]);
	pg_atomic_fetch_add_u64(&me->applied, n);
	pg_atomic_fetch_add_u64(&my_sub->txns_applied, n);
	pg_atomic_write_u64(&me->current_seq, 0);
	me->cur_xid = InvalidTransactionId;
	group_first = group_last = 0;

	/*
	 * Durable apply: commits are asynchronous and flushed in groups, by
	 * whichever worker runs out of work first.  The leader reports as
	 * flushed only what is.
	 */
	if (flush_commits && local_end != InvalidXLogRecPtr && peek_message(NULL) == 0)
		XLogFlush(local_end);
}

/*
 * The most transactions a group may hold: parallel_apply.group_size, but
 * each holds a commit-order lock until the group commits, so all workers'
 * groups together stay within a quarter of the shared lock table.
 */
static uint64
group_limit(void)
{
	int			nworkers = Max(my_sub->nworkers, 1);
	int			cap = max_locks_per_xact * MaxBackends / (4 * nworkers);

	return (uint64) Max(1, Min(pa_group_size, cap));
}

/* The remote transaction being applied */
static PaTxn *cur_txn = NULL;
static bool skipping = false;	/* ALTER SUBSCRIPTION ... SKIP names it */
static bool alone = false;		/* it commits on its own */
static XLogRecPtr finish_lsn = InvalidXLogRecPtr;
static MemoryContext ChangeMessageContext = NULL;

/* PostgreSQL 15's messages around a skipped transaction */
static void
log_skip_start(void)
{
	ereport(LOG,
			(errmsg("logical replication starts skipping transaction at LSN %X/%X",
					LSN_FORMAT_ARGS(finish_lsn))));
}

/* A remote transaction is done in this worker (committed, maybe skipped) */
static void
end_remote_transaction(bool skipped)
{
	if (skipped)
		ereport(LOG,
				(errmsg("done skipping logical replication transaction finished at %X/%X",
						LSN_FORMAT_ARGS(finish_lsn))));
	pa_errctx.remote_xid = InvalidTransactionId;
	pa_errctx.finish_lsn = InvalidXLogRecPtr;
	MemoryContextSwitchTo(TopMemoryContext);
}

/* BEGIN: take the transaction's commit-order lock; it joins the open group */
static void
handle_begin(StringInfo msg)
{
	PaMsgBegin	begin;

	memcpy(&begin, msg->data + 1, sizeof(begin));
	if (TransactionIdIsValid(stream_xid))
		elog(ERROR, "parallel_apply worker received BEGIN inside streamed transaction %u",
			 stream_xid);
	cur_txn = &my_sub->txns[begin.seq % PA_MAX_INFLIGHT];
	Assert(pg_atomic_read_u64(&cur_txn->seq) == begin.seq);
	pa_errctx.remote_xid = begin.remote_xid;
	pa_errctx.finish_lsn = begin.final_lsn;
	pa_apply_commit_time = begin.committime;
	pa_apply_change = 0;
	me->cur_lsn = begin.final_lsn;
	me->cur_start = GetCurrentTimestamp();
	pg_write_barrier();
	me->cur_xid = begin.remote_xid;
	pa_report_activity();
	activity_running = true;

	pg_atomic_write_u64(&me->current_seq, begin.seq);
	pa_commit_start(cur_txn);
	if (group_first == 0)
		group_first = begin.seq;
	group_last = begin.seq;
	pa_apply_predecessor = group_first - 1;
	finish_lsn = begin.final_lsn;
	skipping = begin.skip;
	alone = begin.alone;
	if (skipping)
		log_skip_start();
	me->state = PA_WORKER_APPLYING;
}

/* WAIT: wait for a predecessor's commit, unless it is in our own group */
static void
handle_wait(StringInfo msg)
{
	uint64		dep;

	if (cur_txn == NULL && !TransactionIdIsValid(stream_xid))
		elog(ERROR, "parallel_apply worker received WAIT outside a transaction");
	memcpy(&dep, msg->data + 1, sizeof(dep));
	if (skipping || (group_first != 0 && dep >= group_first))
		return;					/* nothing to apply, or in our own group */
	me->state = PA_WORKER_WAITING;
	if (pa_wait_for_commit(dep))
		pg_atomic_fetch_add_u64(&my_sub->dependency_waits, 1);
	me->state = PA_WORKER_APPLYING;
}

/* CHANGE: one pgoutput message, applied (or, when skipping, dropped) */
static void
handle_change(StringInfo msg)
{
	MemoryContext old;

	if (cur_txn == NULL && !TransactionIdIsValid(stream_xid))
		elog(ERROR, "parallel_apply worker received a change outside a transaction");
	if (skipping && msg->data[1] != LOGICAL_REP_MSG_RELATION)
		return;
	old = MemoryContextSwitchTo(ChangeMessageContext);
	pa_apply_message(msg);
	MemoryContextSwitchTo(old);
	MemoryContextReset(ChangeMessageContext);
}

/*
 * COMMIT: go on in the same local transaction if the next one in commit
 * order is already here (and is not to be skipped); otherwise commit the
 * group.  A skipped transaction clears subskiplsn and commits on its own.
 */
static void
handle_commit(StringInfo msg)
{
	PaMsgCommit commit;
	PaMsgBegin	next;
	bool		was_skipping = skipping;

	if (cur_txn == NULL)
		elog(ERROR, "parallel_apply worker received COMMIT outside a transaction");
	memcpy(&commit, msg->data + 1, sizeof(commit));
	if (skipping)
	{
		if (!IsTransactionState())
			StartTransactionCommand();
		pa_clear_skip_lsn(my_args.subid, finish_lsn);
	}
	skipping = false;
	cur_txn = NULL;

	if (was_skipping || alone ||
		group_last - group_first + 1 >= group_limit() ||
		peek_message(&next) != PA_MSG_BEGIN ||
		next.seq != group_last + 1 || next.skip || next.alone)
		commit_group(&commit);
	end_remote_transaction(was_skipping);
}

/* STREAM_START: a streamed transaction opens here; nothing else comes */
static void
handle_stream_start(StringInfo msg)
{
	PaMsgStream st;

	memcpy(&st, msg->data + 1, sizeof(st));
	if (TransactionIdIsValid(stream_xid) || cur_txn != NULL || group_first != 0)
		elog(ERROR, "parallel_apply worker received STREAM START for transaction %u inside another transaction",
			 st.remote_xid);
	pa_stream_lock_acquire();
	stream_xid = st.remote_xid;
	pg_atomic_write_u32(&me->stream_xid, stream_xid);
	pa_errctx.remote_xid = st.remote_xid;
	pa_errctx.finish_lsn = InvalidXLogRecPtr;	/* known at its commit */
	pa_apply_commit_time = 0;
	pa_apply_change = 0;
	pa_apply_predecessor = st.pred;
	skipping = false;
	alone = false;
	me->cur_lsn = InvalidXLogRecPtr;
	me->cur_start = GetCurrentTimestamp();
	pg_write_barrier();
	me->cur_xid = st.remote_xid;
	pa_report_activity();
	activity_running = true;
	me->state = PA_WORKER_APPLYING;
}

/* The stream is over in this worker (committed or rolled back) */
static void
end_stream(void)
{
	list_free(stream_subxacts);
	stream_subxacts = NIL;
	stream_xid = InvalidTransactionId;
	pg_atomic_write_u32(&me->stream_xid, InvalidTransactionId);
	pa_stream_lock_release();
}

static void
check_stream(const char *what)
{
	if (!TransactionIdIsValid(stream_xid))
		elog(ERROR, "parallel_apply worker received %s outside a streamed transaction",
			 what);
}

/* SUBXACT: the changes that follow belong to subxid; a new one: savepoint */
static void
handle_subxact(StringInfo msg)
{
	TransactionId subxid;
	MemoryContext old = CurrentMemoryContext;
	bool		known = false;

	memcpy(&subxid, msg->data + 1, sizeof(subxid));
	check_stream("SUBXACT");
	if (subxid == stream_xid)
		return;

	/*
	 * A sub-transaction seen for the first time usually has a newer xid than
	 * all seen so far (xids are assigned in order, parents first), so a
	 * savepoint per row costs no scan of the list.
	 */
	if (stream_subxacts != NIL &&
		!TransactionIdFollows(subxid, (TransactionId) llast_oid(stream_subxacts)))
		known = list_member_oid(stream_subxacts, (Oid) subxid);
	if (known)
		return;

	if (!IsTransactionState())
		StartTransactionCommand();
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(TopMemoryContext);
	stream_subxacts = lappend_oid(stream_subxacts, (Oid) subxid);
	MemoryContextSwitchTo(old);
}

/* PRED: the latest transaction dispatched before the changes that follow */
static void
handle_pred(StringInfo msg)
{
	check_stream("PRED");
	memcpy(&pa_apply_predecessor, msg->data + 1, sizeof(pa_apply_predecessor));
}

/*
 * STREAM_ABORT: of the top-level xid, roll the whole transaction back; of a
 * sub-transaction, roll back to its savepoint and release it and every later
 * one; of a sub-transaction with no savepoint here (none of its changes
 * reached us, or a PostgreSQL 18 publisher aborting what it already
 * truncated), nothing.
 */
static void
handle_stream_abort(StringInfo msg)
{
	TransactionId subxid;
	MemoryContext old = CurrentMemoryContext;
	int			i;

	memcpy(&subxid, msg->data + 1, sizeof(subxid));
	check_stream("STREAM ABORT");
	if (subxid == stream_xid)
	{
		AbortOutOfAnyTransaction();
		pa_conflict_abort();
		end_stream();
		me->cur_xid = InvalidTransactionId;
		pa_errctx.remote_xid = InvalidTransactionId;
		pa_apply_predecessor = 0;
		MemoryContextSwitchTo(TopMemoryContext);
		return;
	}
	for (i = list_length(stream_subxacts) - 1; i >= 0; i--)
	{
		if ((TransactionId) list_nth_oid(stream_subxacts, i) == subxid)
			break;
	}
	if (i < 0)
		return;
	while (list_length(stream_subxacts) > i)
	{
		RollbackAndReleaseCurrentSubTransaction();
		stream_subxacts = list_delete_last(stream_subxacts);
	}
	MemoryContextSwitchTo(old);
}

/*
 * STREAM_COMMIT: the stream's place in commit order is known; take that
 * place's commit-order lock (then waiters no longer need the stream lock),
 * fold the savepoints into the transaction and commit it in its turn.
 */
static void
handle_stream_commit(StringInfo msg)
{
	PaMsgBegin	begin;
	PaMsgCommit commit;

	memcpy(&begin, msg->data + 1, sizeof(begin));
	memcpy(&commit, msg->data + 1 + sizeof(begin), sizeof(commit));
	check_stream("STREAM COMMIT");
	if (begin.remote_xid != stream_xid)
		elog(ERROR, "parallel_apply worker received STREAM COMMIT of transaction %u inside streamed transaction %u",
			 begin.remote_xid, stream_xid);

	cur_txn = &my_sub->txns[begin.seq % PA_MAX_INFLIGHT];
	Assert(pg_atomic_read_u64(&cur_txn->seq) == begin.seq);
	pa_errctx.finish_lsn = begin.final_lsn;
	pa_apply_commit_time = begin.committime;
	me->cur_lsn = begin.final_lsn;
	pg_atomic_write_u64(&me->current_seq, begin.seq);
	pa_commit_start(cur_txn);
	while (stream_subxacts != NIL)
	{
		MemoryContext old = CurrentMemoryContext;

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		stream_subxacts = list_delete_last(stream_subxacts);
	}
	end_stream();

	group_first = group_last = begin.seq;
	pa_apply_predecessor = begin.seq - 1;
	finish_lsn = begin.final_lsn;
	if (begin.skip)
	{
		log_skip_start();
		AbortOutOfAnyTransaction();
		pa_conflict_abort();
		StartTransactionCommand();
		pa_clear_skip_lsn(my_args.subid, finish_lsn);
	}
	cur_txn = NULL;
	commit_group(&commit);
	end_remote_transaction(begin.skip);
}

static void
worker_loop(void)
{
	ErrorContextCallback errcallback;

	ChangeMessageContext = AllocSetContextCreate(TopMemoryContext,
												 "parallel_apply worker message",
												 ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&inbuf);

	errcallback.callback = pa_apply_error_callback;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	for (;;)
	{
		StringInfoData msg;
		char		kind;

		CHECK_FOR_INTERRUPTS();
		next_message(&msg);
		kind = pq_getmsgbyte(&msg);

		switch (kind)
		{
			case PA_MSG_BEGIN:
				handle_begin(&msg);
				break;
			case PA_MSG_WAIT:
				handle_wait(&msg);
				break;
			case PA_MSG_CHANGE:
				handle_change(&msg);
				break;
			case PA_MSG_COMMIT:
				handle_commit(&msg);
				break;
			case PA_MSG_STREAM_START:
				handle_stream_start(&msg);
				break;
			case PA_MSG_SUBXACT:
				handle_subxact(&msg);
				break;
			case PA_MSG_PRED:
				handle_pred(&msg);
				break;
			case PA_MSG_STREAM_ABORT:
				handle_stream_abort(&msg);
				break;
			case PA_MSG_STREAM_COMMIT:
				handle_stream_commit(&msg);
				break;
			default:
				elog(ERROR, "parallel_apply worker received unknown message kind %d", kind);
		}
	}
}

void
pa_worker_main(Datum main_arg)
{
	Subscription *mysub;
	RepOriginId originid;

	memcpy(&my_args, MyBgworkerEntry->bgw_extra, sizeof(my_args));
	my_sub = &pa_shared->subs[my_args.slot];
	me = &my_sub->workers[my_args.worker];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (me->pid != 0)
		elog(ERROR, "parallel_apply worker slot %d of subscription %u is already in use",
			 my_args.worker + 1, my_args.subid);
	me->latch = MyLatch;
	me->failed_seq = 0;
	me->group_failed = false;
	me->conflict_failed = false;
	me->cur_xid = InvalidTransactionId;
	pg_atomic_write_u64(&me->wait_seq, 0);
	pg_atomic_write_u32(&me->stream_xid, InvalidTransactionId);
	me->state = PA_WORKER_IDLE;
	pg_atomic_write_u64(&me->current_seq, 0);
	pg_write_barrier();
	me->pid = MyProcPid;
	on_shmem_exit(worker_detach, (Datum) 0);
	check_leader();

	BackgroundWorkerInitializeConnectionByOid(my_args.dbid, my_args.owner, 0);
	before_shmem_exit(worker_before_exit, (Datum) 0);

	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * A role or database default of serializable would make concurrent
	 * workers fail against each other, which one built-in worker never does.
	 */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	mysub = GetSubscription(my_args.subid, true);
	if (mysub == NULL)
		proc_exit(0);
	strlcpy(subname, mysub->name, sizeof(subname));
	/* commit asynchronously; flush in groups if the subscription asks */
	flush_commits = (pa_synccommit_level(mysub->synccommit) !=
					 SYNCHRONOUS_COMMIT_OFF);
	SetConfigOption("synchronous_commit", "off", PGC_BACKEND, PGC_S_OVERRIDE);
	snprintf(origin_name, sizeof(origin_name), "pg_%u", my_args.subid);
	originid = replorigin_by_name(origin_name, false);
	CommitTransactionCommand();

	pa_commit_init(my_sub, me, originid, my_args.leader_pid);
	pa_apply_subid = my_args.subid;
	pa_apply_init();
	pa_conflict_init(my_sub, me, subname);
	pa_errctx.origin_name = origin_name;
	pa_report_activity();		/* idle */

	/* tag our WAL with the subscription's origin, as the built-in worker does */
	replorigin_session_origin = originid;

	/*
	 * Count every apply error in pg_stat_subscription_stats, as the built-in
	 * worker does (PostgreSQL 15 start_apply()): report the error, abort,
	 * then send the statistics outside the failed transaction, and write
	 * the history of the conflicts met (the one that raised the error
	 * included) in a transaction of their own.
	 */
	PG_TRY();
	{
		worker_loop();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		EmitErrorReport();
		error_context_stack = NULL;
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();

		/*
		 * A conflict met while streaming is not known to be one that
		 * serial apply meets: transactions before the stream in commit
		 * order may still arrive.  The leader re-applies it serially.
		 */
		if (TransactionIdIsValid(stream_xid))
			me->conflict_failed = false;
		pgstat_report_subscription_error(my_args.subid, true);
		pa_sub_record_error(my_sub, edata->message, pa_errctx.remote_xid,
							pa_errctx.finish_lsn);
		pa_conflict_abort();
		proc_exit(1);
	}
	PG_END_TRY();
}
