/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  An apply worker: reads the transactions the leader gave it from its
 *	  dispatch queue and applies them, one at a time, committing each in the
 *	  publisher's order.
 *
 * Owns: the worker's process lifetime, reassembly of framed messages from
 * chunks (returning each chunk to the pool as soon as it is copied), and
 * the sequence of one transaction: BEGIN (take the commit-order lock, wait
 * for the dependencies the leader named), changes (src/apply.c), COMMIT
 * (src/commit.c), completion report to the leader.
 *
 * Invariants kept here:
 *	- the worker runs as the subscription owner with
 *	  session_replication_role = replica and search_path = '', and with the
 *	  subscription's synchronous_commit;
 *	- it never applies a change of a transaction before the transactions it
 *	  depends on have committed, and every such wait is a heavyweight-lock
 *	  wait (commit.c);
 *	- any error ends the process: the leader notices, stops the engine, and
 *	  the launcher restarts it from the origin, so a half-applied window is
 *	  never committed (invariant 4);
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
#include "pa_protocol.h"
#include "pa_queue.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

static PaWorkerArgs my_args;
static PaSub *my_sub;
static PaWorker *me;
static StringInfoData inbuf;
static char origin_name[NAMEDATALEN];
static bool flush_commits = false;	/* subscription asks for durability */

/* Is a whole message already here, or a chunk waiting in the queue? */
static bool
message_ready(void)
{
	int			avail = inbuf.len - inbuf.cursor;

	if (avail >= (int) sizeof(uint32))
	{
		uint32		len;

		memcpy(&len, inbuf.data + inbuf.cursor, sizeof(len));
		if (avail >= (int) (sizeof(uint32) + len))
			return true;
	}
	return !cds_wfcq_empty(&me->qhead, &me->qtail);
}

/*
 * Runs before PostgreSQL releases our locks at exit (registered after the
 * connection, so before ShutdownPostgres): waiters must not take our
 * commit-order lock, once released, for a commit that did not happen.
 */
static void
worker_before_exit(int code, Datum arg)
{
	uint64		seq = pg_atomic_read_u64(&me->current_seq);

	if (seq != 0)
	{
		PaTxn	   *txn = &my_sub->txns[seq % PA_MAX_INFLIGHT];

		if (txn->seq == seq)
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
	if (my_sub->leader_latch)
		SetLatch(my_sub->leader_latch);
}

static void
check_leader(void)
{
	if (my_sub->leader_pid != my_args.leader_pid)
		proc_exit(0);			/* our leader is gone; so are we */
}

/* The next framed message; its bytes stay valid until the next call */
static void
next_message(StringInfo msg)
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
			{
				msg->data = inbuf.data + inbuf.cursor + sizeof(uint32);
				msg->len = len;
				msg->maxlen = -1;
				msg->cursor = 0;
				inbuf.cursor += sizeof(uint32) + len;
				return;
			}
		}

		/* need more bytes: compact, then take the next chunk */
		if (inbuf.cursor > 0)
		{
			memmove(inbuf.data, inbuf.data + inbuf.cursor, avail);
			inbuf.len = avail;
			inbuf.cursor = 0;
			inbuf.data[avail] = '\0';
		}
		chunk = pa_chunk_receive(my_sub, my_args.worker);
		if (chunk != NULL)
		{
			appendBinaryStringInfo(&inbuf, chunk->data, chunk->len);
			pa_chunk_put(my_sub, chunk);
			continue;
		}

		me->state = PA_WORKER_IDLE;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		check_leader();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

static void
worker_loop(void)
{
	MemoryContext MessageContext;
	PaTxn	   *txn = NULL;
	bool		skipping = false;
	XLogRecPtr	finish_lsn = InvalidXLogRecPtr;
	ErrorContextCallback errcallback;

	MessageContext = AllocSetContextCreate(TopMemoryContext,
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
				{
					PaMsgBegin	begin;

					memcpy(&begin, msg.data + 1, sizeof(begin));
					txn = &my_sub->txns[begin.seq % PA_MAX_INFLIGHT];
					Assert(txn->seq == begin.seq);
					pa_errctx.remote_xid = begin.remote_xid;
					pa_errctx.finish_lsn = begin.final_lsn;

					pg_atomic_write_u64(&me->current_seq, begin.seq);
					pa_commit_start(txn);
					finish_lsn = begin.final_lsn;
					skipping = begin.skip;
					if (skipping)
						ereport(LOG,
								(errmsg("logical replication starts skipping transaction at LSN %X/%X",
										LSN_FORMAT_ARGS(finish_lsn))));

					me->state = PA_WORKER_APPLYING;
					break;
				}
			case PA_MSG_WAIT:
				{
					uint64		dep;

					if (txn == NULL)
						elog(ERROR, "parallel_apply worker received WAIT outside a transaction");
					if (skipping)
						break;
					memcpy(&dep, msg.data + 1, sizeof(dep));
					me->state = PA_WORKER_WAITING;
					if (pa_wait_for_commit(dep))
						pg_atomic_fetch_add_u64(&my_sub->dependency_waits, 1);
					me->state = PA_WORKER_APPLYING;
					break;
				}
			case PA_MSG_CHANGE:
				{
					MemoryContext old = MemoryContextSwitchTo(MessageContext);

					if (txn == NULL)
						elog(ERROR, "parallel_apply worker received a change outside a transaction");
					if (skipping && msg.data[1] != LOGICAL_REP_MSG_RELATION)
					{
						MemoryContextSwitchTo(old);
						break;
					}
					pa_apply_message(&msg);
					MemoryContextSwitchTo(old);
					MemoryContextReset(MessageContext);
					break;
				}
			case PA_MSG_COMMIT:
				{
					PaMsgCommit commit;
					XLogRecPtr	local_end;

					if (txn == NULL)
						elog(ERROR, "parallel_apply worker received COMMIT outside a transaction");
					memcpy(&commit, msg.data + 1, sizeof(commit));
					if (skipping)
					{
						if (!IsTransactionState())
							StartTransactionCommand();
						pa_clear_skip_lsn(my_args.subid, finish_lsn);
					}
					local_end = pa_commit_in_order(txn, &commit);
					if (skipping)
						ereport(LOG,
								(errmsg("done skipping logical replication transaction finished at %X/%X",
										LSN_FORMAT_ARGS(finish_lsn))));
					skipping = false;
					pg_atomic_write_u64(&me->current_seq, 0);
					pg_atomic_fetch_add_u64(&me->applied, 1);
					pg_atomic_fetch_add_u64(&my_sub->txns_applied, 1);
					pa_done_send(my_sub, txn);
					txn = NULL;

					/*
					 * Durable apply: commits are asynchronous and flushed in
					 * groups, by whichever worker runs out of work first.
					 * The leader reports as flushed only what is.
					 */
					if (flush_commits && local_end != InvalidXLogRecPtr &&
						!message_ready())
						XLogFlush(local_end);
					pa_errctx.remote_xid = InvalidTransactionId;
					pa_errctx.finish_lsn = InvalidXLogRecPtr;
					MemoryContextSwitchTo(TopMemoryContext);
					break;
				}
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

	StartTransactionCommand();
	mysub = GetSubscription(my_args.subid, true);
	if (mysub == NULL)
		proc_exit(0);
	/* commit asynchronously; flush in groups if the subscription asks */
	flush_commits = (strcmp(mysub->synccommit, "off") != 0);
	SetConfigOption("synchronous_commit", "off", PGC_BACKEND, PGC_S_OVERRIDE);
	snprintf(origin_name, sizeof(origin_name), "pg_%u", my_args.subid);
	originid = replorigin_by_name(origin_name, false);
	CommitTransactionCommand();

	pa_commit_init(my_sub, originid);
	pa_apply_init();
	pa_errctx.origin_name = origin_name;

	/* tag our WAL with the subscription's origin, as the built-in worker does */
	replorigin_session_origin = originid;

	worker_loop();
}
